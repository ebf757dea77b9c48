"""Whiteness measures for noise fields (NumPy only).

Shared by the tests, the benchmarks and the demo. A noise field is an array
``(H, W, C)`` or ``(D, H, W, C)``; the C channels are treated as independent
samples of the same field, so every statistic pools (or averages) over them.

Every statistic comes with its standard error under the null hypothesis
"i.i.d. N(0, 1)", derived from the sample size alone, so that a check can say
"within k standard errors" instead of using a hand-tuned tolerance:

==================  ==========================  ===============================
statistic           null value                  standard error
==================  ==========================  ===============================
mean                0                           1 / sqrt(n)
variance (ddof=1)   1                           sqrt(2 / (n - 1))
lag correlation     0 (about -1/n_pairs)        1 / sqrt(n_pairs)
Moran's I (rook)    -1 / (N - 1)                closed form (see `morans_i`)
KS statistic D      --                          p-value from Kolmogorov's law
==================  ==========================  ===============================

Only NumPy is imported (works with NumPy 1.26 and 2.x); the normal CDF is
W. J. Cody's rational Chebyshev approximation of erfc (relative error ~1e-16).
"""
from collections import namedtuple
import math

import numpy as np

__all__ = [
    "normal_cdf", "ks_statistic", "kolmogorov_sf", "lag_correlation",
    "morans_i", "MoransI", "default_lags", "whiteness_report", "check_white",
    "carried_correlation",
]

# --------------------------------------------------------------------------
# Normal CDF via Cody's erfc (netlib specfun CALERF, 1969/1993).

_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1


def _exp_minus_square(y):
    """exp(-y*y) without the cancellation error of squaring a large y."""
    ysq = np.trunc(y * 16.0) / 16.0
    delta = (y - ysq) * (y + ysq)
    return np.exp(-ysq * ysq) * np.exp(-delta)


def _erfc(x):
    """Complementary error function, elementwise, float64 (Cody's three regions)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    out = np.empty_like(y)

    small = y <= 0.46875
    mid = (y > 0.46875) & (y <= 4.0)
    big = y > 4.0  # NaN falls in no region and is handled below

    if small.any():
        xs = x[small]
        ysq = xs * xs
        num, den = _A[4] * ysq, ysq
        for i in range(3):
            num = (num + _A[i]) * ysq
            den = (den + _B[i]) * ysq
        out[small] = 1.0 - xs * (num + _A[3]) / (den + _B[3])

    if mid.any():
        ym = y[mid]
        num, den = _C[8] * ym, ym
        for i in range(7):
            num = (num + _C[i]) * ym
            den = (den + _D[i]) * ym
        r = (num + _C[7]) / (den + _D[7]) * _exp_minus_square(ym)
        out[mid] = np.where(x[mid] < 0, 2.0 - r, r)

    if big.any():
        yb = y[big]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            isq = 1.0 / (yb * yb)
            num, den = _P[5] * isq, isq
            for i in range(4):
                num = (num + _P[i]) * isq
                den = (den + _Q[i]) * isq
            r = isq * (num + _P[4]) / (den + _Q[4])
            r = (_INV_SQRT_PI - r) / yb * _exp_minus_square(yb)
        r = np.where(np.isfinite(r), r, 0.0)  # erfc(+inf) = 0 exactly
        out[big] = np.where(x[big] < 0, 2.0 - r, r)

    nan = np.isnan(y)
    if nan.any():
        out[nan] = np.nan
    return out


def normal_cdf(x):
    """Standard normal CDF Phi(x), elementwise, float64.

    Phi(x) = erfc(-x / sqrt(2)) / 2 with Cody's erfc: absolute error below 1e-15
    everywhere and relative error ~1e-15 in the lower tail (down to the
    underflow of float64 near x = -38). Returns a float for scalar input.
    """
    x = np.asarray(x, dtype=np.float64)
    out = 0.5 * _erfc(-x * (1.0 / math.sqrt(2.0)))
    return out[()] if out.ndim == 0 else out


# --------------------------------------------------------------------------
# Kolmogorov-Smirnov against N(0, 1)


def kolmogorov_sf(lam):
    """Survival function of Kolmogorov's limiting distribution, Q(lam) = P(K > lam).

    Q(lam) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lam^2); for small lam, where that
    series converges slowly, the Jacobi-theta form
    1 - sqrt(2 pi)/lam sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 lam^2)) is used instead.
    """
    lam = float(lam)
    if not lam > 0.0:
        return 1.0
    if lam < 1.0:
        s = sum(math.exp(-((2 * j - 1) ** 2) * math.pi ** 2 / (8.0 * lam * lam))
                for j in range(1, 8))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / lam * s))
    s = sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return min(1.0, max(0.0, 2.0 * s))


def ks_statistic(samples):
    """Kolmogorov-Smirnov test of ``samples`` (any shape, flattened) against N(0, 1).

    Returns ``(D, p_value)``: D = sup |F_n - Phi|, and p from Kolmogorov's
    asymptotic law with Stephens' small-n correction,
    ``p = Q((sqrt(n) + 0.12 + 0.11 / sqrt(n)) * D)``, accurate to a few percent of
    p for n >= ~100 (the tests compare it with scipy's exact distribution).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        raise ValueError("ks_statistic needs at least one sample")
    cdf = normal_cdf(x)
    i = np.arange(1, n + 1, dtype=np.float64)
    d_plus = np.max(i / n - cdf)
    d_minus = np.max(cdf - (i - 1) / n)
    d = float(max(d_plus, d_minus))
    sn = math.sqrt(n)
    return d, kolmogorov_sf((sn + 0.12 + 0.11 / sn) * d)


# --------------------------------------------------------------------------
# Spatial correlation


def _as_field(noise):
    """Return (float64 array (..spatial.., C), number of spatial dims)."""
    a = np.asarray(noise, dtype=np.float64)
    if a.ndim not in (3, 4):
        raise ValueError(f"noise must be (H, W, C) or (D, H, W, C), got shape {a.shape}")
    return a, a.ndim - 1


def _shifted_pair(a, lag):
    """Views a[p] and a[p + lag] over all p where both are inside the array."""
    lead, trail = [], []
    for d, size in zip(lag, a.shape):
        d = int(d)
        if abs(d) >= size:
            return None, None
        lead.append(slice(max(0, -d), size - max(0, d)))
        trail.append(slice(max(0, d), size - max(0, -d)))
    return a[tuple(lead)], a[tuple(trail)]


def _lag_pairs(noise, lag):
    a, nd = _as_field(noise)
    lag = tuple(int(v) for v in lag)
    if len(lag) != nd:
        raise ValueError(f"lag {lag} must have {nd} components for a {nd}-D field")
    return _shifted_pair(a, lag)


def lag_correlation(noise, lag):
    """Pearson correlation of x[p] and x[p + lag] over all valid pairs and channels.

    ``lag`` is ``(dy, dx)`` for ``(H, W, C)`` or ``(dz, dy, dx)`` for
    ``(D, H, W, C)``; components may be negative, e.g. ``(1, -1)`` pairs each
    pixel with its lower-left neighbour. Pairs from all channels are pooled
    (channels are samples of the same field). Under the white-noise null the
    estimate has mean ~0 and standard error 1/sqrt(n_pairs) (the products
    x[p] x[p+lag] are pairwise uncorrelated for lag != 0); n_pairs is
    ``lag_pair_count(noise.shape, lag)``.
    """
    u, v = _lag_pairs(noise, lag)
    if u is None or u.size < 2:
        raise ValueError(f"lag {tuple(lag)} leaves fewer than 2 pairs")
    u = u.ravel() - u.mean()
    v = v.ravel() - v.mean()
    den = math.sqrt(float(np.dot(u, u)) * float(np.dot(v, v)))
    return float(np.dot(u, v) / den) if den > 0 else float("nan")


def lag_pair_count(shape, lag):
    """Number of (pixel, channel) pairs that `lag_correlation` uses."""
    n = int(shape[-1])
    for d, size in zip(lag, shape[:-1]):
        n *= max(0, int(size) - abs(int(d)))
    return n


def _channel_dot(u, v):
    """sum over cells of u * v, per channel (last axis)."""
    c = u.shape[-1]
    return np.einsum("ic,ic->c", u.reshape(-1, c), v.reshape(-1, c))


MoransI = namedtuple("MoransI", ["I", "expected", "se"])
MoransI.__doc__ = """Moran's I averaged over channels, its null expectation and standard error."""
MoransI.z = property(lambda self: (self.I - self.expected) / self.se)


def morans_i(noise, assumption="normality"):
    """Moran's I with rook binary weights, averaged over channels.

    Weights: w_ij = 1 for face neighbours (4 in 2-D, 6 in 3-D), else 0, no
    wrap-around. Per channel c, with z = x - mean(x) over the N cells,

        I_c = (N / S0) * sum_ij w_ij z_i z_j / sum_i z_i^2,   S0 = sum_ij w_ij.

    Returns ``MoransI(I, expected, se)`` with ``I = mean_c I_c``,
    ``expected = -1/(N-1)`` and ``se`` the standard error of the channel mean
    (per-channel standard error / sqrt(C), channels being independent), using
    the classical (Cliff and Ord) variance:

    * ``assumption="normality"``:
      Var = (N^2 S1 - N S2 + 3 S0^2) / ((N^2 - 1) S0^2) - E^2;
    * ``assumption="randomisation"``: the permutation variance with the
      sample kurtosis b2 = N sum z^4 / (sum z^2)^2 of each channel,

    where S1 = 1/2 sum_ij (w_ij + w_ji)^2 = 2 S0 and
    S2 = sum_i (w_i. + w_.i)^2 = 4 sum_i deg_i^2 for symmetric binary weights.
    ``.z`` gives (I - expected) / se.
    """
    if assumption not in ("normality", "randomisation", "randomization"):
        raise ValueError(f"assumption must be 'normality' or 'randomisation', got {assumption!r}")
    a, nd = _as_field(noise)
    spatial = a.shape[:nd]
    n = int(np.prod(spatial))
    c = a.shape[-1]
    if n < 4:
        raise ValueError(f"Moran's I needs at least 4 cells, got {n}")

    z = a - a.mean(axis=tuple(range(nd)))
    m2 = _channel_dot(z, z)               # sum z^2 per channel
    cross = np.zeros(c)                   # sum over ordered neighbour pairs, per channel
    deg = np.zeros(spatial)
    for ax in range(nd):
        lag = [0] * nd
        lag[ax] = 1
        u, v = _shifted_pair(z, lag)
        if u is None:
            continue
        cross += 2.0 * _channel_dot(u, v)
        lo = [slice(None)] * nd
        hi = [slice(None)] * nd
        lo[ax] = slice(0, spatial[ax] - 1)
        hi[ax] = slice(1, None)
        deg[tuple(lo)] += 1
        deg[tuple(hi)] += 1
    s0 = float(deg.sum())
    if s0 == 0:
        raise ValueError("Moran's I needs at least one pair of neighbours")
    with np.errstate(invalid="ignore", divide="ignore"):
        i_c = (n / s0) * cross / m2
    s1 = 2.0 * s0
    s2 = 4.0 * float(np.sum(deg * deg))
    e = -1.0 / (n - 1)
    nn = float(n)
    if assumption == "normality":
        var = (nn * nn * s1 - nn * s2 + 3.0 * s0 * s0) / ((nn * nn - 1.0) * s0 * s0) - e * e
        var_c = np.full(c, var)
    else:
        b2 = nn * _channel_dot(z * z, z * z) / (m2 * m2)
        num = (nn * ((nn * nn - 3.0 * nn + 3.0) * s1 - nn * s2 + 3.0 * s0 * s0)
               - b2 * ((nn * nn - nn) * s1 - 2.0 * nn * s2 + 6.0 * s0 * s0))
        var_c = num / ((nn - 1.0) * (nn - 2.0) * (nn - 3.0) * s0 * s0) - e * e
    se = math.sqrt(float(np.sum(var_c))) / c
    return MoransI(float(np.mean(i_c)), e, se)


# --------------------------------------------------------------------------
# Report and check


def default_lags(ndim):
    """Lags reported for a field with ``ndim`` spatial dims.

    2-D: (1,0), (0,1), (1,1), (1,-1). 3-D: the three axes and the main diagonal.
    """
    if ndim == 2:
        return [(1, 0), (0, 1), (1, 1), (1, -1)]
    if ndim == 3:
        return [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    raise ValueError(f"fields are 2-D or 3-D, got {ndim} spatial dims")


def _lag_key(lag):
    return ",".join(str(int(v)) for v in lag)


def whiteness_report(noise, lags=None):
    """Whiteness statistics of a noise field, each with its null standard error.

    Returns a JSON-friendly dict:

    * ``shape``, ``n`` (all values, channels included), ``channels``,
      ``finite`` (all values finite);
    * ``mean``, ``mean_se = 1/sqrt(n)``;
    * ``var`` (ddof=1), ``var_se = sqrt(2/(n-1))`` (the normal-theory SE of s^2);
    * ``ks_D``, ``ks_p`` (`ks_statistic`), ``ks_D_se = 1/sqrt(n)`` (the scale of
      D under the null: sqrt(n) D converges to Kolmogorov's law, mean ~0.87);
    * ``morans_I``, ``morans_I_expected``, ``morans_I_se`` (`morans_i`, normality);
    * ``lag_corr`` {"dy,dx": r}, ``lag_pairs`` {"dy,dx": n_pairs},
      ``lag_corr_se`` {"dy,dx": 1/sqrt(n_pairs)} for `default_lags` or ``lags``.
    """
    a, nd = _as_field(noise)
    n = a.size
    if n < 2:
        raise ValueError("whiteness_report needs at least 2 values")
    lags = default_lags(nd) if lags is None else [tuple(int(v) for v in l) for l in lags]
    finite = bool(np.isfinite(a).all())
    ks_d, ks_p = ks_statistic(a)
    mi = morans_i(a)
    rep = {
        "shape": list(a.shape), "n": int(n), "channels": int(a.shape[-1]),
        "finite": finite,
        "mean": float(a.mean()), "mean_se": 1.0 / math.sqrt(n),
        "var": float(a.var(ddof=1)), "var_se": math.sqrt(2.0 / (n - 1)),
        "ks_D": ks_d, "ks_p": ks_p, "ks_D_se": 1.0 / math.sqrt(n),
        "morans_I": mi.I, "morans_I_expected": mi.expected, "morans_I_se": mi.se,
        "lag_corr": {}, "lag_pairs": {}, "lag_corr_se": {},
    }
    for lag in lags:
        k = _lag_key(lag)
        m = lag_pair_count(a.shape, lag)
        rep["lag_pairs"][k] = m
        if m >= 2:
            rep["lag_corr"][k] = lag_correlation(a, lag)
            rep["lag_corr_se"][k] = 1.0 / math.sqrt(m)
        else:
            rep["lag_corr"][k] = float("nan")
            rep["lag_corr_se"][k] = float("inf")
    return rep


def check_white(noise, n_sigma=5.0, *, spatial=True, ks_p_min=1e-4, lags=None):
    """Is ``noise`` consistent with i.i.d. N(0, 1)? Returns ``(ok, reasons)``.

    Every tolerance is k = ``n_sigma`` standard errors of the statistic under the
    null, from the sample size (n values, channels included):

    * all values finite;
    * ``|mean| <= k / sqrt(n)``;
    * ``|var - 1| <= k * sqrt(2 / (n - 1))`` (var with ddof=1);
    * KS p-value against N(0, 1) ``>= ks_p_min`` (1e-4 by default);
    * if ``spatial``: for each lag, ``|corr| <= k / sqrt(n_pairs)``, and Moran's I
      within k standard errors (normality) of ``-1/(N-1)``.

    ``spatial=False`` checks only the marginal distribution (finite, mean,
    variance, KS). ``reasons`` lists, in words with the numbers, each check that
    failed; it is empty when ``ok``. With k = 5 a truly white field fails a given
    Gaussian check with probability ~6e-7.
    """
    a, nd = _as_field(noise)
    k = float(n_sigma)
    reasons = []
    if not np.isfinite(a).all():
        return False, [f"{int(np.size(a) - np.isfinite(a).sum())} non-finite values"]
    rep = whiteness_report(a, lags=lags)
    tol = k * rep["mean_se"]
    if abs(rep["mean"]) > tol:
        reasons.append(f"mean {rep['mean']:.5g} outside +-{tol:.3g} ({k:g} SE, n={rep['n']})")
    tol = k * rep["var_se"]
    if abs(rep["var"] - 1.0) > tol:
        reasons.append(f"variance {rep['var']:.5g} outside 1+-{tol:.3g} ({k:g} SE, n={rep['n']})")
    if not rep["ks_p"] >= ks_p_min:
        reasons.append(f"KS D={rep['ks_D']:.4g}, p={rep['ks_p']:.3g} < {ks_p_min:g}")
    if spatial:
        for key, r in rep["lag_corr"].items():
            se = rep["lag_corr_se"][key]
            if not abs(r) <= k * se:
                reasons.append(f"lag ({key}) correlation {r:.4g} outside +-{k * se:.3g} "
                               f"({k:g} SE, {rep['lag_pairs'][key]} pairs)")
        dev = rep["morans_I"] - rep["morans_I_expected"]
        if not abs(dev) <= k * rep["morans_I_se"]:
            reasons.append(f"Moran's I {rep['morans_I']:.4g} outside "
                           f"{rep['morans_I_expected']:.3g}+-{k * rep['morans_I_se']:.3g} ({k:g} SE)")
    return not reasons, reasons


def carried_correlation(prev, new, mask=None):
    """Pearson correlation between two frames, pooled over pixels and channels.

    ``prev`` and ``new`` have the same shape; pair (p, c) of one with (p, c) of
    the other. To measure temporal coherence, pass ``prev`` already sampled
    along the motion (e.g. ``prev[round(psi(centre_p))]``): ~1 means the noise
    moved with the content, ~0 (SE 1/sqrt(n)) means it was redrawn. ``mask``
    (boolean, spatial shape or full shape) selects the pixels that count.
    """
    p = np.asarray(prev, dtype=np.float64)
    q = np.asarray(new, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"frames differ in shape: {p.shape} vs {q.shape}")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape:
            m = np.broadcast_to(m.reshape(m.shape + (1,) * (p.ndim - m.ndim)), p.shape)
        p, q = p[m], q[m]
    p = p.ravel() - p.mean()
    q = q.ravel() - q.mean()
    den = math.sqrt(float(np.dot(p, p)) * float(np.dot(q, q)))
    return float(np.dot(p, q) / den) if den > 0 else float("nan")
