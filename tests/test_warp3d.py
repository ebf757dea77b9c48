"""3-D (voxel) warping through the public API: docs/DESIGN.md 4.4 properties 1-4 and 6 for
the grid and particle variants, NaN handling, bad input, NoiseWarper."""
import numpy as np
import pytest

import cupy_core
from cupy_core import stats
from checks import assert_fresh_normal
from maps import affine, centers3, corners3, rotation3, swirl3
from references3d import orientations, reference_record, trilinear_reference

METHODS = ["grid", "particle"]


def pos3(d, h, w, at):
    return corners3(d, h, w) if at == "corners" else centers3(d, h, w)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("at", ["corners", "centers"])
def test_identity_returns_prior(method, at):
    prior = cupy_core.white_noise((9, 11, 13), 5, seed=3)
    out = cupy_core.warp(prior, pos3(9, 11, 13, at), method=method, at=at, seed=9, frame=4)
    assert out.dtype == np.float32 and out.shape == prior.shape
    np.testing.assert_array_equal(out, prior)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("at", ["corners", "centers"])
@pytest.mark.parametrize("shift", [(3, 2, -1), (0, -4, 2)])
def test_integer_translation(method, at, shift):
    """Exact shifted prior in the overlap; fresh N(0, 1) noise where nothing maps."""
    d, h, w, c = 20, 18, 16, 4
    dx, dy, dz = shift
    prior = cupy_core.white_noise((d, h, w), c, seed=1)
    out = cupy_core.warp(prior, pos3(d, h, w, at) + np.array(shift, float), method=method,
                         at=at, seed=2, frame=1)
    zs, ys, xs = np.arange(d) + dz, np.arange(h) + dy, np.arange(w) + dx
    inside = (((zs >= 0) & (zs < d))[:, None, None] & ((ys >= 0) & (ys < h))[None, :, None]
              & ((xs >= 0) & (xs < w))[None, None, :])
    src = prior[np.clip(zs, 0, d - 1)][:, np.clip(ys, 0, h - 1)][:, :, np.clip(xs, 0, w - 1)]
    np.testing.assert_array_equal(out[inside], src[inside])
    assert_fresh_normal(out[~inside], prior[~inside], min_n=1000)


def test_source_and_target_shapes_may_differ():
    prior = cupy_core.white_noise((10, 20, 30), 3, seed=0)
    out = cupy_core.warp(prior, corners3(4, 12, 7) + [4, 5, 3])   # a window of the source
    assert out.shape == (4, 12, 7, 3)
    np.testing.assert_array_equal(out, prior[3:7, 5:17, 4:11])


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_noise_other_seed_other_noise(method):
    prior = cupy_core.white_noise((12, 12, 12), 4, seed=0)
    pos = swirl3(corners3(12, 12, 12), 12, 12, 12)
    a = cupy_core.warp(prior, pos, method=method, seed=5, frame=2)
    b = cupy_core.warp(prior, pos, method=method, seed=5, frame=2)
    c = cupy_core.warp(prior, pos, method=method, seed=6, frame=2)
    e = cupy_core.warp(prior, pos, method=method, seed=5, frame=3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1 and np.abs(a - e).max() > 0.1


@pytest.mark.parametrize("method", METHODS)
def test_nan_positions_get_fresh_noise(method):
    prior = cupy_core.white_noise((8, 9, 10), 4, seed=0)
    pos = centers3(8, 9, 10)
    pos[2:4, 3:6, 1:5] = np.nan
    hole = np.zeros((8, 9, 10), bool)
    hole[2:4, 3:6, 1:5] = True
    out = cupy_core.warp(prior, pos, method=method, at="centers", seed=3, frame=1)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[~hole], prior[~hole])
    assert np.all(out[hole] != prior[hole])


def test_nan_corner_gives_fresh_noise_to_touching_voxels():
    prior = cupy_core.white_noise((5, 5, 5), 2, seed=0)
    pos = corners3(5, 5, 5)
    pos[2, 3, 1] = np.nan
    out = cupy_core.warp(prior, pos, seed=1)
    changed = np.any(out != prior, axis=-1)
    expected = np.zeros((5, 5, 5), bool)
    expected[1:3, 2:4, 0:2] = True
    np.testing.assert_array_equal(changed, expected)


# -- Property 3: conditional mean and variance given a fixed prior ---------------------

def conditional_moments(pieces, prior, n_target):
    """E[Y | X] = sum a X / sqrt(A), Var(Y | X) = 1 - sum a^2 / A (DESIGN 4.4.3)."""
    num, A, A2 = np.zeros(n_target), np.zeros(n_target), np.zeros(n_target)
    for t, k, a in pieces:
        num[t] += a * prior[k]
        A[t] += a
        A2[t] += a * a
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(A), 1 - A2 / A


def conditional_case(method, name):
    d, h, w = 3, 4, 4
    base = corners3(d, h, w) if method == "grid" else centers3(d, h, w)
    if name == "mirror fold":
        # x -> |x - 1.7| + 0.6: the left part folds onto the right, so sources are
        # claimed twice (s > 1, rescaled); the grid variant's left cells are inverted.
        pos = base.copy()
        pos[..., 0] = np.abs(base[..., 0] - 1.7) + 0.6
        pos[..., 1:] = base[..., 1:] * 0.9 + 0.2
        return pos
    return affine(base, 0.85 * rotation3([1, -1, 2], 0.5), [0.3, -0.2, 0.1], [2, 2, 1.5])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["rotate+shrink", "mirror fold"])
def test_conditional_mean_and_variance(method, name):
    d, h, w = 3, 4, 4
    pos = conditional_case(method, name)
    at = "corners" if method == "grid" else "centers"
    if method == "grid":
        raw = [(t, k, a) for (t, k), a in reference_record(pos, (d, h, w)).items()]
        S = np.zeros(d * h * w)
        for _, k, a in raw:
            S[k] += a
        pieces = [(t, k, a / max(S[k], 1.0)) for t, k, a in raw]
        if name == "mirror fold":
            assert S.max() > 1.2          # the fixture really over-commits sources
    else:
        pieces = [(t, k, a) for (t, k), a in trilinear_reference(pos, (d, h, w)).items()]
    # One prior value per source voxel, repeated in every channel: the channels are then
    # independent samples of the same conditional law.
    X = np.random.default_rng(42).standard_normal(d * h * w).astype(np.float32)
    C = 250
    prior = np.repeat(X.reshape(d, h, w, 1), C, axis=-1)
    mean, var = conditional_moments(pieces, X.astype(np.float64), d * h * w)
    has = np.isfinite(mean)
    assert has.sum() > 20 and np.any(var[has] > 0.05)
    samples = np.concatenate([
        cupy_core.warp(prior, pos, method=method, at=at, seed=s, frame=1).reshape(-1, C)
        for s in range(8)], axis=1).astype(np.float64)            # (targets, 2000)
    n = samples.shape[1]
    m_hat = samples.mean(1)[has]
    v_hat = samples.var(1, ddof=1)[has]
    m, v = mean[has], var[has]
    se_mean = np.sqrt(np.maximum(v, 1e-12) / n)
    se_var = np.maximum(v, 1e-12) * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(m_hat - m) <= 5 * se_mean + 1e-6), np.abs(m_hat - m).max()
    assert np.all(np.abs(v_hat - v) <= 5 * se_var + 1e-6), np.abs(v_hat - v).max()


# -- Property 4: white after chained frames of a smooth swirl --------------------------

N = 16
FRAMES = 60


def swirl_step(t):
    return swirl3(corners3(N, N, N), N, N, N, strength=0.25, wobble=0.35, phase=0.4 * t)


def test_swirl_steps_are_injective_and_split_voxels():
    for t in (0, 1, 7, FRAMES - 1):
        assert orientations(swirl_step(t)).min() > 0.3
    frac = np.modf(swirl_step(3))[0]
    assert 0.15 < frac.std()


@pytest.mark.parametrize("method", METHODS)
def test_chained_swirl_stays_white(method):
    nw = cupy_core.NoiseWarper((N, N, N), 4, method=method, seed=11, device="cpu")
    first = nw.noise.copy()
    for t in range(1, FRAMES + 1):
        out = nw.step(swirl_step(t))
        if t % 20 == 0:
            ok, reasons = stats.check_white(out)
            assert ok, (t, reasons)
    rep = stats.whiteness_report(out)
    assert set(rep["lag_corr"]) >= {"1,0,0", "0,1,0", "0,0,1"}
    # It carried the first frame along, not replaced it: with a fixed map the noise
    # stays correlated with where it came from, so compare one more step.
    again = cupy_core.warp(out, corners3(N, N, N) + [0.25, 0.0, 0.0], method=method, seed=11,
                           frame=nw.frame + 1)
    r = np.corrcoef(again[:, :, 1:-1].ravel(), out[:, :, 1:-1].ravel())[0, 1]
    assert r > 0.5
    assert abs(np.corrcoef(out.ravel(), first.ravel())[0, 1]) < 5 / np.sqrt(out.size)


# -- Bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda p, q: (p, q.astype(np.int32)), "dtype"),
    (lambda p, q: (p, q[..., :2]), "shape"),
    (lambda p, q: (p, q[0]), "shape"),
    (lambda p, q: (p[..., :0], q), "C >= 1"),
    (lambda p, q: (p, np.where(np.arange(7)[None, None, :, None] == 3, np.inf, q)), "infinite"),
    (lambda p, q: (np.where(np.arange(6)[None, None, :, None] == 3, np.nan, p), q), "NaN"),
    (lambda p, q: (p.astype(np.float16), q), "dtype"),
    (lambda p, q: (p, q[:1, :1, :1, :]), "empty"),
])
def test_bad_input_raises_value_error(make, match):
    prior = cupy_core.white_noise((4, 5, 6), 4, seed=0)
    p, q = make(prior, corners3(4, 5, 6))
    with pytest.raises(ValueError, match=match):
        cupy_core.warp(p, q)


def test_bad_3d_options_raise():
    prior = cupy_core.white_noise((4, 5, 6), 2, seed=0)
    with pytest.raises(ValueError, match="3-D prior"):
        cupy_core.warp(prior, corners3(4, 5, 6)[..., :2][0])
    with pytest.raises(ValueError, match="2-D prior"):
        cupy_core.warp(prior[0], corners3(4, 5, 6))
    with pytest.raises(ValueError, match="source_shape"):
        cupy_core.partition_record(corners3(2, 2, 2), (2, 2, 2, 2))
    with pytest.raises(ValueError, match="3-D prior|shape"):
        cupy_core.partition_record(corners3(2, 2, 2)[0], (2, 2, 2))
    with pytest.raises(ValueError, match="factor"):
        cupy_core.warp(prior, corners3(4, 5, 6), method="grid", factor=4)


@pytest.mark.parametrize("method", METHODS)
def test_noise_warper_chains_warp_3d(method):
    nw = cupy_core.NoiseWarper((6, 7, 8), 4, method=method, seed=7, device="cpu", frame=1)
    np.testing.assert_array_equal(nw.noise, cupy_core.white_noise((6, 7, 8), 4, seed=7, frame=1))
    pos = swirl3(corners3(6, 7, 8), 6, 7, 8)
    expected = cupy_core.warp(nw.noise, pos, method=method, seed=7, frame=2)
    np.testing.assert_array_equal(nw.step(pos), expected)
    assert nw.frame == 2 and nw.noise.shape == (6, 7, 8, 4)
    cen = swirl3(centers3(6, 7, 8), 6, 7, 8)
    expected = cupy_core.warp(nw.noise, cen, method=method, seed=7, frame=3, at="centers")
    np.testing.assert_array_equal(nw.step(cen, at="centers"), expected)
