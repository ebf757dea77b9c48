"""Particle-based partition in 3-D: trilinear requests, normalised per source voxel.

NumPy reference for ``particle3d.cu``. Target voxel p is a particle at its backward
position (the warped voxel centre). It requests the trilinear weights of the eight
source voxels whose centres surround it; voxels outside the source grid are dropped.
The bridge then divides each request by the source's total request ``S_k``, so a
source voxel is never over-committed, whatever the map.
"""
import numpy as np


def particle3d_pieces(centers, source_shape, valid=None):
    """Raw requests ``(target, source, weight)`` with weight > 0 (before ``/ S_k``),
    flat indices ``(k*H + i)*W + j``; per target, the eight corners in the order
    q = dx + 2 dy + 4 dz (the kernel's order)."""
    ds, hs, ws = source_shape
    c = np.asarray(centers, np.float64).reshape(-1, 3)
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if valid is not None:
        ok &= np.asarray(valid, bool).ravel()
    # Clip before flooring so that far-away particles cannot overflow the int cast.
    fx = np.where(ok, np.clip(x, -2.0, ws + 2.0), -2.0) - 0.5
    fy = np.where(ok, np.clip(y, -2.0, hs + 2.0), -2.0) - 0.5
    fz = np.where(ok, np.clip(z, -2.0, ds + 2.0), -2.0) - 0.5
    j0, i0, k0 = np.floor(fx), np.floor(fy), np.floor(fz)
    tx, ty, tz = fx - j0, fy - i0, fz - k0
    j0, i0, k0 = j0.astype(np.int64), i0.astype(np.int64), k0.astype(np.int64)
    wx = (1 - tx, tx)
    wy = (1 - ty, ty)
    wz = (1 - tz, tz)
    n = c.shape[0]
    # (target, corner) pairs, target-major, so each target's requests come in corner order.
    t = np.repeat(np.arange(n), 8)
    w = np.empty((n, 8))
    ci = np.empty((n, 8), np.int64)
    keep = np.empty((n, 8), bool)
    for b in range(8):
        dx, dy, dz = b & 1, (b >> 1) & 1, b >> 2
        wb = (wx[dx] * wy[dy]) * wz[dz]
        kk, ii, jj = k0 + dz, i0 + dy, j0 + dx
        w[:, b] = wb
        ci[:, b] = (kk * hs + ii) * ws + jj
        keep[:, b] = (ok & (wb > 0) & (kk >= 0) & (kk < ds) & (ii >= 0) & (ii < hs)
                      & (jj >= 0) & (jj < ws))
    keep = keep.ravel()
    return t[keep], ci.ravel()[keep], w.ravel()[keep]
