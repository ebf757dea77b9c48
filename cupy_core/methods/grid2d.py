"""Grid-based partition in 2-D: exact areas of warped pixel quads inside source cells.

NumPy reference for ``grid2d.cu`` (same arithmetic, same order).

Target pixel p is the quadrilateral through its four warped corners
``P0 = c[i, j], P1 = c[i, j+1], P2 = c[i+1, j+1], P3 = c[i+1, j]``. Its area inside
source cell ``[x0, x0+1] x [y0, y0+1]`` comes from Green's theorem,

    area = -sum over edges A->B of  integral over the edge of 1[x in [x0, x0+1]] G(y) dx,
    G(y) = clamp(y, y0, y0+1) - y0,

which is exact for any simple polygon, convex or concave, with no clipping loop: on
each edge the integrand is piecewise linear in the edge parameter, so the trapezoid
rule between its break points is exact.

Fail-safe for folded quads (psi not injective), so that no area is negative or NaN:

1. a self-intersecting ("bow-tie") quad is replaced by its convex hull (reorder the
   corners so that the crossing edges become diagonals);
2. the orientation is normalised by the sign of the quad's total signed area, so a
   mirrored (orientation-reversing) but injective map is handled exactly;
3. any piece still negative (rounding, or a degenerate pinched quad) is clamped to 0.

A quad with a NaN corner, or marked invalid, has no pieces (its pixel gets fresh noise).
"""
import numpy as np

# Pairs (target, cell) processed at once on the CPU: bounds memory for any map, and
# keeps the temporaries in cache (measured fastest around 2^13..2^16).
CHUNK_PAIRS = 1 << 16


def _orient(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _crosses(p, q, r, s):
    """Segments pq and rs cross properly (each separates the other's end points)."""
    d1 = _orient(*p, *q, *r)
    d2 = _orient(*p, *q, *s)
    d3 = _orient(*r, *s, *p)
    d4 = _orient(*r, *s, *q)
    return (d1 * d2 < 0) & (d3 * d4 < 0)


def quads(corners):
    """Corner quads ``(4, 2, N)`` of the target pixels, with the fail-safe reordering,
    and the orientation sign ``(N,)`` (+1 or -1)."""
    c = corners.astype(np.float64)
    P = [c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]]
    P = [(q[..., 0].ravel(), q[..., 1].ravel()) for q in P]
    bow01 = _crosses(P[0], P[1], P[2], P[3])      # P0P1 crosses P2P3: hull P0 P2 P1 P3
    bow12 = _crosses(P[1], P[2], P[3], P[0]) & ~bow01   # hull P0 P1 P3 P2
    x = [P[k][0] for k in range(4)]
    y = [P[k][1] for k in range(4)]
    x1 = np.where(bow01, x[2], x[1]); y1 = np.where(bow01, y[2], y[1])
    x2 = np.where(bow01, x[1], np.where(bow12, x[3], x[2]))
    y2 = np.where(bow01, y[1], np.where(bow12, y[3], y[2]))
    x3 = np.where(bow12, x[2], x[3]); y3 = np.where(bow12, y[2], y[3])
    xs = np.stack([x[0], x1, x2, x3]); ys = np.stack([y[0], y1, y2, y3])
    twice_area = ((xs[0] * ys[1] - xs[1] * ys[0]) + (xs[1] * ys[2] - xs[2] * ys[1])
                  + (xs[2] * ys[3] - xs[3] * ys[2]) + (xs[3] * ys[0] - xs[0] * ys[3]))
    sign = np.where(twice_area < 0, -1.0, 1.0)
    return np.stack([xs, ys], axis=1), sign


def edge_term(xa, ya, xb, yb, x0, y0):
    """Integral over edge A->B of 1[x in [x0, x0+1]] * (clamp(y, y0, y0+1) - y0) dx."""
    dx = xb - xa
    dy = yb - ya
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = (x0 - xa) / dx
        tb = (x0 + 1.0 - xa) / dx
        lo = np.clip(np.minimum(ta, tb), 0.0, 1.0)
        hi = np.clip(np.maximum(ta, tb), 0.0, 1.0)
        ua = (y0 - ya) / dy
        ub = (y0 + 1.0 - ya) / dy
    flat = dy == 0.0
    ua = np.where(flat, lo, np.clip(ua, lo, hi))
    ub = np.where(flat, lo, np.clip(ub, lo, hi))
    m1 = np.minimum(ua, ub)
    m2 = np.maximum(ua, ub)
    g = lambda t: np.clip(ya + t * dy, y0, y0 + 1.0) - y0
    glo, g1, g2, ghi = g(lo), g(m1), g(m2), g(hi)
    integral = 0.5 * ((m1 - lo) * (glo + g1) + (m2 - m1) * (g1 + g2) + (hi - m2) * (g2 + ghi))
    return np.where((dx != 0.0) & (hi > lo), dx * integral, 0.0)


def cell_area(quad, sign, x0, y0):
    """Area of the (reordered) quad ``(4, 2, N)`` inside cells with corner ``(x0, y0)``."""
    total = 0.0
    for e in range(4):
        a, b = quad[e], quad[(e + 1) % 4]
        total = total + edge_term(a[0], a[1], b[0], b[1], x0, y0)
    return np.maximum(-total * sign, 0.0)


def cell_ranges(quad, valid, source_shape):
    """Per target, the source cells of its bounding box clipped to the source grid:
    first column, first row, number of columns, number of rows (0 when invalid)."""
    hs, ws = source_shape
    xs, ys = quad[:, 0], quad[:, 1]
    with np.errstate(invalid="ignore"):
        # Clip before converting to int so that huge coordinates cannot overflow.
        bx0 = np.floor(np.clip(xs.min(0), -1.0, ws + 1.0))
        bx1 = np.ceil(np.clip(xs.max(0), -1.0, ws + 1.0))
        by0 = np.floor(np.clip(ys.min(0), -1.0, hs + 1.0))
        by1 = np.ceil(np.clip(ys.max(0), -1.0, hs + 1.0))
    ok = valid & np.isfinite(xs).all(0) & np.isfinite(ys).all(0)
    bx0 = np.where(ok, np.maximum(bx0, 0), 0).astype(np.int64)
    by0 = np.where(ok, np.maximum(by0, 0), 0).astype(np.int64)
    nx = np.where(ok, np.minimum(bx1, ws) - bx0, 0).astype(np.int64).clip(0)
    ny = np.where(ok, np.minimum(by1, hs) - by0, 0).astype(np.int64).clip(0)
    return bx0, by0, nx, ny


def grid2d_pieces(corners, source_shape, valid=None):
    """Partition record of the grid variant: ``(target, source, area)`` with area > 0.

    ``corners``: ``(H+1, W+1, 2)`` backward positions; ``valid``: optional ``(H, W)``
    bool mask of targets that may have a source (False: fresh noise).
    """
    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    quad, sign = quads(corners)
    ok = np.ones(h * w, bool) if valid is None else np.asarray(valid, bool).ravel()
    bx0, by0, nx, ny = cell_ranges(quad, ok, source_shape)
    counts = nx * ny
    out_t, out_s, out_a = [], [], []
    ws = source_shape[1]
    ends = np.cumsum(counts)
    start = 0
    while start < h * w:
        # Largest run of targets whose pairs fit in one chunk (at least one target).
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + CHUNK_PAIRS, side="right")))
        stop = min(stop, h * w)
        idx = np.arange(start, stop)
        cnt = counts[idx]
        t = np.repeat(idx, cnt)
        if t.size:
            local = np.arange(t.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            cx = bx0[t] + local % nx[t]
            cy = by0[t] + local // nx[t]
            area = cell_area(quad[:, :, t], sign[t], cx.astype(np.float64), cy.astype(np.float64))
            keep = area > 0.0
            out_t.append(t[keep]); out_s.append((cy * ws + cx)[keep]); out_a.append(area[keep])
        start = stop
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_a)
