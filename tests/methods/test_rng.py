"""Philox4x32-10 and Box-Muller (docs/DESIGN.md 6)."""
import numpy as np
import pytest

from cupy_core.methods import rng


# Known-answer vectors published with Random123 (kat_vectors: philox4x32 10 rounds).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    out = rng.philox4x32_10(*ctr, *key)
    assert tuple(int(v) for v in out) == expected


def test_philox_vectorised_equals_scalar():
    r = np.random.default_rng(0)
    c = r.integers(0, 2 ** 32, size=(4, 50), dtype=np.uint64)
    vec = rng.philox4x32_10(c[0], c[1], c[2], c[3], 123, 456)
    for i in range(50):
        one = rng.philox4x32_10(c[0, i], c[1, i], c[2, i], c[3, i], 123, 456)
        assert tuple(int(v[i]) for v in vec) == tuple(int(v) for v in one)


def test_box_muller_by_formula():
    """Channel 0..3 of a draw are the two float32 Box-Muller pairs of the Philox block:
    u1 = (a + 1/2) 2^-32, angle 2 pi b 2^-32 (within float32 rounding of the formula)."""
    z = rng.normals([7], [9], rng.STREAM_PIECE, 4, 3, 11)[0]
    assert z.dtype == np.float32
    r0, r1, r2, r3 = (int(v) for v in rng.philox4x32_10(7, 9, rng.STREAM_PIECE << 24, 3, 11, 0))
    for (a, b), got in (((r0, r1), z[:2]), ((r2, r3), z[2:])):
        u1 = (a + 0.5) / 2 ** 32
        u2 = b / 2 ** 32
        rad = np.sqrt(-2 * np.log(u1))
        np.testing.assert_allclose(got, [rad * np.cos(2 * np.pi * u2), rad * np.sin(2 * np.pi * u2)],
                                   rtol=0, atol=2e-6)
        exact = rng.box_muller_f32(np.array([a], np.uint32), np.array([b], np.uint32))
        np.testing.assert_array_equal(got, np.concatenate(exact))


def test_normals_are_standard_and_keyed():
    n = 200_000
    z = rng.normals(np.arange(n), 0, rng.STREAM_WHITE, 4, 0, 5)
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    # Different seed, frame, stream or counter give unrelated numbers.
    base = z[:1000, 0]
    for other in (rng.normals(np.arange(1000), 0, rng.STREAM_WHITE, 1, 0, 6)[:, 0],
                  rng.normals(np.arange(1000), 0, rng.STREAM_WHITE, 1, 1, 5)[:, 0],
                  rng.normals(np.arange(1000), 0, rng.STREAM_FRESH, 1, 0, 5)[:, 0],
                  rng.normals(np.arange(1000), 1, rng.STREAM_WHITE, 1, 0, 5)[:, 0]):
        assert abs(np.corrcoef(base, other)[0, 1]) < 5 / np.sqrt(1000)
    # Channel 4 comes from the next Philox block, not a repeat of channel 0.
    z8 = rng.normals(np.arange(1000), 0, rng.STREAM_WHITE, 8, 0, 5)
    np.testing.assert_array_equal(z8[:, :4], z[:1000])
    assert abs(np.corrcoef(z8[:, 0], z8[:, 4])[0, 1]) < 5 / np.sqrt(1000)


def test_seed_range():
    # A negative seed is its 64-bit two's complement: -1 is the largest seed.
    assert rng.seed_key(-1) == rng.seed_key(2 ** 64 - 1) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert rng.seed_key(1) == (1, 0) and rng.seed_key(2 ** 32) == (0, 1)
    with pytest.raises(ValueError, match="seed"):
        rng.seed_key(-(2 ** 63) - 1)
    with pytest.raises(ValueError, match="seed"):
        rng.seed_key(2 ** 64)
