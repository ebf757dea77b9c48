"""Grid-based partition in 2-D: exact areas of warped pixel quads inside source cells.

NumPy reference for ``grid2d.cu`` (same arithmetic, same order).

Target pixel p is the quadrilateral through its four warped corners
``P0 = c[i, j], P1 = c[i, j+1], P2 = c[i+1, j+1], P3 = c[i+1, j]``. Its area inside
source cell ``[x0, x0+1] x [y0, y0+1]`` comes from Green's theorem,

    area = -sum over edges A->B of  integral over the edge of 1[x in [x0, x0+1]] G(y) dx,
    G(y) = clamp(y, y0, y0+1) - y0,

which is exact for any simple polygon, convex or concave, with no clipping loop. It is
split so that little is done per cell: per edge once (``edge_setup``); per edge and
source column, the edge's piece in the column, its signed width ``w`` and its y range
``[lo, hi]`` (``edge_columns``); per cell, the piece's term ``w`` times the mean of
``G`` over the piece, exact because the piece is straight: the part inside the row
gives its length times its mid-height, the part above the row its length
(``edge_row``, branch-free). Targets are walked columns outer, rows inner.

Fail-safe for folded quads (psi not injective), so that no area is negative or NaN:

1. a self-intersecting ("bow-tie") quad is replaced by its convex hull (reorder the
   corners so that the crossing edges become diagonals);
2. the orientation is normalised by the sign of the quad's total signed area, so a
   mirrored (orientation-reversing) but injective map is handled exactly;
3. any piece still negative (rounding, or a degenerate pinched quad) is clamped to 0.

A quad with a NaN corner, or marked invalid, has no pieces (its pixel gets fresh noise).
"""
import numpy as np

# Pairs (target, cell) processed at once on the CPU (one task of the thread pool):
# bounds memory for any map, and keeps the temporaries in cache.
CHUNK_PAIRS = 1 << 15
# Targets per band of rows for the quads and cell ranges (one task of the pool).
BAND_TARGETS = 1 << 16


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
    c = np.asarray(corners, dtype=np.float64)
    h, w = c.shape[0] - 1, c.shape[1] - 1
    quad = np.empty((4, 2, h * w), np.float64)
    for k, (di, dj) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0))):   # P0 .. P3
        for a in (0, 1):
            quad[k, a].reshape(h, w)[...] = c[di:di + h, dj:dj + w, a]
    P = [(quad[k, 0], quad[k, 1]) for k in range(4)]
    with np.errstate(invalid="ignore", over="ignore"):
        bow01 = _crosses(P[0], P[1], P[2], P[3])    # P0P1 crosses P2P3: hull P0 P2 P1 P3
        bow12 = _crosses(P[1], P[2], P[3], P[0]) & ~bow01   # hull P0 P1 P3 P2
    for mask, i, j in ((bow01, 1, 2), (bow12, 2, 3)):       # rare: swap two corners
        at = np.flatnonzero(mask)
        if at.size:
            qi = quad[i][:, at]
            quad[i][:, at] = quad[j][:, at]
            quad[j][:, at] = qi
    xs, ys = quad[:, 0], quad[:, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        twice_area = ((xs[0] * ys[1] - xs[1] * ys[0]) + (xs[1] * ys[2] - xs[2] * ys[1])
                      + (xs[2] * ys[3] - xs[3] * ys[2]) + (xs[3] * ys[0] - xs[0] * ys[3]))
    sign = np.where(twice_area < 0, -1.0, 1.0)
    return quad, sign


def edge_setup(xa, ya, xb, yb):
    """The per-edge part of ``edge_columns`` (``edge_setup`` in grid2d.cu), done once
    per edge: ``(xa, ya, dx, dy, dxs, xmin, xmax)``, ``dxs`` being ``dx`` with a
    vertical edge's 0 replaced by 1 (its pieces have width 0 anyway)."""
    dx = xb - xa
    return xa, ya, dx, yb - ya, dx + (dx == 0.0), np.fmin(xa, xb), np.fmax(xa, xb)


def edge_columns(edge, x0):
    """Per edge (``edge_setup``) and source column ``[x0, x0+1]`` (the per-column part,
    hoisted out of the per-cell loop, ``edge_column`` in grid2d.cu): the signed width
    ``w`` of the edge's piece in the column (the sign of ``xb - xa``; 0 when the edge
    misses the column or is vertical), the piece's low and high y, ``lo <= hi``,
    ``z = (hi == lo)`` and ``hz = hi - lo + z``. Branch-free: nothing here is NaN for
    finite corners."""
    xa, ya, dx, dy, dxs, xmin, xmax = edge
    xl = np.fmax(xmin, x0)
    xr = np.fmin(xmax, x0 + 1.0)
    # Edge parameters of the piece's ends, clamped to [0, 1]: no change where the edge
    # meets the column; elsewhere (w = 0) they keep lo and hi finite even for a
    # near-vertical edge whose |dx| is tiny (so that 0 * term is 0, not NaN).
    yl = ya + np.fmin(np.fmax((xl - xa) / dxs, 0.0), 1.0) * dy
    yr = ya + np.fmin(np.fmax((xr - xa) / dxs, 0.0), 1.0) * dy
    w = np.copysign(np.fmax(xr - xl, 0.0), dx)
    lo = np.fmin(yl, yr)
    hi = np.fmax(yl, yr)
    z = (hi == lo).astype(np.float64)
    return w, lo, hi, z, (hi - lo) + z


def edge_row(w, lo, hi, z, hz, y0, y1):
    """The edge piece's term for the cell of row ``[y0, y1 = y0+1]`` (``edge_row`` in
    grid2d.cu): ``w`` times the mean over the piece of ``clamp(y, y0, y1) - y0``, exact
    as the piece is straight: the part inside the row contributes its length times its
    mid-height, the part above the row its length; a flat piece (``z = 1``) its height."""
    a = np.fmin(np.fmax(lo, y0), y1)
    b = np.fmin(np.fmax(hi, y0), y1)
    num = (b - a) * (0.5 * (a + b) - y0) + np.fmax(hi - np.fmax(lo, y1), 0.0)
    return w * ((num + z * (a - y0)) / hz)


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


def _generic_pieces(quad, sign, bx0, by0, nx, ny, idx, ws):
    """Pieces of targets ``idx``, in the kernel's order: per target, columns outer and
    rows inner (each edge's piece in a column is found once, ``edge_columns``)."""
    ncol = nx[idx]
    tc = np.repeat(idx, ncol)                       # one entry per (target, column)
    if not tc.size:
        return None
    cx = bx0[tc] + (np.arange(tc.size) - np.repeat(np.cumsum(ncol) - ncol, ncol))
    qa = quad[:, :, tc]                             # (4 edges, x/y, columns): A of edge e
    qb = qa[[1, 2, 3, 0]]                           # B of edge e
    col = edge_columns(edge_setup(qa[:, 0], qa[:, 1], qb[:, 0], qb[:, 1]), cx.astype(np.float64))
    nrow = ny[tc]
    rows = int(nrow.max())
    if rows == 0:
        return None
    t = tc
    if rows * tc.size <= 2 * int(nrow.sum()):
        # Dense (column, row) block, one row offset at a time (no gathers); then
        # row-major, so per target columns outer and rows inner, as the kernel.
        cy0 = by0[tc]
        total = np.empty((rows, tc.size), np.float64)
        for r in range(rows):
            y0 = (cy0 + r).astype(np.float64)
            term = edge_row(*col, y0, y0 + 1.0)
            tr = total[r]
            np.add(0.0, term[0], out=tr)
            for e in range(1, 4):
                tr += term[e]
        total = total.T.ravel()
        inside = (np.arange(rows) < nrow[:, None]).ravel()
        ci = np.repeat(np.arange(tc.size), rows)
        cy = (cy0[:, None] + np.arange(rows)).ravel()
    else:
        ci = np.repeat(np.arange(tc.size), nrow)    # one entry per (target, column, row)
        cy = by0[tc][ci] + (np.arange(ci.size) - np.repeat(np.cumsum(nrow) - nrow, nrow))
        y0 = cy.astype(np.float64)
        term = edge_row(*(v[:, ci] for v in col), y0, y0 + 1.0)
        total = 0.0 + term[0]
        for e in range(1, 4):
            total += term[e]
        inside = True
    t = tc[ci]
    area = np.fmax(-total * sign[t], 0.0)            # fail-safe 3
    keep = (area > 0.0) & inside
    return t[keep], (cy * ws + cx[ci])[keep], area[keep]


def _chunk_pieces(quad, sign, bx0, by0, nx, ny, lo, hi, ws):
    """Pieces of targets ``lo`` to ``hi - 1``, sorted by target, each target's in the
    kernel's order. Targets whose cells span at most 2 x 2 (nearly all, under smooth
    motion) are done densely, one (column, row) offset at a time over all of them (no
    gathers); the others by ``_generic_pieces``."""
    n = hi - lo
    cnx, cny = nx[lo:hi], ny[lo:hi]
    small = (cnx <= 2) & (cny <= 2)
    q = quad[:, :, lo:hi]
    xa, ya = q[:, 0], q[:, 1]
    xb, yb = xa[[1, 2, 3, 0]], ya[[1, 2, 3, 0]]
    cx0, cy0, sg = bx0[lo:hi], by0[lo:hi], sign[lo:hi]
    area = np.empty((n, 4), np.float64)   # (column offset, row offset) = (k, r) at 2k + r
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # masked targets
        edge = edge_setup(xa, ya, xb, yb)
        x0 = cx0.astype(np.float64)
        y0 = cy0.astype(np.float64)
        rows = [(y0, y0 + 1.0), (y0 + 1.0, y0 + 2.0)]       # the same values as cy0 + r
        nsg = -sg
        for k in (0, 1):
            col = edge_columns(edge, x0 + k)
            for r in (0, 1):
                term = edge_row(*col, *rows[r])
                # (A -0.0 first term, where the kernel adds to +0.0, can only change
                # the sign of a zero total, and a zero area is dropped either way.)
                total = np.add(term[0], term[1])
                total += term[2]
                total += term[3]
                np.multiply(total, nsg, out=total)
                np.fmax(total, 0.0, out=area[:, 2 * k + r])        # fail-safe 3
    keep = area > 0.0
    for k in (0, 1):                      # offsets inside the target's cell range
        keep[:, 2 * k:2 * k + 2] &= (cnx > k)[:, None]
        keep[:, k::2] &= (cny > k)[:, None]
    keep &= small[:, None]
    flat = np.flatnonzero(keep)
    i = flat >> 2
    t = lo + i
    src = (cy0[i] + (flat & 1)) * ws + cx0[i] + ((flat >> 1) & 1)
    a = area.ravel()[flat]
    big = lo + np.flatnonzero(~small)
    if big.size:
        more = _generic_pieces(quad, sign, bx0, by0, nx, ny, big, ws)
        if more is not None:
            t = np.concatenate([t, more[0]])
            order = np.argsort(t, kind="stable")
            t = t[order]
            src = np.concatenate([src, more[1]])[order]
            a = np.concatenate([a, more[2]])[order]
    return t, src, a


def _quads_and_ranges(corners, ok, source_shape):
    """``quads`` and ``cell_ranges`` of all targets, worked out in bands of target rows
    on the thread pool (both are per target, so the bands give the same numbers)."""
    from . import rng

    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    rows = max(1, BAND_TARGETS // max(w, 1))
    bands = [(i, min(h, i + rows)) for i in range(0, h, rows)]
    if h * w < rng.PARALLEL_MIN or len(bands) < 2:
        quad, sign = quads(corners)
        return quad, sign, cell_ranges(quad, ok, source_shape)
    quad = np.empty((4, 2, h * w), np.float64)
    sign = np.empty(h * w, np.float64)
    ranges = tuple(np.empty(h * w, np.int64) for _ in range(4))

    def band(span):
        lo, hi = span[0] * w, span[1] * w
        q, sg = quads(corners[span[0]:span[1] + 1])
        quad[:, :, lo:hi], sign[lo:hi] = q, sg
        for whole, part in zip(ranges, cell_ranges(q, ok[lo:hi], source_shape)):
            whole[lo:hi] = part

    list(rng.pool().map(band, bands))
    return quad, sign, ranges


def grid2d_pieces(corners, source_shape, valid=None):
    """Partition record of the grid variant: ``(target, source, area)`` with area > 0,
    in the kernels' order (targets ascending; per target columns outer, rows inner).

    ``corners``: ``(H+1, W+1, 2)`` backward positions; ``valid``: optional ``(H, W)``
    bool mask of targets that may have a source (False: fresh noise).
    """
    from . import rng

    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    ok = np.ones(h * w, bool) if valid is None else np.asarray(valid, bool).ravel()
    quad, sign, (bx0, by0, nx, ny) = _quads_and_ranges(corners, ok, source_shape)
    ends = np.cumsum(nx * ny)
    chunks = []
    start = 0
    while start < h * w:
        # Largest run of targets whose pairs fit in one chunk (at least one target).
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + CHUNK_PAIRS, side="right")))
        stop = min(stop, h * w)
        chunks.append((start, stop))
        start = stop
    job = lambda span: _chunk_pieces(quad, sign, bx0, by0, nx, ny, *span, source_shape[1])
    if ends[-1] >= rng.PARALLEL_MIN and len(chunks) > 1:
        parts = list(rng.pool().map(job, chunks))
    else:
        parts = [job(idx) for idx in chunks]
    parts = [q for q in parts if q is not None]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return tuple(rng.concatenate(col) for col in zip(*parts))
