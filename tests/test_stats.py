"""cupy_core.stats against independent references (SciPy, loops, np.corrcoef),
and checks that `check_white` rejects what is not white and accepts what is.

All randomness comes from numpy default_rng with fixed seeds, so every test is
deterministic; tolerances are a few standard errors of the quantity compared.
"""
import math

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")

from cupy_core import stats


def white(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------------------
# normal_cdf


def test_normal_cdf_matches_scipy_everywhere():
    x = np.concatenate([np.linspace(-39, 39, 400_001),
                        [0.0, 0.46875 * math.sqrt(2), -0.46875 * math.sqrt(2),
                         4 * math.sqrt(2), -4 * math.sqrt(2), 1e-300, -1e-300]])
    got = stats.normal_cdf(x)
    ref = scipy_stats.norm.cdf(x)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert np.max(np.abs(got - ref)) < 1e-14
    # Lower tail: relative accuracy too (what a p-value of a tail needs).
    tail = ref > 1e-300
    assert np.max(np.abs(got[tail] - ref[tail]) / ref[tail]) < 1e-10


def test_normal_cdf_special_values_and_shapes():
    assert stats.normal_cdf(0.0) == 0.5
    assert isinstance(stats.normal_cdf(1.0), float)
    assert stats.normal_cdf(np.inf) == 1.0 and stats.normal_cdf(-np.inf) == 0.0
    assert math.isnan(stats.normal_cdf(np.nan))
    a = np.linspace(-3, 3, 24).reshape(2, 3, 4).astype(np.float32)
    np.testing.assert_allclose(stats.normal_cdf(a), scipy_stats.norm.cdf(a.astype(np.float64)),
                               rtol=0, atol=1e-15)
    # Symmetry Phi(-x) = 1 - Phi(x) across Cody's region boundaries.
    x = np.linspace(0, 8, 1001)
    np.testing.assert_allclose(stats.normal_cdf(-x), 1 - stats.normal_cdf(x), rtol=0, atol=2e-16)


# --------------------------------------------------------------------------
# Kolmogorov-Smirnov


@pytest.mark.parametrize("n", [1000, 3000, 10_000, 100_000])
@pytest.mark.parametrize("dist", ["normal", "t5", "shifted"])
def test_ks_matches_scipy(n, dist):
    rng = np.random.default_rng(1000 + n)
    if dist == "normal":
        x = rng.standard_normal(n)
    elif dist == "t5":
        x = rng.standard_t(5, n) * math.sqrt(3 / 5)  # unit variance, heavier tails
    else:
        x = rng.standard_normal(n) + 0.05
    d, p = stats.ks_statistic(x)
    ref = scipy_stats.kstest(x, "norm")
    assert d == pytest.approx(ref.statistic, rel=1e-12, abs=1e-14)
    # Stephens' corrected asymptotic p against scipy's exact (n <= 1e4) or
    # asymptotic p: a few percent of p, or a tiny absolute error in the far tail.
    assert p == pytest.approx(ref.pvalue, rel=0.05, abs=1e-6)


def test_kolmogorov_sf_matches_scipy_kstwobign():
    lam = np.concatenate([np.linspace(0.05, 4, 400), [0.999999, 1.0, 1.000001]])
    got = np.array([stats.kolmogorov_sf(v) for v in lam])
    np.testing.assert_allclose(got, scipy_stats.kstwobign.sf(lam), rtol=1e-10, atol=1e-15)
    assert stats.kolmogorov_sf(0.0) == 1.0


def test_ks_accepts_any_shape():
    x = white((16, 16, 4), 3)
    assert stats.ks_statistic(x) == stats.ks_statistic(x.ravel())


# --------------------------------------------------------------------------
# Lag correlation


@pytest.mark.parametrize("lag", [(1, 0), (0, 1), (1, 1), (1, -1), (-2, 3), (0, -1), (3, 0)])
def test_lag_correlation_matches_corrcoef_on_explicit_pairs(lag):
    x = white((13, 17, 3), 7)
    dy, dx = lag
    h, w, c = x.shape
    # Explicit loop over pixels: pair (i, j) with (i+dy, j+dx) when inside.
    u, v = [], []
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                u.extend(x[i, j])
                v.extend(x[i + dy, j + dx])
    ref = np.corrcoef(u, v)[0, 1]
    assert stats.lag_correlation(x, lag) == pytest.approx(ref, abs=1e-12)
    assert stats.lag_pair_count(x.shape, lag) == len(u)


def test_lag_correlation_3d_matches_corrcoef():
    x = white((5, 6, 7, 2), 8)
    for lag in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, -1, 2)]:
        dz, dy, dx = lag
        d, h, w, _ = x.shape
        a = x[max(0, -dz):d - max(0, dz), max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        b = x[max(0, dz):d - max(0, -dz), max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
        ref = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert stats.lag_correlation(x, lag) == pytest.approx(ref, abs=1e-12)


def test_lag_correlation_sees_a_planted_diagonal_correlation():
    # y[i, j] = (x[i, j] + x[i+1, j-1]) / sqrt(2): correlation 1/2 at lag (1, -1),
    # and 0 at the mirrored lag (1, 1); a sign slip in negative lags would swap them.
    x = white((201, 201, 4), 9)
    y = (x[:-1, 1:] + x[1:, :-1]) / math.sqrt(2)
    se = 1 / math.sqrt(stats.lag_pair_count(y.shape, (1, -1)))
    assert stats.lag_correlation(y, (1, -1)) == pytest.approx(0.5, abs=5 * se)
    assert abs(stats.lag_correlation(y, (1, 1))) < 5 * se
    assert abs(stats.lag_correlation(y, (-1, 1))) == pytest.approx(0.5, abs=5 * se)
    ok, reasons = stats.check_white(y)
    assert not ok and any("(1,-1)" in r for r in reasons)
    assert not any("(1,1) " in r for r in reasons)


def test_lag_correlation_rejects_bad_lags():
    x = white((4, 4, 1), 1)
    with pytest.raises(ValueError):
        stats.lag_correlation(x, (1, 0, 0))
    with pytest.raises(ValueError):
        stats.lag_correlation(x, (4, 0))


# --------------------------------------------------------------------------
# Moran's I


def _morans_reference(field):
    """Textbook Moran's I and Cliff-Ord variances with an explicit weight matrix."""
    shape = field.shape
    n = field.size
    coords = list(np.ndindex(*shape))
    index = {p: k for k, p in enumerate(coords)}
    w = np.zeros((n, n))
    for p in coords:
        for ax in range(len(shape)):
            for step in (-1, 1):
                q = list(p)
                q[ax] += step
                q = tuple(q)
                if q in index:
                    w[index[p], index[q]] = 1.0
    x = np.array([field[p] for p in coords])
    z = x - x.mean()
    s0 = w.sum()
    num = 0.0
    for i in range(n):
        for j in range(n):
            num += w[i, j] * z[i] * z[j]
    i_val = n / s0 * num / np.sum(z * z)
    s1 = 0.5 * np.sum((w + w.T) ** 2)
    s2 = np.sum((w.sum(axis=1) + w.sum(axis=0)) ** 2)
    e = -1 / (n - 1)
    var_norm = (n * n * s1 - n * s2 + 3 * s0 ** 2) / ((n * n - 1) * s0 ** 2) - e ** 2
    b2 = n * np.sum(z ** 4) / np.sum(z ** 2) ** 2
    var_rand = ((n * ((n * n - 3 * n + 3) * s1 - n * s2 + 3 * s0 ** 2)
                 - b2 * ((n * n - n) * s1 - 2 * n * s2 + 6 * s0 ** 2))
                / ((n - 1) * (n - 2) * (n - 3) * s0 ** 2) - e ** 2)
    return i_val, e, var_norm, var_rand


@pytest.mark.parametrize("shape", [(6, 7, 3), (3, 4, 5, 2)])
def test_morans_i_matches_loop_reference(shape):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape)
    x[..., 0] += np.arange(shape[-2])  # give channel 0 a strong gradient (I far from 0)
    refs = [_morans_reference(x[..., c]) for c in range(shape[-1])]
    c = shape[-1]
    for assumption, col in (("normality", 2), ("randomisation", 3)):
        got = stats.morans_i(x, assumption=assumption)
        assert got.I == pytest.approx(np.mean([r[0] for r in refs]), abs=1e-12)
        assert got.expected == pytest.approx(refs[0][1], abs=1e-15)
        assert got.se == pytest.approx(math.sqrt(sum(r[col] for r in refs)) / c, rel=1e-10)
    assert stats.morans_i(x[..., :1]).I > 0.3  # the gradient is positive autocorrelation


def test_morans_i_standard_error_matches_monte_carlo():
    # 4000 independent white 12x12 fields: the spread of I must match the
    # closed-form SE (the SE of a standard deviation from m samples is ~1/sqrt(2m)).
    m = 4000
    xs = white((m, 12, 12), 12)
    vals = np.array([stats.morans_i(f[..., None]).I for f in xs])
    ref = stats.morans_i(xs[0][..., None])
    assert vals.mean() == pytest.approx(ref.expected, abs=5 * ref.se / math.sqrt(m))
    assert vals.std(ddof=1) == pytest.approx(ref.se, rel=5 / math.sqrt(2 * m))


def test_morans_i_channel_average_se():
    x = white((20, 20, 4), 13)
    one = stats.morans_i(x[..., :1])
    four = stats.morans_i(x)
    assert four.se == pytest.approx(one.se / 2, rel=1e-12)
    assert four.z == pytest.approx((four.I - four.expected) / four.se)


# --------------------------------------------------------------------------
# Report


def test_whiteness_report_fields():
    x = white((32, 48, 4), 14)
    rep = stats.whiteness_report(x)
    n = x.size
    assert rep["n"] == n and rep["channels"] == 4 and rep["finite"]
    assert rep["mean"] == pytest.approx(x.mean()) and rep["mean_se"] == pytest.approx(1 / math.sqrt(n))
    assert rep["var"] == pytest.approx(x.var(ddof=1))
    assert rep["var_se"] == pytest.approx(math.sqrt(2 / (n - 1)))
    assert set(rep["lag_corr"]) == {"1,0", "0,1", "1,1", "1,-1"}
    assert rep["lag_pairs"]["1,-1"] == 31 * 47 * 4
    assert rep["lag_corr_se"]["1,0"] == pytest.approx(1 / math.sqrt(31 * 48 * 4))
    assert (rep["ks_D"], rep["ks_p"]) == stats.ks_statistic(x)
    assert rep["morans_I_expected"] == pytest.approx(-1 / (32 * 48 - 1))
    import json
    json.dumps(rep)  # the demo and benchmarks write it as JSON

    rep3 = stats.whiteness_report(white((8, 9, 10, 2), 15))
    assert set(rep3["lag_corr"]) == {"1,0,0", "0,1,0", "0,0,1", "1,1,1"}


def test_variance_se_matches_monte_carlo():
    # The SE the checks use for the variance, sqrt(2/(n-1)), against 2000 replicates.
    xs = white((2000, 500), 16)
    v = xs.var(axis=1, ddof=1)
    assert v.std(ddof=1) == pytest.approx(math.sqrt(2 / 499), rel=5 / math.sqrt(2 * 2000))


# --------------------------------------------------------------------------
# check_white: accepts white noise, rejects each kind of departure


@pytest.mark.parametrize("shape,seed", [
    ((64, 64, 4), 0), ((96, 96, 4), 1), ((17, 33, 1), 2), ((128, 128, 16), 3),
    ((256, 256, 4), 4), ((16, 16, 16, 4), 5), ((7, 30, 20, 3), 6),
])
def test_check_white_accepts_white_noise(shape, seed):
    ok, reasons = stats.check_white(white(shape, seed))
    assert ok, reasons


def _reasons_about(reasons, word):
    return [r for r in reasons if word in r]


def test_check_white_rejects_box_blur():
    # 2x2 box average: neighbours share 2 of 4 terms, lag correlation 1/2; the
    # marginals stay N(0, 1) after the sqrt(4) rescale, so only spatial checks fire.
    x = white((129, 129, 4), 21)
    y = (x[:-1, :-1] + x[1:, :-1] + x[:-1, 1:] + x[1:, 1:]) / 2.0
    ok, reasons = stats.check_white(y)
    assert not ok
    assert _reasons_about(reasons, "lag (1,0)") and _reasons_about(reasons, "lag (0,1)")
    assert _reasons_about(reasons, "Moran")
    assert stats.check_white(y, spatial=False)[0]


def test_check_white_rejects_mild_blur():
    # A weak blur (correlation ~0.1 at lag 1) on a 64x64x4 field: 0.1 is ~13 SE.
    x = white((65, 64, 4), 22)
    y = (x[1:] + 0.1 * x[:-1]) / math.sqrt(1.01)
    ok, reasons = stats.check_white(y)
    assert not ok and _reasons_about(reasons, "lag (1,0)")


def test_check_white_rejects_3d_correlation_along_depth():
    x = white((17, 24, 24, 4), 23)
    y = (x[1:] + x[:-1]) / math.sqrt(2)
    ok, reasons = stats.check_white(y)
    assert not ok and _reasons_about(reasons, "lag (1,0,0)")
    assert not _reasons_about(reasons, "lag (0,1,0)") and not _reasons_about(reasons, "lag (0,0,1)")


def test_check_white_rejects_scaled_noise():
    y = math.sqrt(1.2) * white((128, 128, 4), 24)
    ok, reasons = stats.check_white(y)
    assert not ok and _reasons_about(reasons, "variance")
    assert not _reasons_about(reasons, "lag") and not _reasons_about(reasons, "mean")


def test_check_white_rejects_shifted_noise():
    y = white((500, 500, 4), 25) + 0.05  # n = 1e6: 0.05 is 50 SE of the mean
    ok, reasons = stats.check_white(y)
    assert not ok and _reasons_about(reasons, "mean")
    assert not _reasons_about(reasons, "variance")


def test_check_white_rejects_uniform_noise():
    # Uniform with mean 0 and variance 1: only the distribution's shape is wrong.
    rng = np.random.default_rng(26)
    y = rng.uniform(-math.sqrt(3), math.sqrt(3), (128, 128, 4))
    ok, reasons = stats.check_white(y)
    assert not ok and _reasons_about(reasons, "KS")
    assert not _reasons_about(reasons, "mean") and not _reasons_about(reasons, "variance")


def test_check_white_rejects_non_finite():
    y = white((16, 16, 4), 27)
    y[3, 4, 1] = np.nan
    ok, reasons = stats.check_white(y)
    assert not ok and "non-finite" in reasons[0]


def test_check_white_rejects_shape():
    with pytest.raises(ValueError):
        stats.check_white(np.zeros((16, 16)))


# --------------------------------------------------------------------------
# carried_correlation


def test_carried_correlation():
    x = white((64, 64, 4), 31)
    e = white((64, 64, 4), 32)
    n = x.size
    assert stats.carried_correlation(x, x) == pytest.approx(1.0)
    assert abs(stats.carried_correlation(x, e)) < 5 / math.sqrt(n)
    rho = 0.9
    y = rho * x + math.sqrt(1 - rho ** 2) * e
    # SE of a sample correlation near rho is about (1 - rho^2) / sqrt(n).
    assert stats.carried_correlation(x, y) == pytest.approx(rho, abs=5 * (1 - rho ** 2) / math.sqrt(n))
    ref = np.corrcoef(x.ravel(), y.ravel())[0, 1]
    assert stats.carried_correlation(x, y) == pytest.approx(ref, abs=1e-12)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 5:50] = True
    ref = np.corrcoef(x[mask].ravel(), y[mask].ravel())[0, 1]
    assert stats.carried_correlation(x, y, mask=mask) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError):
        stats.carried_correlation(x, y[:-1])
