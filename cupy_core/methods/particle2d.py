"""Particle-based partition in 2-D: bilinear requests, normalised per source cell.

NumPy reference for ``particle2d.cu``. Target pixel p is a particle at its backward
position (the warped pixel centre). It requests the bilinear weights of the four
source cells whose centres surround it; cells outside the source grid are dropped.
The bridge then divides each request by the source's total request ``S_k``, so a
source pixel is never over-committed, whatever the map.
"""
import numpy as np


# Targets per task of the thread pool.
CHUNK = 1 << 16


def _chunk(x, y, ok, lo, hs, ws):
    """Requests of targets ``lo, lo + 1, ...`` (``x, y, ok`` their slices)."""
    # Clip before flooring so that far-away particles cannot overflow the int cast.
    fx = np.where(ok, np.clip(x, -2.0, ws + 2.0), -2.0) - 0.5
    fy = np.where(ok, np.clip(y, -2.0, hs + 2.0), -2.0) - 0.5
    j0 = np.floor(fx)
    i0 = np.floor(fy)
    tx = fx - j0
    ty = fy - i0
    j0 = j0.astype(np.int64)
    i0 = i0.astype(np.int64)
    # (n, 4): the four requests of each target in the kernel's order, so that the
    # record comes out sorted by target (what bridge_numpy's blocks want).
    n = x.size
    wgt = np.empty((n, 4), np.float64)
    ux, uy = 1 - tx, 1 - ty
    np.multiply(ux, uy, out=wgt[:, 0]); np.multiply(tx, uy, out=wgt[:, 1])
    np.multiply(ux, ty, out=wgt[:, 2]); np.multiply(tx, ty, out=wgt[:, 3])
    inx0 = (j0 >= 0) & (j0 < ws); inx1 = (j0 >= -1) & (j0 < ws - 1)
    iny0 = (i0 >= 0) & (i0 < hs) & ok; iny1 = (i0 >= -1) & (i0 < hs - 1) & ok
    keep = wgt > 0
    keep[:, 0] &= iny0 & inx0; keep[:, 1] &= iny0 & inx1
    keep[:, 2] &= iny1 & inx0; keep[:, 3] &= iny1 & inx1
    base = i0 * ws + j0
    src = np.empty((n, 4), np.int64)
    src[:, 0] = base; src[:, 1] = base + 1; src[:, 2] = base + ws; src[:, 3] = base + ws + 1
    if keep.all():             # most chunks under smooth motion: nothing to drop
        return np.repeat(np.arange(lo, lo + n, dtype=np.int64), 4), src.ravel(), wgt.ravel()
    flat = np.flatnonzero(keep)
    return (flat >> 2) + lo, src.ravel()[flat], wgt.ravel()[flat]


def particle2d_pieces(centers, source_shape, valid=None):
    """Raw requests ``(target, source, weight)`` with weight > 0 (before ``/ S_k``),
    sorted by target (each target's in the kernel's order)."""
    from . import rng

    hs, ws = source_shape
    c = centers.reshape(-1, 2)
    x = c[:, 0].astype(np.float64)
    y = c[:, 1].astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        ok &= np.asarray(valid, bool).ravel()
    spans = [(lo, min(x.size, lo + CHUNK)) for lo in range(0, x.size, CHUNK)]
    job = lambda span: _chunk(x[span[0]:span[1]], y[span[0]:span[1]], ok[span[0]:span[1]],
                              span[0], hs, ws)
    if x.size >= rng.PARALLEL_MIN and len(spans) > 1:
        parts = list(rng.pool().map(job, spans))
    else:
        parts = [job(sp) for sp in spans]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return tuple(rng.concatenate(col) for col in zip(*parts))
