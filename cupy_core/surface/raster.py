"""A NumPy z-buffer rasteriser at arbitrary sample points (pixel corners, or any
image points), with perspective-correct barycentric coordinates. No Blender import.

``rasterize(xy, w, z, faces, points)`` finds, for every sample point, the nearest
triangle covering it (smallest NDC depth ``z``, which is affine in image space for
perspective and orthographic cameras alike) and the point's barycentric coordinates
*on the 3-D triangle* (screen barycentrics l_i corrected by the clip w:
``b_i = (l_i / w_i) / sum_j (l_j / w_j)``), so that interpolating any vertex
attribute with ``b`` gives its value at the surface point seen there, as a ray tracer
(Cycles) would.

Rules: triangles are two-sided (no back-face culling); a triangle with a vertex at or
behind the camera plane (``w <= 0``), a degenerate (zero image area) triangle, and
samples outside the clip range ``-1 <= z <= 1`` are skipped. A sample on an edge
shared by two triangles is covered (a tolerance of 1e-9 of the barycentrics); ties in
depth go to the lower triangle index, so the result is deterministic.
"""
import numpy as np

from ..conventions import pixel_corners

__all__ = ["rasterize", "corner_points", "interpolate"]

EDGE_EPS = 1e-9
CHUNK = 1 << 18          # (triangle, sample) pairs processed at once


def corner_points(shape):
    """Pixel corners ``(H+1, W+1, 2)`` ``(x, y)`` of an ``(H, W)`` image."""
    return pixel_corners(tuple(int(n) for n in shape))


def _bins(points):
    """Sort the finite points into unit cells: ``(order, starts, x0, y0, nx, ny)``."""
    ok = np.isfinite(points).all(axis=1)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return None
    p = points[idx]
    x0, y0 = np.floor(p.min(axis=0))
    cx = np.floor(p[:, 0] - x0).astype(np.int64)
    cy = np.floor(p[:, 1] - y0).astype(np.int64)
    nx, ny = int(cx.max()) + 1, int(cy.max()) + 1
    cell = cy * nx + cx
    order = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[order], np.arange(nx * ny + 1))
    return idx[order], starts, x0, y0, nx, ny


def rasterize(xy, w, z, faces, points):
    """``(face (N,) int64, -1 where none; bary (N, 3); depth (N,))`` for sample
    ``points (N, 2)``, given the vertices' image positions ``xy (V, 2)``, clip ``w (V,)``
    and NDC depth ``z (V,)``, and triangles ``faces (T, 3)``."""
    xy = np.asarray(xy, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = points.shape[0]
    best_face = np.full(n, -1, dtype=np.int64)
    best_bary = np.zeros((n, 3))
    best_depth = np.full(n, np.inf)
    bins = _bins(points)
    if bins is None or faces.shape[0] == 0:
        return best_face, best_bary, best_depth
    order, starts, x0, y0, nx, ny = bins

    A, B, C = (xy[faces[:, k]] for k in range(3))
    area = (B[:, 0] - A[:, 0]) * (C[:, 1] - A[:, 1]) - (B[:, 1] - A[:, 1]) * (C[:, 0] - A[:, 0])
    good = (w[faces] > 0).all(axis=1) & np.isfinite(area) & (np.abs(area) > 1e-300)
    good &= np.isfinite(xy[faces]).all(axis=(1, 2))
    tri = np.nonzero(good)[0]
    if tri.size == 0:
        return best_face, best_bary, best_depth
    V = xy[faces[tri]]                       # (T, 3, 2)
    lo = np.floor(V.min(axis=1) - np.array([x0, y0]) - EDGE_EPS).astype(np.int64)
    hi = np.floor(V.max(axis=1) - np.array([x0, y0]) + EDGE_EPS).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [nx - 1, ny - 1])
    keep = (lo <= hi).all(axis=1)
    tri, lo, hi = tri[keep], lo[keep], hi[keep]
    # (triangle, cell row) pairs, then (triangle, sample) pairs from each row's run of
    # cells, whose samples are contiguous in the sorted order.
    rows = hi[:, 1] - lo[:, 1] + 1
    t_of_row = np.repeat(np.arange(tri.size), rows)
    r = lo[t_of_row, 1] + (np.arange(t_of_row.size) - np.repeat(np.cumsum(rows) - rows, rows))
    s0 = starts[r * nx + lo[t_of_row, 0]]
    s1 = starts[r * nx + hi[t_of_row, 0] + 1]
    counts = s1 - s0
    nz = counts > 0
    t_of_row, s0, counts = t_of_row[nz], s0[nz], counts[nz]
    total = int(counts.sum())
    offs = np.cumsum(counts) - counts
    for lo_pair in range(0, total, CHUNK):
        hi_pair = min(total, lo_pair + CHUNK)
        k = np.arange(lo_pair, hi_pair)
        row = np.searchsorted(offs, k, side="right") - 1
        t = tri[t_of_row[row]]
        s = order[s0[row] + (k - offs[row])]
        f = faces[t]
        a, b, c = xy[f[:, 0]], xy[f[:, 1]], xy[f[:, 2]]
        p = points[s]
        d = area[t]
        l0 = ((b[:, 0] - p[:, 0]) * (c[:, 1] - p[:, 1]) - (b[:, 1] - p[:, 1]) * (c[:, 0] - p[:, 0])) / d
        l1 = ((c[:, 0] - p[:, 0]) * (a[:, 1] - p[:, 1]) - (c[:, 1] - p[:, 1]) * (a[:, 0] - p[:, 0])) / d
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -EDGE_EPS) & (l1 >= -EDGE_EPS) & (l2 >= -EDGE_EPS)
        depth = l0 * z[f[:, 0]] + l1 * z[f[:, 1]] + l2 * z[f[:, 2]]
        inside &= (depth >= -1.0) & (depth <= 1.0)
        if not inside.any():
            continue
        t, s, depth, f = t[inside], s[inside], depth[inside], f[inside]
        L = np.stack([l0[inside], l1[inside], l2[inside]], axis=-1).clip(0.0, None)
        L /= L.sum(axis=1, keepdims=True)
        # nearest per sample within the chunk, then against the best so far
        o = np.lexsort((t, depth, s))
        s_sorted = s[o]
        first = np.ones(o.size, bool)
        first[1:] = s_sorted[1:] != s_sorted[:-1]
        o = o[first]
        s, t, depth, L, f = s[o], t[o], depth[o], L[o], f[o]
        better = (depth < best_depth[s]) | ((depth == best_depth[s]) & (t < best_face[s]))
        s, t, depth, L, f = s[better], t[better], depth[better], L[better], f[better]
        q = L / w[f]
        best_face[s] = t
        best_bary[s] = q / q.sum(axis=1, keepdims=True)
        best_depth[s] = depth
    return best_face, best_bary, best_depth


def interpolate(values, faces, face, bary):
    """Per-vertex ``values (V, K)`` at the samples (NaN where ``face < 0``)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full((face.shape[0],) + values.shape[1:], np.nan)
    hit = face >= 0
    f = np.asarray(faces)[face[hit]]
    b = bary[hit]
    out[hit] = sum(b[:, k, None] * values[f[:, k]] for k in range(3))
    return out
