"""Particle-based partition in 2-D: bilinear requests, normalised per source cell.

NumPy reference for ``particle2d.cu``. Target pixel p is a particle at its backward
position (the warped pixel centre). It requests the bilinear weights of the four
source cells whose centres surround it; cells outside the source grid are dropped.
The bridge then divides each request by the source's total request ``S_k``, so a
source pixel is never over-committed, whatever the map.
"""
import numpy as np


def particle2d_pieces(centers, source_shape, valid=None):
    """Raw requests ``(target, source, weight)`` with weight > 0 (before ``/ S_k``)."""
    hs, ws = source_shape
    c = centers.astype(np.float64).reshape(-1, 2)
    x, y = c[:, 0], c[:, 1]
    ok = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        ok &= np.asarray(valid, bool).ravel()
    # Clip before flooring so that far-away particles cannot overflow the int cast.
    fx = np.where(ok, np.clip(x, -2.0, ws + 2.0), -2.0) - 0.5
    fy = np.where(ok, np.clip(y, -2.0, hs + 2.0), -2.0) - 0.5
    j0 = np.floor(fx)
    i0 = np.floor(fy)
    tx = fx - j0
    ty = fy - i0
    j0 = j0.astype(np.int64)
    i0 = i0.astype(np.int64)
    t = np.arange(c.shape[0])
    out_t, out_s, out_w = [], [], []
    for di, dj, wgt in ((0, 0, (1 - tx) * (1 - ty)), (0, 1, tx * (1 - ty)),
                        (1, 0, (1 - tx) * ty), (1, 1, tx * ty)):
        ci, cj = i0 + di, j0 + dj
        keep = ok & (wgt > 0) & (ci >= 0) & (ci < hs) & (cj >= 0) & (cj < ws)
        out_t.append(t[keep]); out_s.append((ci * ws + cj)[keep]); out_w.append(wgt[keep])
    return np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_w)
