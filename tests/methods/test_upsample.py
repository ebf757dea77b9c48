"""The Chang et al. upsampling baseline, method="upsample" (docs/DESIGN.md 5; upsample.py).

Properties of docs/DESIGN.md 4.4 as they hold for it: identity and integer translation
exact, conditional moments with the areas n_k / N^2, white single frames; the
sub-pixel counts against an independent point-in-polygon test; and convergence of the
carried correlation to the grid variant's (the infinite-resolution value) as N grows.
"""
import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

import cupy_core
from cupy_core import stats
from checks import assert_fresh_normal
from maps import centers, corners, fold, swirl

FACTORS = [1, 2, 3, 4, 8]


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("at", ["corners", "centers"])
def test_identity_returns_prior(factor, at):
    """All N^2 centres of pixel p fall in its own square: sum v / N = X_p."""
    prior = cupy_core.white_noise((21, 34), 5, seed=3)
    pos = corners(21, 34) if at == "corners" else centers(21, 34)
    out = cupy_core.warp(prior, pos, method="upsample", factor=factor, at=at, seed=1)
    assert out.dtype == np.float32 and out.shape == prior.shape
    np.testing.assert_allclose(out, prior, rtol=0, atol=1e-5)


@pytest.mark.parametrize("factor", [1, 4, 5])
@pytest.mark.parametrize("shift", [(3, 2), (-5, 1), (0, -4)])
def test_integer_translation(factor, shift):
    h, w, c = 64, 56, 4
    dx, dy = shift
    prior = cupy_core.white_noise((h, w), c, seed=1)
    out = cupy_core.warp(prior, corners(h, w) + [dx, dy], method="upsample", factor=factor,
                         seed=2, frame=1)
    rows, cols = np.arange(h) + dy, np.arange(w) + dx
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    src = prior[np.clip(rows, 0, h - 1)][:, np.clip(cols, 0, w - 1)]
    np.testing.assert_allclose(out[inside], src[inside], rtol=0, atol=1e-5)
    assert_fresh_normal(out[~inside])


def _shapely_counts(pos, source_shape, factor):
    """Sub-pixel centres of each source inside each target quad, by shapely."""
    hs, ws = source_shape
    g = (np.arange(ws * factor) + 0.5) / factor, (np.arange(hs * factor) + 0.5) / factor
    gx, gy = np.meshgrid(*g)
    h, w = pos.shape[0] - 1, pos.shape[1] - 1
    counts = {}
    for i in range(h):
        for j in range(w):
            quad = Polygon([pos[i, j], pos[i, j + 1], pos[i + 1, j + 1], pos[i + 1, j]])
            x0, y0, x1, y1 = quad.bounds
            sel = (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)
            inside = shapely.contains_xy(quad, gx[sel], gy[sel])
            src = ((gy[sel] * factor).astype(int) // factor) * ws + (gx[sel] * factor).astype(int) // factor
            for k, n in zip(*np.unique(src[inside], return_counts=True)):
                counts[(i * w + j, int(k))] = int(n)
    return counts


@pytest.mark.parametrize("factor", [2, 5])
def test_counts_match_point_in_polygon(factor):
    """partition_record(method='upsample') = n_k / N^2 with n_k counted independently.
    The smooth swirl puts no centre exactly on an edge, so shapely's boundary
    convention does not matter."""
    h, w = 9, 11
    pos = swirl(corners(h, w), h, w, 0.7, 0.9) + [0.13, -0.21]
    t, s, a = cupy_core.partition_record(pos, (h, w), method="upsample", factor=factor)
    got = {(int(ti), int(si)): int(round(ai * factor ** 2)) for ti, si, ai in zip(t, s, a)}
    assert np.allclose(a * factor ** 2, np.round(a * factor ** 2))
    assert got == _shapely_counts(pos, (h, w), factor)


def test_tiling_counts_each_centre_once():
    """Neighbouring quads share edges; the half-open rules give every sub-pixel centre
    to at most one target, also for centres exactly on shared edges (shift by 1/2N)."""
    h, w, n = 16, 18, 4
    for pos in (corners(h, w) + [0.5 / n, 1.5 / n], swirl(corners(h, w), h, w, 0.5, 0.5)):
        t, s, a = cupy_core.partition_record(pos, (h, w), method="upsample", factor=n)
        per_source = np.bincount(s, a, minlength=h * w).reshape(h, w)
        assert per_source.max() <= 1.0 + 1e-12
    # the half-pixel-of-a-sub-pixel shift: every interior source fully used
    pos = corners(h, w) + [0.5 / n, 1.5 / n]
    t, s, a = cupy_core.partition_record(pos, (h, w), method="upsample", factor=n)
    per_source = np.bincount(s, a, minlength=h * w).reshape(h, w)
    np.testing.assert_array_equal(per_source[1:, 1:], 1.0)


def test_conditional_moments():
    """E[Y | X] = sum n_k X_k / (N sqrt(count)), Var = 1 - sum n_k^2 / (N^2 count), i.e.
    docs/DESIGN.md 4.4 item 3 with a = n_k / N^2: sample moments over seeds, tolerances in
    standard errors of the sample size."""
    h, w, factor, channels, seeds = 7, 8, 3, 8, 400
    pos = swirl(corners(h, w), h, w, 0.9, 0.7) + [0.4, 0.3]
    prior = cupy_core.white_noise((h, w), 1, seed=5)
    X = np.repeat(prior, channels, axis=2)       # the same prior in every channel
    t, s, a = cupy_core.partition_record(pos, (h, w), method="upsample", factor=factor)
    A = np.bincount(t, a, minlength=h * w)
    has = A > 0
    mean_th = np.bincount(t, a * prior.ravel()[s], minlength=h * w)
    mean_th[has] /= np.sqrt(A[has])
    var_th = np.ones(h * w)
    var_th[has] = 1 - np.bincount(t, a * a, minlength=h * w)[has] / A[has]
    ys = np.stack([cupy_core.warp(X, pos, method="upsample", factor=factor, seed=sd)
                   .reshape(h * w, channels) for sd in range(seeds)], axis=2).reshape(h * w, -1)
    n = ys.shape[1]
    m, v = ys.mean(1), ys.var(1, ddof=1)
    se_m = np.sqrt(np.maximum(var_th, 1e-12) / n)
    assert np.all(np.abs(m - mean_th) <= 5 * se_m + 1e-6), np.max(np.abs(m - mean_th) / se_m)
    se_v = var_th * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(v - var_th) <= 5 * se_v + 1e-6)
    assert var_th[has].min() < 0.9   # the map really leaves pixels with partial variance


def test_single_frame_is_white():
    h = w = 128
    prior = cupy_core.white_noise((h, w), 4, seed=0)
    pos = swirl(corners(h, w), h, w, 0.6, 0.8) + [0.31, 0.17]
    out = cupy_core.warp(prior, pos, method="upsample", factor=4, seed=1, frame=1)
    ok, why = stats.check_white(out)
    assert ok, why


def test_fold_and_nan_are_finite():
    h, w = 24, 26
    pos = fold(corners(h, w), w, 2.5, 4.0)
    pos[3:5, 4:9] = np.nan
    out = cupy_core.warp(cupy_core.white_noise((h, w), 3), pos, method="upsample", factor=4)
    assert np.isfinite(out).all()
    ok, why = stats.check_white(out, spatial=False)
    assert ok, why


def test_seed_frame_and_warper():
    h, w = 20, 24
    prior = cupy_core.white_noise((h, w), 4, seed=1)
    pos = swirl(corners(h, w), h, w)
    a = cupy_core.warp(prior, pos, method="upsample", factor=4, seed=3, frame=2)
    np.testing.assert_array_equal(a, cupy_core.warp(prior, pos, method="upsample", factor=4,
                                                    seed=3, frame=2))
    assert not np.array_equal(a, cupy_core.warp(prior, pos, method="upsample", factor=4,
                                                seed=3, frame=3))
    nw = cupy_core.NoiseWarper((h, w), 4, method="upsample", factor=4, seed=1, device="cpu")
    np.testing.assert_array_equal(nw.step(pos), cupy_core.warp(
        cupy_core.white_noise((h, w), 4, seed=1), pos, method="upsample", factor=4, seed=1,
        frame=1))


@pytest.mark.parametrize("factor", [None, 0, -2, 2.5, "4", True])
def test_bad_factor(factor):
    prior = cupy_core.white_noise((6, 7), 2)
    with pytest.raises(ValueError, match="factor"):
        cupy_core.warp(prior, corners(6, 7), method="upsample", factor=factor)
    with pytest.raises(ValueError, match="factor"):
        cupy_core.partition_record(corners(6, 7), (6, 7), method="upsample", factor=factor)
    with pytest.raises(ValueError, match="factor"):
        cupy_core.NoiseWarper((6, 7), 2, method="upsample", factor=factor, device="cpu")


def test_factor_only_for_upsample():
    with pytest.raises(ValueError, match="factor"):
        cupy_core.warp(cupy_core.white_noise((6, 7), 2), corners(6, 7), method="grid", factor=4)


def test_upsample_3d_not_implemented():
    prior = cupy_core.white_noise((4, 5, 6), 2)
    d, h, w = 4, 5, 6
    z, y, x = np.mgrid[0:d + 1, 0:h + 1, 0:w + 1].astype(float)
    with pytest.raises(NotImplementedError, match="2-D only"):
        cupy_core.warp(prior, np.stack([x, y, z], -1), method="upsample", factor=2)


def _axis_share(d, n):
    """Sub-pixel centres (a + 1/2) / n of [0, 1) that stay in [d, 1 + d), 0 <= d < 1, and
    fall in [0, 1): n - ceil(d n - 1/2)."""
    return (n - int(np.ceil(d * n - 0.5))) / n


def test_carried_correlation_converges_to_grid():
    """Subpixel translation by (dx, dy): the new pixel's correlation with the same pixel
    of the prior is the overlap (1 - dx)(1 - dy) for the grid variant (its infinite-
    resolution value) and, for the baseline, the product of the shares of sub-pixel
    centres that stay, which tends to it as N grows (error <= 1/(2N) per axis)."""
    h = w = 128
    dx, dy = 0.3, 0.2
    prior = cupy_core.white_noise((h, w), 4, seed=7)
    pos = corners(h, w) + [dx, dy]
    inner = (slice(0, h - 1), slice(0, w - 1))   # targets wholly inside the source
    n = (h - 1) * (w - 1) * 4

    def carried(method, factor=None):
        out = cupy_core.warp(prior, pos, method=method, factor=factor, seed=3, frame=1)
        return stats.carried_correlation(prior[inner], out[inner])

    exact = (1 - dx) * (1 - dy)
    grid = carried("grid")
    rho = {f: carried("upsample", f) for f in (2, 16)}
    for f, r in list(rho.items()) + [("grid", grid)]:
        th = exact if f == "grid" else _axis_share(dx, f) * _axis_share(dy, f)
        se = (1 - th ** 2) / np.sqrt(n)
        assert abs(r - th) <= 5 * se, (f, r, th)
    assert abs(rho[16] - grid) < abs(rho[2] - grid)
