"""The warp itself: docs/DESIGN.md 4.4 properties 1, 2, 3 and 6, NaN handling, bad input."""
import numpy as np
import pytest
from shapely.geometry import Polygon, box

import cupy_core
from checks import assert_fresh_normal
from maps import affine, centers, corners, rotation, swirl

METHODS = ["grid", "particle"]


def positions(method_at, pos_corners, pos_centers):
    return pos_corners if method_at == "corners" else pos_centers


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("at", ["corners", "centers"])
def test_identity_returns_prior(method, at):
    prior = cupy_core.white_noise((33, 47), 5, seed=3)
    pos = corners(33, 47) if at == "corners" else centers(33, 47)
    out = cupy_core.warp(prior, pos, method=method, at=at, seed=9, frame=4)
    assert out.dtype == np.float32 and out.shape == prior.shape
    np.testing.assert_array_equal(out, prior)


def test_float64_prior_gives_float32():
    prior = np.random.default_rng(0).standard_normal((8, 9, 2))
    out = cupy_core.warp(prior, corners(8, 9))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, prior.astype(np.float32))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("at", ["corners", "centers"])
@pytest.mark.parametrize("shift", [(3, 2), (-5, 1), (0, -4)])
def test_integer_translation(method, at, shift):
    """Exact shifted prior in the overlap; fresh N(0, 1) noise on the uncovered border."""
    h, w, c = 96, 80, 4
    dx, dy = shift
    prior = cupy_core.white_noise((h, w), c, seed=1)
    pos = (corners(h, w) if at == "corners" else centers(h, w)) + [dx, dy]
    out = cupy_core.warp(prior, pos, method=method, at=at, seed=2, frame=1)
    rows = np.arange(h) + dy
    cols = np.arange(w) + dx
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    src = prior[np.clip(rows, 0, h - 1)][:, np.clip(cols, 0, w - 1)]
    np.testing.assert_array_equal(out[inside], src[inside])
    assert_fresh_normal(out[~inside], prior[~inside])


def test_source_and_target_shapes_may_differ():
    prior = cupy_core.white_noise((20, 30), 3, seed=0)
    pos = corners(12, 7) + [4, 5]       # a 12x7 window of the 20x30 source
    out = cupy_core.warp(prior, pos)
    assert out.shape == (12, 7, 3)
    np.testing.assert_array_equal(out, prior[5:17, 4:11])


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_noise_other_seed_other_noise(method):
    prior = cupy_core.white_noise((40, 40), 4, seed=0)
    pos = swirl(corners(40, 40), 40, 40)
    a = cupy_core.warp(prior, pos, method=method, seed=5, frame=2)
    b = cupy_core.warp(prior, pos, method=method, seed=5, frame=2)
    c = cupy_core.warp(prior, pos, method=method, seed=6, frame=2)
    d = cupy_core.warp(prior, pos, method=method, seed=5, frame=3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1 and np.abs(a - d).max() > 0.1


@pytest.mark.parametrize("method", METHODS)
def test_nan_positions_get_fresh_noise(method):
    h = w = 24
    prior = cupy_core.white_noise((h, w), 4, seed=0)
    pos = centers(h, w)
    pos[5:9, 6:12] = np.nan
    out = cupy_core.warp(prior, pos, method=method, at="centers", seed=3, frame=1)
    hole = np.zeros((h, w), bool)
    hole[5:9, 6:12] = True
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[~hole], prior[~hole])  # identity elsewhere
    assert np.all(out[hole] != prior[hole])


def test_nan_corner_gives_fresh_noise_to_touching_pixels():
    prior = cupy_core.white_noise((10, 10), 2, seed=0)
    pos = corners(10, 10)
    pos[4, 4] = np.nan
    out = cupy_core.warp(prior, pos, seed=1)
    changed = np.any(out != prior, axis=-1)
    expected = np.zeros((10, 10), bool)
    expected[3:5, 3:5] = True
    np.testing.assert_array_equal(changed, expected)


# -- Property 3: conditional mean and variance given a fixed prior ---------------------

def reference_grid_areas(pos, source_shape):
    """Per target, {source: area} from shapely, with the s > 1 rescaling of DESIGN 4.2."""
    hs, ws = source_shape
    h, w = pos.shape[0] - 1, pos.shape[1] - 1
    raw = []
    for i in range(h):
        for j in range(w):
            poly = Polygon([pos[i, j], pos[i, j + 1], pos[i + 1, j + 1], pos[i + 1, j]])
            assert poly.is_valid
            x0, y0, x1, y1 = poly.bounds
            for ci in range(max(0, int(np.floor(y0))), min(hs, int(np.ceil(y1)))):
                for cj in range(max(0, int(np.floor(x0))), min(ws, int(np.ceil(x1)))):
                    a = poly.intersection(box(cj, ci, cj + 1, ci + 1)).area
                    if a > 0:
                        raw.append((i * w + j, ci * ws + cj, a))
    S = np.zeros(hs * ws)
    for _, k, a in raw:
        S[k] += a
    return [(t, k, a / max(S[k], 1.0)) for t, k, a in raw]


def reference_particle_areas(pos, source_shape):
    hs, ws = source_shape
    raw = []
    for t, (x, y) in enumerate(pos.reshape(-1, 2)):
        for ci in range(hs):
            for cj in range(ws):
                wgt = max(0.0, 1 - abs(x - cj - 0.5)) * max(0.0, 1 - abs(y - ci - 0.5))
                if wgt > 0:
                    raw.append((t, ci * ws + cj, wgt))
    S = np.zeros(hs * ws)
    for _, k, a in raw:
        S[k] += a
    return [(t, k, a / S[k]) for t, k, a in raw]


def conditional_moments(pieces, prior, n_target):
    """E[Y | X] = sum a X / sqrt(A), Var(Y | X) = 1 - sum a^2 / A (DESIGN 4.4.3)."""
    flat = prior.reshape(-1, prior.shape[-1]).astype(np.float64)
    num = np.zeros((n_target, flat.shape[1]))
    A = np.zeros(n_target)
    A2 = np.zeros(n_target)
    for t, k, a in pieces:
        num[t] += a * flat[k]
        A[t] += a
        A2[t] += a * a
    mean = num / np.sqrt(A)[:, None]
    var = np.broadcast_to((1 - A2 / A)[:, None], mean.shape)
    return mean, var


FOLD_MIRROR = "mirror fold"


def conditional_case(method, name):
    h, w = 6, 7
    if name == FOLD_MIRROR:
        # x -> |x - 3| + 1: the left half folds onto the right, so sources are
        # claimed twice (s > 1, rescaled) while every quad stays simple.
        base = corners(h, w) if method == "grid" else centers(h, w)
        pos = base.copy()
        pos[..., 0] = np.abs(base[..., 0] - 3.0) + 1.0
        pos[..., 1] = base[..., 1] * 0.9 + 0.3
    else:
        base = corners(h, w) if method == "grid" else centers(h, w)
        pos = affine(base, 0.85 * rotation(0.5), [0.4, -0.3], [3.5, 3])
    return pos


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["rotate+shrink", FOLD_MIRROR])
def test_conditional_mean_and_variance(method, name):
    h, w, c = 6, 7, 8
    pos = conditional_case(method, name)
    prior = cupy_core.white_noise((h, w), c, seed=42)
    at = "corners" if method == "grid" else "centers"
    ref = (reference_grid_areas(pos, (h, w)) if method == "grid"
           else reference_particle_areas(pos, (h, w)))
    mean, var = conditional_moments(ref, prior, h * w)
    has = np.isfinite(mean[:, 0])
    assert has.sum() > 20 and np.any(var[has, 0] > 0.05)
    n = 1500
    samples = np.stack([cupy_core.warp(prior, pos, method=method, at=at, seed=s, frame=1)
                        for s in range(n)]).reshape(n, h * w, c).astype(np.float64)
    m_hat = samples.mean(0)[has]
    v_hat = samples.var(0, ddof=1)[has]
    m, v = mean[has], var[has]
    # Standard errors from the sample size; 5 of them per entry.
    se_mean = np.sqrt(np.maximum(v, 1e-12) / n)
    se_var = np.maximum(v, 1e-12) * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(m_hat - m) <= 5 * se_mean + 1e-6), np.abs(m_hat - m).max()
    assert np.all(np.abs(v_hat - v) <= 5 * se_var + 1e-6), np.abs(v_hat - v).max()
    if name == FOLD_MIRROR and method == "grid":
        S = np.zeros(h * w)
        for _, k, a in ref:
            S[k] += a
        assert S.max() > 0.99  # the fixture really over-commits sources before rescaling


# -- NoiseWarper and downsample --------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_noise_warper_chains_warp(method):
    nw = cupy_core.NoiseWarper((20, 24), 4, method=method, seed=7, device="cpu", frame=1)
    np.testing.assert_array_equal(nw.noise, cupy_core.white_noise((20, 24), 4, seed=7, frame=1))
    pos = swirl(corners(20, 24), 20, 24)
    expected = cupy_core.warp(nw.noise, pos, method=method, seed=7, frame=2)
    got = nw.step(pos)
    np.testing.assert_array_equal(got, expected)
    assert nw.frame == 2 and nw.device == "cpu"


def test_downsample_blocks():
    noise = np.random.default_rng(0).standard_normal((17, 26, 3)).astype(np.float32)
    out = cupy_core.downsample(noise, 4)
    assert out.shape == (4, 6, 3) and out.dtype == np.float32
    expected = noise[:16, :24].reshape(4, 4, 6, 4, 3).sum(axis=(1, 3)) / 4
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    big = cupy_core.white_noise((256, 256), 4, seed=0)
    small = cupy_core.downsample(big, 8)
    n = small.size
    assert abs(small.var() - 1) < 5 * np.sqrt(2 / n)
    np.testing.assert_array_equal(cupy_core.downsample(big, 1), big)
    with pytest.raises(ValueError, match="factor"):
        cupy_core.downsample(big, 0)


# -- Bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda p, q: (p, q.astype(np.int32)), "dtype"),
    (lambda p, q: (p.astype(np.int16), q), "dtype"),
    (lambda p, q: (p, q[..., :1]), "shape"),
    (lambda p, q: (p, q[0]), "shape"),
    (lambda p, q: (p[..., :0], q), "C >= 1"),
    (lambda p, q: (p[0], q), "prior"),
    (lambda p, q: (p, np.where(np.arange(11)[None, :, None] == 3, np.inf, q)), "infinite"),
    (lambda p, q: (np.where(np.arange(10)[None, :, None] == 3, np.nan, p), q), "NaN"),
    (lambda p, q: ([[1.0]], q), "array"),
])
def test_bad_input_raises_value_error(make, match):
    prior = cupy_core.white_noise((8, 10), 4, seed=0)
    pos = corners(8, 10)
    p, q = make(prior, pos)
    with pytest.raises(ValueError, match=match):
        cupy_core.warp(p, q)


def test_bad_options_raise():
    prior = cupy_core.white_noise((8, 10), 4, seed=0)
    with pytest.raises(ValueError, match="method"):
        cupy_core.warp(prior, corners(8, 10), method="nearest")
    with pytest.raises(ValueError, match="at"):
        cupy_core.warp(prior, corners(8, 10), at="edges")
    with pytest.raises(ValueError, match="2-D prior"):
        cupy_core.warp(prior, np.zeros((9, 11, 3)))
    with pytest.raises(ValueError, match="channels"):
        cupy_core.white_noise((4, 4), 0)
    with pytest.raises(ValueError, match="device"):
        cupy_core.NoiseWarper((4, 4), 1, device="tpu")
