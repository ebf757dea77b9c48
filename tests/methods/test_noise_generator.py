"""The float32 normal transform of rng.py / philox.cuh (docs/DESIGN.md 6): its quality over
10^8 draws, its tails, the largest value it can reach, and the generator version that
bakes record (an old bake is not resumed with other noise).

The transform is Box-Muller in float32 with the project's own log and sin/cos
(polynomials of + - * /, then sqrt): u1 = (a + 1/2) 2^-32, so |z| <= sqrt(66 ln 2).
"""
import math

import numpy as np
import pytest

from cupy_core.methods import rng

N_KS = 10 ** 8          # draws for the KS and tail tests (chunked, about 10 s on 2 cores)
CHUNK = 1 << 22         # draws per chunk (a quarter of them per Philox call)
BINS = 1 << 21          # fine histogram for the KS statistic over [-LIM, LIM]
LIM = 7.0


def _phi(x):
    """Standard normal CDF (float64, via erfc: accurate in the tails)."""
    return 0.5 * np.vectorize(math.erfc)(-np.asarray(x, np.float64) / math.sqrt(2.0))


@pytest.fixture(scope="module")
def histogram():
    """Counts of 10^8 normals (stream WHITE, 25 * 10^6 cells x 4 channels) in BINS
    equal bins over [-LIM, LIM], plus the largest |z| and the counts beyond 3..6."""
    edges = np.linspace(-LIM, LIM, BINS + 1)
    counts = np.zeros(BINS, np.int64)
    beyond = {k: 0 for k in (3, 4, 5, 6)}
    biggest = 0.0
    cells = N_KS // 4
    step = CHUNK // 4
    for lo in range(0, cells, step):
        hi = min(cells, lo + step)
        z = rng.normals_cm(np.arange(lo, hi, dtype=np.uint64), 0, rng.STREAM_WHITE, 4,
                           frame=11, seed=2024).ravel()
        a = np.abs(z)
        biggest = max(biggest, float(a.max()))
        for k in beyond:
            beyond[k] += int((a > k).sum())
        idx = ((z.astype(np.float64) + LIM) * (BINS / (2 * LIM))).astype(np.int64)
        counts += np.bincount(np.clip(idx, 0, BINS - 1), minlength=BINS)
    return edges, counts, beyond, biggest


def test_ks_against_normal_over_1e8_draws(histogram):
    """Kolmogorov-Smirnov against N(0, 1) over 10^8 draws. The statistic is taken at
    the 2^21 bin edges: the exact D lies within D_edges + (largest bin probability,
    2.8e-6), far below the 5% critical value 1.358 / sqrt(n) = 1.36e-4."""
    edges, counts, _, _ = histogram
    n = counts.sum()
    assert n == N_KS
    ecdf = np.concatenate([[0], np.cumsum(counts)]) / n
    d_edges = float(np.abs(ecdf - _phi(edges)).max())
    bin_p = float(np.diff(_phi(edges)).max())
    d_upper = d_edges + bin_p
    crit = 1.358 / math.sqrt(n)
    print(f"KS over {n} draws: D in [{d_edges:.3g}, {d_upper:.3g}], 5% critical {crit:.3g}, "
          f"sqrt(n) D = {d_edges * math.sqrt(n):.3f}")
    assert d_upper < crit


def test_tails_within_sampling_error(histogram):
    """Frequencies of |z| > 3, 4, 5, 6 match the normal's within 4 binomial standard
    deviations (at 6 sigma the normal expects 0.2 of 10^8: at most 3 allowed)."""
    _, _, beyond, biggest = histogram
    for k, got in beyond.items():
        p = 2.0 * float(_phi(-k))
        want = N_KS * p
        sd = math.sqrt(N_KS * p * (1 - p))
        print(f"|z| > {k}: {got} (normal: {want:.1f} +- {sd:.1f})")
        assert abs(got - want) <= 4.0 * sd + 2.0, (k, got, want)
    assert biggest <= rng.max_abs_normal()


def test_largest_value():
    """The largest |z| the transform can reach: u1 = 2^-33 (a = 0) at angle 0 (b = 0),
    sqrt(66 ln 2) = 6.7637 to float32 rounding; P(|z| > 6.7637) for a normal is 1.3e-11."""
    m = rng.max_abs_normal()
    assert abs(m - math.sqrt(66 * math.log(2))) < 1e-6
    # Every word a, b gives a finite value no larger than that: the extremes of both.
    a = np.array([0, 1, 2, 2 ** 24 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1], np.uint32)
    A, B = np.meshgrid(a, np.concatenate([a, [2 ** 29, 2 ** 30, 3 * 2 ** 29]]).astype(np.uint32))
    z0, z1 = rng.box_muller_f32(A.ravel(), B.ravel())
    assert np.isfinite(z0).all() and np.isfinite(z1).all()
    assert max(np.abs(z0).max(), np.abs(z1).max()) == np.float32(m)


def test_transcendentals_accuracy():
    """ln_f32 within 2 float32 ulps of the true log over (0, 1]; cos and sin of the
    turn fraction within 1.2e-7 of the true values over the whole circle."""
    r = np.random.default_rng(0)
    u = ((r.integers(0, 2 ** 32, 10 ** 6, dtype=np.uint64).astype(np.uint32).astype(np.float32)
          + np.float32(0.5)) * np.float32(2.0 ** -32))
    ln = rng.ln_f32(u)
    assert ln.dtype == np.float32
    ulp = np.abs(ln.astype(np.float64) - np.log(u.astype(np.float64))) / np.spacing(np.abs(ln))
    assert ulp.max() <= 2.0
    b = r.integers(0, 2 ** 32, 10 ** 6, dtype=np.uint64).astype(np.uint32)
    c, s = rng.sincos_turn_f32(b)
    ang = 2 * np.pi * b.astype(np.float64) / 2 ** 32
    assert np.abs(c - np.cos(ang)).max() < 1.2e-7
    assert np.abs(s - np.sin(ang)).max() < 1.2e-7
    # Exact at the quarter turns.
    c, s = rng.sincos_turn_f32(np.array([0, 2 ** 30, 2 ** 31, 3 * 2 ** 30], np.uint32))
    assert c.tolist() == [1, 0, -1, 0] and s.tolist() == [0, 1, 0, -1]


def test_float32_only():
    """Every intermediate of the NumPy transform is float32 (NumPy's float32 + - * /
    sqrt are IEEE, as CUDA's with --fmad=false): a float64 step would round differently
    from the kernel."""
    a = np.array([5, 2 ** 31 + 7], np.uint32)
    z0, z1 = rng.box_muller_f32(a, a[::-1])
    assert z0.dtype == z1.dtype == np.float32
    assert rng.normals_cm([1, 2], 3, rng.STREAM_PIECE, 5, 0, 1).dtype == np.float32


# ----------------------------------------------------------------------------- bakes

def test_bake_records_and_checks_the_generator_version(tmp_path):
    """bake.json records the generator version; resuming a folder made by another
    version is refused with the reason; --no-resume (resume=False) starts afresh."""
    import json
    from cupy_core.bake.loop import BakeMismatchError, bake_flow_sequence

    h, w = 6, 7
    yy, xx = np.mgrid[0:h + 1, 0:w + 1].astype(np.float64)
    pos = [np.stack([xx + 0.3, yy], -1)] * 2
    bake_flow_sequence(pos, tmp_path, seed=3, channels=4, progress=False)
    path = tmp_path / "bake.json"
    record = json.loads(path.read_text())
    assert record["versions"]["noise_generator"] == rng.GENERATOR_VERSION
    # A bake made before the version was recorded (generator 1), or by another version.
    for old in (None, rng.GENERATOR_VERSION + 1):
        if old is None:
            del record["versions"]["noise_generator"]
        else:
            record["versions"]["noise_generator"] = old
        path.write_text(json.dumps(record))
        with pytest.raises(BakeMismatchError, match="noise generator.*different noise"):
            bake_flow_sequence(pos, tmp_path, seed=3, channels=4, progress=False)
    res = bake_flow_sequence(pos, tmp_path, seed=3, channels=4, progress=False, resume=False)
    assert res.resumed_frames == 0
    assert json.loads(path.read_text())["versions"]["noise_generator"] == rng.GENERATOR_VERSION


def test_kernels_call_no_libm_transcendental():
    """No kernel calls a transcendental of the libm (float64 or float32): the normals
    are philox.cuh's own float32 transform; geometry uses + - * / sqrt floor ceil."""
    import glob
    import os
    import re
    here = os.path.join(os.path.dirname(rng.__file__), "*.cu*")
    call = re.compile(r"\b(log|log2|log10|log1p|exp|exp2|expm1|sin|cos|tan|sincos|sinpi|"
                      r"cospi|pow|erf|erfc|erfinv|atan|atan2|asin|acos|sinh|cosh|tanh|cbrt|"
                      r"hypot|__logf|__expf|__sinf|__cosf)f?\s*\(")
    for path in glob.glob(here):
        with open(path) as f:
            text = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S))
        assert not call.findall(text), (path, call.findall(text))
