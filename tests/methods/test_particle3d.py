"""The particle variant in 3-D (voxels): trilinear requests normalised per source voxel
(docs/DESIGN.md 4.1, 4.4 property 5), checked against the tent-function formula written
independently here."""
import numpy as np
import pytest

import cupy_core
from cupy_core.methods.particle3d import particle3d_pieces
from maps import affine, corners3, centers3, fold3, rotation3, swirl3
from references3d import trilinear_reference


def record_dict(t, s, a):
    out = {}
    for ti, si, ai in zip(t, s, a):
        key = (int(ti), int(si))
        assert key not in out
        out[key] = float(ai)
    return out


MAPS = {
    "identity": lambda p: p,
    "subvoxel shift": lambda p: p + [0.37, -0.61, 0.22],
    "rotation": lambda p: affine(p, rotation3([1, 1, 2], 0.5), [0.2, 0.1, -0.3], [3, 3, 3]),
    "shear+scale": lambda p: affine(p, [[1.3, 0.4, 0], [-0.2, 0.8, 0.1], [0, 0.3, 1.1]],
                                    [-0.4, 0.6, 0.2], [3, 3, 3]),
    "swirl": lambda p: swirl3(p, 6, 6, 7, strength=0.8, wobble=0.6),
    "minify": lambda p: p * 1.6 - 1.3,
    "fold": lambda p: fold3(p, 1.5, 4.0),
}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_weights_are_trilinear(name):
    pos = MAPS[name](centers3(6, 6, 7))
    got = record_dict(*cupy_core.partition_record(pos, (7, 6, 8), method="particle", at="centers"))
    ref = trilinear_reference(pos, (7, 6, 8))
    keys = set(got) | set(ref)
    assert max(abs(got.get(k, 0.0) - ref.get(k, 0.0)) for k in keys) < 1e-12


def test_raw_weights_sum_to_one_inside():
    """Raw requests (before / S_k) of a particle well inside the grid sum to 1."""
    pos = centers3(5, 5, 5) + 1.0 + np.random.default_rng(0).uniform(-0.49, 0.49, (5, 5, 5, 3))
    t, s, w = particle3d_pieces(pos, (7, 7, 7))   # a larger source: no voxel dropped
    np.testing.assert_allclose(np.bincount(t, w, minlength=125), 1.0, rtol=1e-14)
    assert np.all(w > 0) and t.size <= 8 * 125
    # per target, the eight corners in kernel order: sources increase along x, y, z
    same = np.diff(t) == 0
    assert np.all(np.diff(s)[same] > 0)


def test_never_overcommits():
    pos = fold3(centers3(8, 8, 8), 2.0, 4.0)
    t, s, a = cupy_core.partition_record(pos, (8, 8, 8), method="particle", at="centers")
    per_source = np.bincount(s, a, minlength=512)
    used = per_source > 0
    np.testing.assert_allclose(per_source[used], 1.0, rtol=1e-12)


def test_from_corners_uses_cell_centres():
    c = MAPS["swirl"](corners3(6, 6, 7))
    mean = sum(c[dz:dz + 6, dy:dy + 6, dx:dx + 7] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)) / 8
    a = cupy_core.partition_record(c, (7, 6, 8), method="particle")
    b = cupy_core.partition_record(mean, (7, 6, 8), method="particle", at="centers")
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=0)


def test_nan_and_far_particles():
    pos = centers3(4, 4, 4) + 0.25
    pos[1, 2, 3, 2] = np.nan
    pos[0, 0, 0] = [1e300, -1e300, 5e15]
    pos[3, 3, 3] = [-2.6, 1.0, 1.0]                 # outside: no neighbour in the grid
    t, s, w = particle3d_pieces(pos, (4, 4, 4))
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    gone = {(1 * 4 + 2) * 4 + 3, 0, 63}
    assert set(t.tolist()) == set(range(64)) - gone


def test_valid_mask():
    pos = centers3(3, 3, 3)
    valid = np.ones((3, 3, 3), bool)
    valid[1, 1, 1] = False
    t, s, w = particle3d_pieces(pos, (3, 3, 3), valid)
    assert 13 not in set(t.tolist()) and len(set(t.tolist())) == 26
