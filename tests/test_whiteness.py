"""Whiteness of warped noise (docs/DESIGN.md 4.4, property 4) and temporal coherence.

Why every frame must be white, whatever the map: section 4.2 samples, for each
source pixel k, pieces Z_i + a_i (X_k - T) that are unconditionally independent
N(0, a_i) when X_k ~ N(0, 1) (and sum_i a_i <= 1 after the fail-safe rescaling);
each piece goes to exactly one target, so the new pixels sum disjoint sets of
independent pieces and are i.i.d. N(0, 1). For an injective map this is the
integral-noise property itself; for a folding map the exact integrals W(R_p) of
overlapping regions would be correlated, but the algorithm's pieces are not
(the particle variant always normalises, the grid variant rescales s > 1), so
the whole of `check_white` is asserted there as well, not only the marginals.

Everything is CPU (NumPy) and deterministic (fixed seeds); tolerances are
n_sigma = 5 standard errors from the sample size (see `cupy_core.stats`).
"""
import math

import numpy as np
import pytest

import cupy_core
from cupy_core import stats

METHODS = ["grid", "particle"]
H = W = 96          # 96 x 96 x 4 = 36864 values per frame: 5 SE of a lag correlation ~0.026
C = 4
N_FRAMES = 240      # chained frames
CHECK_EVERY = 20    # frames given the full check_white (plus the last)
# Scans of many frames: each frame's KS p must beat 1e-6 (not 1e-4), so that the
# ~30 KS tests of a scan stay far from a chance failure (a Bonferroni-style bound).
KS_SCAN = 1e-6


# --------------------------------------------------------------------------
# Maps: backward positions (x, y) at pixel corners, (H+1, W+1, 2)


def corner_grid(h=H, w=W):
    ys, xs = np.mgrid[0:h + 1, 0:w + 1].astype(np.float64)
    return xs, ys


def swirl(xs, ys, theta0, amp, phase=0.0, h=H, w=W, period=32.0):
    """Rotation about the centre by an angle fading with radius, plus a sinusoidal
    wobble: smooth, non-rigid, and injective for the small parameters used here."""
    cx, cy = w / 2.0, h / 2.0
    dx, dy = xs - cx, ys - cy
    r0 = 0.35 * min(h, w)
    th = theta0 * np.exp(-(dx * dx + dy * dy) / (r0 * r0))
    c, s = np.cos(th), np.sin(th)
    px = cx + c * dx - s * dy + amp * np.sin(2 * np.pi * ys / period + phase)
    py = cy + s * dx + c * dy + amp * np.sin(2 * np.pi * xs / period + 0.7 + phase)
    return np.stack([px, py], axis=-1)


def fold(xs, ys, phase=0.0, amp=6.0, period=24.0):
    """x -> x + amp sin(2 pi x / period): dx'/dx = 1 + 2 pi amp / period cos(.) dips to
    -0.57, so columns of quads invert and overlap their neighbours (non-injective);
    a weaker fold in y makes the overlaps two-dimensional."""
    px = xs + amp * np.sin(2 * np.pi * xs / period + phase)
    py = ys + 0.5 * amp * np.sin(2 * np.pi * ys / period + 0.3 * phase + 1.0)
    return np.stack([px, py], axis=-1)


def quad_signed_areas(corners):
    """Shoelace area of each target quad P0 P1 P2 P3 (positive for the identity)."""
    P = [corners[:-1, :-1], corners[:-1, 1:], corners[1:, 1:], corners[1:, :-1]]
    a = 0.0
    for k in range(4):
        p, q = P[k], P[(k + 1) % 4]
        a = a + p[..., 0] * q[..., 1] - q[..., 0] * p[..., 1]
    return 0.5 * a


def assert_injective_looking(corners):
    # Every quad keeps the identity's orientation: a local-injectivity check of the
    # test's own assumption (the maps are near-identity, so it is also global).
    assert quad_signed_areas(corners).min() > 0.05


def inside_fraction(corners, h=H, w=W):
    x, y = corners[..., 0], corners[..., 1]
    return np.mean((x >= 0) & (x <= w) & (y >= 0) & (y <= h))


def swirl_step(t):
    xs, ys = corner_grid()
    return swirl(xs, ys, theta0=0.12, amp=0.6, phase=0.05 * t)


def fold_step(t):
    xs, ys = corner_grid()
    return fold(xs, ys, phase=0.37 * t)


def test_map_assumptions():
    """The maps are what the tests below claim they are."""
    xs, ys = corner_grid()
    single = swirl(xs, ys, theta0=0.6, amp=1.5)
    assert_injective_looking(single)
    assert inside_fraction(single) > 0.95
    for t in (0, 1, 17, N_FRAMES - 1):
        assert_injective_looking(swirl_step(t))
        areas = quad_signed_areas(fold_step(t))
        assert (areas < 0).mean() > 0.1   # many inverted (folded) quads
        assert inside_fraction(fold_step(t)) > 0.85
    # Sub-pixel offsets vary over the frame, so the bridge really splits pixels.
    frac = np.modf(single[..., 0])[0]
    assert 0.2 < frac.std()


def _report_line(tag, noise):
    rep = stats.whiteness_report(noise)
    lags = " ".join(f"r({k})={v:+.4f}" for k, v in rep["lag_corr"].items())
    return (f"{tag}: mean={rep['mean']:+.4f} var={rep['var']:.4f} KS D={rep['ks_D']:.4f} "
            f"p={rep['ks_p']:.3f} I={rep['morans_I']:+.4f} (SE {rep['morans_I_se']:.4f}) {lags}")


# --------------------------------------------------------------------------
# Single frame


def test_white_noise_itself_is_white():
    for seed, frame in ((0, 0), (1, 7), (123456789, 2 ** 31)):
        ok, reasons = stats.check_white(cupy_core.white_noise((H, W), C, seed=seed, frame=frame))
        assert ok, reasons
    ok, reasons = stats.check_white(cupy_core.white_noise((128, 128), 16, seed=5))
    assert ok, reasons


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("at", ["corners", "centers"])
def test_single_frame_smooth_map_is_white(method, at):
    xs, ys = corner_grid()
    pos = swirl(xs, ys, theta0=0.6, amp=1.5)
    if at == "centers":
        pos = swirl(xs[:-1, :-1] + 0.5, ys[:-1, :-1] + 0.5, theta0=0.6, amp=1.5)
    prior = cupy_core.white_noise((H, W), C, seed=11)
    out = cupy_core.warp(prior, pos, method=method, seed=11, frame=1, at=at)
    assert out.shape == (H, W, C) and out.dtype == np.float32
    ok, reasons = stats.check_white(out)
    assert ok, reasons
    # Not a copy of the prior, nor fresh noise: it carries the prior along the map
    # (each target keeps the share of the source pixel under its centre, ~0.5 on
    # average over the sub-pixel offsets).
    xc, yc = corner_grid()
    carried, inside = sample_along(prior, swirl(xc[:-1, :-1] + 0.5, yc[:-1, :-1] + 0.5,
                                                theta0=0.6, amp=1.5))
    assert 0.3 < stats.carried_correlation(carried, out, mask=inside) < 0.95


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,scale", [("zoom-in", 0.5), ("zoom-out", 1.7)])
def test_single_frame_scaling_is_white(method, name, scale):
    # zoom-in: each source pixel is split among ~4 targets (the bridge at work);
    # zoom-out: each target gathers ~3 sources, the edges fall outside (fresh noise).
    xs, ys = corner_grid()
    pos = np.stack([W / 2 + scale * (xs - W / 2) + 0.13, H / 2 + scale * (ys - H / 2) - 0.21], -1)
    prior = cupy_core.white_noise((H, W), C, seed=12)
    out = cupy_core.warp(prior, pos, method=method, seed=12, frame=1)
    ok, reasons = stats.check_white(out)
    assert ok, (name, reasons)


@pytest.mark.parametrize("method", METHODS)
def test_single_frame_folding_map_is_white(method):
    prior = cupy_core.white_noise((H, W), C, seed=13)
    out = cupy_core.warp(prior, fold_step(0), method=method, seed=13, frame=1)
    ok, reasons = stats.check_white(out)
    assert ok, reasons


@pytest.mark.parametrize("method", METHODS)
def test_single_frame_with_holes_is_white(method):
    # 40% of the targets have no source (NaN): they get fresh noise, and the source
    # pixels they would have taken are only partly claimed, so the grid variant's
    # remainder Z_r ~ N(0, 1 - s) is needed in bulk (without it the pieces of a
    # half-claimed source are anti-correlated and too small).
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    pos = np.stack([xs + 0.37, ys + 0.61], -1)
    holes = np.random.default_rng(14).random((H, W)) < 0.4
    pos[holes] = np.nan
    prior = cupy_core.white_noise((H, W), C, seed=14)
    out = cupy_core.warp(prior, pos, method=method, seed=14, frame=1, at="centers")
    assert np.isfinite(out).all()
    ok, reasons = stats.check_white(out)
    assert ok, reasons


# --------------------------------------------------------------------------
# Chained frames


def run_chain(method, step_map, seed):
    """Warp N_FRAMES times; yield (frame number, noise) for every frame."""
    nw = cupy_core.NoiseWarper((H, W), C, method=method, seed=seed, device="cpu")
    for t in range(1, N_FRAMES + 1):
        yield t, nw.step(step_map(t), at="corners")


def check_chain(method, step_map, seed):
    failures, lines = [], []
    n = H * W * C
    tol_mean, tol_var = 5.0 / math.sqrt(n), 5.0 * math.sqrt(2.0 / (n - 1))
    for t, noise in run_chain(method, step_map, seed):
        assert noise.shape == (H, W, C) and noise.dtype == np.float32
        # Every frame: the cheap marginal checks (a drift would show here first).
        m, v = float(noise.mean()), float(noise.var(ddof=1))
        if abs(m) > tol_mean or abs(v - 1.0) > tol_var or not np.isfinite(v):
            failures.append(f"frame {t}: mean {m:+.4f} var {v:.4f}")
        # Every CHECK_EVERY-th frame and the last: the full whiteness check.
        if t % CHECK_EVERY == 0 or t == N_FRAMES:
            ok, reasons = stats.check_white(noise, ks_p_min=KS_SCAN)
            if not ok:
                failures.append(f"frame {t}: " + "; ".join(reasons))
            lines.append(_report_line(f"frame {t}", noise))
    return failures, lines


@pytest.mark.parametrize("method", METHODS)
def test_chained_swirl_stays_white(method):
    failures, lines = check_chain(method, swirl_step, seed=21)
    print("\n".join(lines))
    assert not failures, failures


@pytest.mark.parametrize("method", METHODS)
def test_chained_folding_map_stays_white(method):
    failures, lines = check_chain(method, fold_step, seed=22)
    print("\n".join(lines))
    assert not failures, failures


# --------------------------------------------------------------------------
# Temporal coherence


def sample_along(prev, pos_centers):
    """prev at the source pixel containing each target's backward centre, and the
    mask of targets whose centre lands inside the source."""
    j = np.floor(pos_centers[..., 0]).astype(np.int64)
    i = np.floor(pos_centers[..., 1]).astype(np.int64)
    hs, ws = prev.shape[:2]
    inside = (i >= 0) & (i < hs) & (j >= 0) & (j < ws)
    return prev[np.clip(i, 0, hs - 1), np.clip(j, 0, ws - 1)], inside


def small_motion(t):
    """Integer translation (3, -2) plus a smooth sub-pixel wobble of at most 0.08 px:
    the content moves, but each target keeps >= ~0.85 of its nearest source pixel."""
    xs, ys = corner_grid()
    wx = 0.08 * np.sin(2 * np.pi * ys / 40 + 0.3 * t)
    wy = 0.08 * np.cos(2 * np.pi * xs / 50 + 0.2 * t)
    return np.stack([xs + 3 + wx, ys - 2 + wy], axis=-1)


def centers_of(corners):
    return 0.25 * (corners[:-1, :-1] + corners[:-1, 1:] + corners[1:, :-1] + corners[1:, 1:])


@pytest.mark.parametrize("method", METHODS)
def test_small_motion_is_temporally_coherent(method):
    nw = cupy_core.NoiseWarper((H, W), C, method=method, seed=31, device="cpu")
    n = H * W * C
    for t in range(1, 4):
        prev = nw.noise.copy()
        pos = small_motion(t)
        new = nw.step(pos)
        carried, inside = sample_along(prev, centers_of(pos))
        rho = stats.carried_correlation(carried, new, mask=inside)
        assert rho > 0.8, (t, rho)
        # Redrawn noise, sampled the same way, is uncorrelated (5 SE).
        fresh = cupy_core.white_noise((H, W), C, seed=31, frame=1000 + t)
        assert abs(stats.carried_correlation(carried, fresh, mask=inside)) < 5 / math.sqrt(n)
        ok, reasons = stats.check_white(new)
        assert ok, reasons


@pytest.mark.parametrize("method", METHODS)
def test_subpixel_translation_carries_the_overlap(method):
    # Translation by (0.3, 0.2): target (i, j) covers 0.7 * 0.8 = 0.56 of source (i, j)
    # (grid: exact overlap; particle: the bilinear weight, and S_k = 1 inside), so
    # Cov(Y_p, X_p) = a / sqrt(A_p) = 0.56 for interior pixels. For a bivariate normal
    # pair the sample correlation's SE is ~(1 - rho^2) / sqrt(n); pairs of neighbouring
    # pixels share sources, so allow 5 SE of the independent case times 2.
    xs, ys = corner_grid()
    pos = np.stack([xs + 0.3, ys + 0.2], -1)
    prior = cupy_core.white_noise((H, W), C, seed=32)
    out = cupy_core.warp(prior, pos, method=method, seed=32, frame=1)
    interior = np.zeros((H, W), bool)
    interior[1:-1, 1:-1] = True
    rho = stats.carried_correlation(prior, out, mask=interior)
    n = interior.sum() * C
    assert rho == pytest.approx(0.56, abs=10 * (1 - 0.56 ** 2) / math.sqrt(n))
    ok, reasons = stats.check_white(out)
    assert ok, reasons


# --------------------------------------------------------------------------
# 3-D (voxels)


def swirl3d(d, h, w, theta0, amp, phase=0.0):
    """Corners (D+1, H+1, W+1, 3) of a z-dependent swirl about the volume's axis plus
    a wobble in z: smooth, injective, mostly inside."""
    zs, ys, xs = np.mgrid[0:d + 1, 0:h + 1, 0:w + 1].astype(np.float64)
    cx, cy = w / 2.0, h / 2.0
    dx, dy = xs - cx, ys - cy
    r0 = 0.35 * min(h, w)
    th = theta0 * np.exp(-(dx * dx + dy * dy) / (r0 * r0)) * np.cos(np.pi * zs / d + phase)
    c, s = np.cos(th), np.sin(th)
    pz = zs + amp * np.sin(2 * np.pi * xs / 16 + phase) * np.sin(np.pi * zs / d)
    return np.stack([cx + c * dx - s * dy, cy + s * dx + c * dy, pz], axis=-1)


@pytest.mark.parametrize("method", METHODS)
def test_3d_swirl_is_white(method):
    d = h = w = 24
    c = 2
    # The test's assumption: every warped voxel keeps its orientation (local injectivity).
    p = swirl3d(d, h, w, 0.5, 0.7)
    ex, ey, ez = (p[:-1, :-1, 1:] - p[:-1, :-1, :-1], p[:-1, 1:, :-1] - p[:-1, :-1, :-1],
                  p[1:, :-1, :-1] - p[:-1, :-1, :-1])
    assert np.einsum("...i,...i->...", ez, np.cross(ex, ey)).min() > 0.5
    prior = cupy_core.white_noise((d, h, w), c, seed=41)
    out = cupy_core.warp(prior, swirl3d(d, h, w, 0.5, 0.7), method=method, seed=41, frame=1)
    assert out.shape == (d, h, w, c) and out.dtype == np.float32
    ok, reasons = stats.check_white(out)
    assert ok, reasons
    # A few chained steps too (the 3-D kernels are slower; 20 frames).
    nw = cupy_core.NoiseWarper((d, h, w), c, method=method, seed=42, device="cpu")
    for t in range(1, 21):
        out = nw.step(swirl3d(d, h, w, 0.15, 0.3, phase=0.1 * t))
    ok, reasons = stats.check_white(out)
    assert ok, reasons
