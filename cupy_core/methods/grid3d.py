"""Grid-based partition in 3-D: exact volumes of warped voxels inside source voxels.

NumPy reference for ``grid3d.cu``: the same formulas in the same order (the kernel is
compiled with ``--fmad=false``), so both give the same volumes to the last bit.

Geometry
--------
Voxel ``(k, i, j)`` is ``x in [j, j+1], y in [i, i+1], z in [k, k+1]``, flat index
``(k*H + i)*W + j``; its corner ``b = dx + 2 dy + 4 dz`` (dx, dy, dz in {0, 1}) is
warped to ``c[k+dz, i+dy, j+dx]``. The target voxel is the hexahedron through its 8
warped corners, split into the six tetrahedra of the Kuhn (Freudenthal)
triangulation: for each permutation (a, b, c) of the axes, the tetrahedron
``v0, v0+e_a, v0+e_a+e_b, v7`` (``TETS``). The split is the same for every voxel, so
neighbours cut a shared face along the same diagonal and the tetrahedra tile space
with no gap or overlap. The 24 tetrahedron faces are 18 distinct triangles
(``TRIS``): 12 on the hexahedron's boundary (2 per face, each shared with the
neighbouring voxel) and 6 inside it.

Exact volume from faces only
----------------------------
For a closed, outward-oriented surface, the divergence theorem with the field
``(0, 0, -(c - z)_+)`` restricted to the column ``[X, X+1] x [Y, Y+1]`` gives

    Vol(inside the column, z <= c) = -sum over faces f of M_f(c),
    M_f(c) = integral over f inside the column of (c - z)_+ n_z dS,

so the volume inside voxel (X, Y, k) is ``sum_f Phi_f``, ``Phi_f = M_f(k) - M_f(k+1)``.
Only the solid's own faces appear, never the voxel's, so nothing is counted twice
when a face lies on a voxel face (the identity, every integer translation): such a
face is vertical (no projected area, exactly 0) or horizontal (``c - z = 0`` on it).

One triangle's ``Phi`` (``triangle_pieces`` here, ``tri_phi`` in the kernel), in the
triangle's own frame (coordinates minus the floor of its lowest corner, so rounding
scales with the cell, not with the grid):

1. its column piece: the triangle clipped by ``x >= X``, ``x <= X+1``, ``y >= Y``,
   ``y <= Y+1`` (Sutherland-Hodgman: points on a plane are kept, an edge gives an
   intersection only when its ends lie strictly on opposite sides, the cut coordinate
   is set exactly). Columns outside the triangle's ``[floor(min), ceil(max))`` range
   or outside the source grid are skipped (their piece is empty or flat), and so is a
   piece with fewer than 3 distinct consecutive vertices (no area);
2. with ``zlo = floor(zmin)``, ``zhi = ceil(zmax)`` of the piece and ``w = c - z``:
   ``6 M(zlo) = 0``; ``6 M(zhi) = sum_i cross_z(q_i - q_0, q_{i+1} - q_0) ((w_0 + w_i) + w_{i+1})``
   (the fan of the piece); for ``zlo < c < zhi`` the same sum over the part with
   ``z <= c``, taken edge by edge: every edge ``q_i -> q_{i+1}`` contributes its kept
   sub-segment ``s -> e`` as ``cross_z(s - r, e - r) ((w_r + w_s) + w_e)``, with ``r``
   the first point of the piece on the plane ``z = c`` (``w_r = 0``), so the cut itself
   contributes exactly nothing and no clipped polygon is built;
3. ``6 Phi(k) = 6 M(k) - 6 M(k+1)`` for ``zlo <= k < zhi``, ``0`` below, and
   ``-3 sum_i cross_z(...)`` above (the piece lies wholly below level k).

For integer corners every number above is an exactly representable integer, so
identities and integer translations give volumes of exactly 1 and 0 (the 1/6 is
applied once, at the very end).

Fail-safe (folded, inverted or degenerate cells; psi not injective)
------------------------------------------------------------------
A tetrahedron is convex whatever its orientation, and the face sum over its four
faces is its *signed* volume inside the voxel (negative when the map inverts it).
The volume of a target inside a source voxel is therefore

    (sum over the six tetrahedra t of |sum over t's faces of sign * 6 Phi|) / 6,

exact for any orientation: a mirrored or inverted cell is measured exactly, a flat
(degenerate) tetrahedron gives 0, and no volume is ever negative or NaN. When all six
tetrahedra have the same orientation (every cell of an injective map) the interior
faces cancel in pairs and this equals ``|sum over the 12 boundary faces| / 6``: that is
what is computed for such cells ("consistent" cells, decided by the signs of the six
tetrahedra's determinants), and the boundary triangles' pieces are shared with the
neighbours on the CPU. Cells with mixed orientations take the per-tetrahedron sum.
Where cells fold over each other a source voxel may be claimed more than once
(``s > 1``); the bridge then rescales its pieces (docs/DESIGN.md 4.2). A cell with a NaN
corner, or marked invalid, has no pieces (fresh noise). Corners are clamped to
``+-2^30`` first so that no intermediate product can overflow.

Polygons here have a fixed number of vertex slots per batch, with a vertex count per
polygon; the slots beyond it repeat the last vertex. Repeated vertices add exact zeros
to every sum above, so the results equal those of the kernel's compact polygons bit
for bit. A clip keeps at most ``MAXV`` vertices (7 suffice in exact arithmetic; the
limit only matters for rounding-level slivers, and is the same in the kernel).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Box voxels (target, source pairs) aggregated at once on the CPU; target slabs of about
# CHUNK_TARGETS cells share their boundary triangles. Both bound memory for any map.
CHUNK_PAIRS = 1 << 17
CHUNK_TARGETS = 1 << 16
BATCH_TRIANGLES = 1 << 13
# Slabs worked on at once by a pool of threads (NumPy releases the GIL in its loops);
# the result does not depend on it. None: one per CPU core (at most 8).
THREADS = None
MAXV = 16
LIMIT = 2.0 ** 30

# The 18 distinct triangles of the Kuhn split: corner numbers b = dx + 2 dy + 4 dz in
# ascending order (which fixes each triangle's orientation).
TRIS = np.array([
    (0, 1, 3), (0, 1, 7), (0, 3, 7), (1, 3, 7), (0, 1, 5), (0, 5, 7), (1, 5, 7),
    (0, 2, 3), (0, 2, 7), (2, 3, 7), (0, 2, 6), (0, 6, 7), (2, 6, 7), (0, 4, 5),
    (0, 4, 7), (4, 5, 7), (0, 4, 6), (4, 6, 7)], dtype=np.int64)

# The six tetrahedra as four (triangle, sign) each: sign * triangle is an outward face
# of the tetrahedron for the identity map.
TETS = (
    ((0, -1), (1, 1), (2, -1), (3, 1)),
    ((4, 1), (5, 1), (1, -1), (6, -1)),
    ((7, 1), (2, 1), (8, -1), (9, -1)),
    ((10, -1), (8, 1), (11, -1), (12, 1)),
    ((13, -1), (14, 1), (5, -1), (15, 1)),
    ((16, 1), (11, 1), (14, -1), (17, -1)),
)
# Their corners, positively oriented for the identity map (for the orientation test).
TET_CORNERS = ((0, 1, 3, 7), (0, 5, 1, 7), (0, 3, 2, 7), (0, 2, 6, 7), (0, 4, 5, 7), (0, 6, 4, 7))

# The 12 boundary triangles (ascending), their sign in their tetrahedron, and where each
# lies on the lattice of faces: (kind, dk, di, dj, half) -- kind 0: the face x = j + dj
# of cell (k, i, j) (corners 0, 2, 4, 6 of that face's own cell), 1: y = i + di,
# 2: z = k + dk; half 0 or 1: the face's triangle (0, 2, 6) / (0, 4, 6) for x,
# (0, 1, 5) / (0, 4, 5) for y, (0, 1, 3) / (0, 2, 3) for z.
BOUNDARY = (0, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 17)
INTERIOR = (1, 2, 5, 8, 11, 14)
FACE_OF = {0: (2, 0, 0, 0, 0), 7: (2, 0, 0, 0, 1), 15: (2, 1, 0, 0, 0), 17: (2, 1, 0, 0, 1),
           4: (1, 0, 0, 0, 0), 13: (1, 0, 0, 0, 1), 9: (1, 0, 1, 0, 0), 12: (1, 0, 1, 0, 1),
           10: (0, 0, 0, 0, 0), 16: (0, 0, 0, 0, 1), 3: (0, 0, 0, 1, 0), 6: (0, 0, 0, 1, 1)}
# Corner offsets (dz, dy, dx) of each face kind's two triangles, from the face's cell.
FACE_TRIS = {
    0: (((0, 0, 0), (0, 1, 0), (1, 1, 0)), ((0, 0, 0), (1, 0, 0), (1, 1, 0))),
    1: (((0, 0, 0), (0, 0, 1), (1, 0, 1)), ((0, 0, 0), (1, 0, 0), (1, 0, 1))),
    2: (((0, 0, 0), (0, 0, 1), (0, 1, 1)), ((0, 0, 0), (0, 1, 0), (0, 1, 1))),
}


def _sign_of(f):
    for tet in TETS:
        for g, s in tet:
            if g == f:
                return s
    raise KeyError(f)


BOUNDARY_SIGN = tuple(_sign_of(f) for f in BOUNDARY)


def kuhn_tables():
    """Derive ``TRIS``, ``TETS`` and ``TET_CORNERS`` from the definition (for the tests)."""
    import itertools

    def parity(p):
        p = list(p)
        s = 1
        for a in range(len(p)):
            for b in range(a + 1, len(p)):
                if p[a] > p[b]:
                    s = -s
        return s

    unit = (1, 2, 4)
    tris, tets, corners = {}, [], []
    for perm in itertools.permutations(range(3)):
        a, b, _ = perm
        v = [0, unit[a], unit[a] + unit[b], 7]
        if parity(perm) < 0:
            v = [v[0], v[2], v[1], v[3]]
        corners.append(tuple(v))
        A, B, C, D = v
        entries = []
        for face in ((A, C, B), (A, B, D), (A, D, C), (B, C, D)):   # outward
            key = tuple(sorted(face))
            sign = parity([key.index(q) for q in face])
            tris.setdefault(key, len(tris))
            entries.append((tris[key], sign))
        tets.append(tuple(entries))
    return np.array(list(tris), dtype=np.int64), tuple(tets), tuple(corners)


# ----------------------------------------------------------------------------- polygons
# A batch of polygons: P (3, s, N) vertex coordinates (x, y, z) in s slots; a polygon
# with fewer vertices repeats its last one.

def _roll(a):
    """Next slot, cyclically: a[(i + 1) % s] along axis -2."""
    return np.concatenate([a[..., 1:, :], a[..., :1, :]], axis=-2)


def clip(P, n, axis, v, keep_le):
    """Sutherland-Hodgman clip of every polygon by ``coord <= v`` (``keep_le``) or
    ``coord >= v`` (``v`` per polygon), exactly as the kernel's ``g3_clip`` on the
    compact polygon of ``n`` vertices: vertex i is kept when ``d <= 0``, then the
    intersection on edge ``i -> (i+1) % n`` when its ends are strictly on opposite
    sides; at most ``MAXV`` vertices. Every polygon must have a vertex strictly
    outside. Returns the padded polygons and their vertex counts."""
    s, N = P.shape[1], P.shape[2]
    d = P[axis] - v if keep_le else v - P[axis]                  # inside: d <= 0
    dn = _roll(d)
    slot = np.arange(s)[:, None]
    full = bool((n == s).all())
    if full:
        emit = d <= 0.0
        cross = ((d < 0.0) & (dn > 0.0)) | ((d > 0.0) & (dn < 0.0))
    else:
        live = slot < n
        wrap = slot == n - 1                                      # edge back to vertex 0
        dn = np.where(wrap, d[0], dn)
        emit = live & (d <= 0.0)
        cross = live & (((d < 0.0) & (dn > 0.0)) | ((d > 0.0) & (dn < 0.0)))
    cnt = emit.astype(np.int64) + cross
    pos = np.empty_like(cnt)                                      # first output slot
    pos[0] = 0
    for i in range(1, s):
        pos[i] = pos[i - 1] + cnt[i - 1]
    n_all = pos[-1] + cnt[-1]
    n_out = np.minimum(n_all, MAXV)
    s_out = max(int(n_out.max()), 1)
    out = np.zeros((3, s_out, N))
    # Flat indices: input (slot, row) is f = slot * N + row; output slot j of the same
    # row is f + (j - slot) * N.
    shift = pos - slot
    # Kept vertices.
    f = np.flatnonzero(emit)
    dst = f + shift.ravel().take(f) * N
    if n_all.max() > MAXV:
        ok = (pos.ravel().take(f) < MAXV)
        f, dst = f[ok], dst[ok]
    for a in range(3):
        out[a].ravel()[dst] = P[a].ravel().take(f)
    # Intersections on the edges a -> b that cross the plane.
    f = np.flatnonzero(cross)
    sx = (shift + emit).ravel().take(f)
    if n_all.max() > MAXV:
        ok = (sx + f // N < MAXV)
        f, sx = f[ok], sx[ok]
    dst = f + sx * N
    if full:
        fb = np.where(f >= (s - 1) * N, f - (s - 1) * N, f + N)  # flat index of b
    else:
        fb = f + np.where(wrap, -(n - 1) * N, N).ravel().take(f)
    da = d.ravel().take(f)
    t = da / (da - d.ravel().take(fb))
    for a in range(3):
        if a == axis:
            out[a].ravel()[dst] = v if np.ndim(v) == 0 else v.take(f % N)
        else:
            pa_ = P[a].ravel()
            xa = pa_.take(f)
            out[a].ravel()[dst] = xa + t * (pa_.take(fb) - xa)
    # Pad: slots at or beyond n' repeat the last vertex.
    short = np.flatnonzero(n_out < s_out)
    if short.size:
        ns = n_out.take(short)
        last = np.maximum(ns - 1, 0) * N + short
        for a in range(3):
            flat = out[a].ravel()
            lastv = flat.take(last)
            for j in range(1, s_out):
                m = np.flatnonzero(j >= ns)
                flat[j * N + short.take(m)] = lastv.take(m)
    return out, n_out


def fan_cross(P):
    """Per polygon ``sum_i cross_z(q_i - q_0, q_{i+1} - q_0)`` (twice the signed area of
    the projection), over slots 1 .. s-2, and the crosses themselves."""
    x0, y0 = P[0, 0], P[1, 0]
    acc = np.zeros(P.shape[2])
    crs = []
    for i in range(1, P.shape[1] - 1):
        cr = (P[0, i] - x0) * (P[1, i + 1] - y0) - (P[1, i] - y0) * (P[0, i + 1] - x0)
        crs.append(cr)
        acc = acc + cr
    return acc, crs


def fan_moment(P, crs, c):
    """``6 M(c)`` of polygons wholly below ``z = c``: the fan with weights ``w = c - z``."""
    w0 = c - P[2, 0]
    acc = np.zeros(P.shape[2])
    for i, cr in enumerate(crs, start=1):
        acc = acc + cr * ((w0 + (c - P[2, i])) + (c - P[2, i + 1]))
    return acc


def cut_moment(P, c):
    """``6 M(c)`` of polygons cut by ``z = c`` (some vertex strictly above, some
    strictly below): sum over edges of the kept sub-segment ``s -> e`` of
    ``cross_z(s - r, e - r) ((w_r + w_s) + w_e)``, ``r`` the first point on the plane."""
    s, N = P.shape[1], P.shape[2]
    x, y, z = P
    d = z - c                                                     # inside: d <= 0
    xn, yn, dn = _roll(x), _roll(y), _roll(d)
    cross = ((d < 0.0) & (dn > 0.0)) | ((d > 0.0) & (dn < 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(cross, d / (d - dn), 0.0)
    ix = x + t * (xn - x)
    iy = y + t * (yn - y)
    # r: the first slot (in order) whose vertex lies on the plane (then t = 0 and
    # (ix, iy) is the vertex) or whose outgoing edge crosses it.
    first = np.argmax(cross | (d == 0.0), axis=0)[None]
    rx = np.take_along_axis(ix, first, 0)[0]
    ry = np.take_along_axis(iy, first, 0)[0]
    ins = d <= 0.0
    insn = _roll(ins)
    # Kept sub-segment s -> e of edge i (w = c - z = -d; 0 on the plane):
    #   both ends inside: the edge; inside -> outside: vertex i to the intersection
    #   (vertex i alone when it lies on the plane); outside -> inside: the
    #   intersection to vertex i+1 (vertex i+1 alone when it lies on the plane).
    sx = np.where(ins, x, np.where(cross, ix, xn))
    sy = np.where(ins, y, np.where(cross, iy, yn))
    sw = np.where(ins, -d, np.where(cross, 0.0, -dn))
    ex = np.where(insn, xn, np.where(cross, ix, x))
    ey = np.where(insn, yn, np.where(cross, iy, y))
    ew = np.where(insn, -dn, np.where(cross, 0.0, -d))
    keep = ins | insn
    acc = np.zeros(N)
    for i in range(s):
        cr = (sx[i] - rx) * (ey[i] - ry) - (sy[i] - ry) * (ex[i] - rx)
        term = cr * ((0.0 + sw[i]) + ew[i])
        acc = acc + np.where(keep[i], term, 0.0)
    return acc


def _expand(lo, hi):
    """For ranges [lo, hi) per row: (row of each item, value of each item)."""
    cnt = np.maximum(hi - lo, 0).astype(np.int64)
    rows = np.repeat(np.arange(cnt.size), cnt)
    local = np.arange(rows.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return rows, lo.take(rows) + local



def _cells_of(P, n, lo, hi, axis):
    """Cut the polygons ``P`` into their cells ``[v, v+1]`` along ``axis`` for the
    integers ``v`` in ``[lo, hi)`` per polygon (only the planes that cut a polygon are
    applied: the others would leave it unchanged). ``n``: vertices per polygon (slots
    beyond repeat the last). Returns the pieces (padded), their vertex counts, and per
    piece its polygon and ``v``; pieces are grouped by which planes cut them."""
    vmin, vmax = P[axis].min(0), P[axis].max(0)
    r, v = _expand(lo, hi)
    code = (v > vmin.take(r)).astype(np.int8) + np.int8(2) * (v + 1.0 < vmax.take(r))
    order = np.argsort(code, kind="stable")                      # a radix sort for int8
    r, v, code = r.take(order), v.take(order), code.take(order)
    bounds = np.searchsorted(code, np.arange(5))
    parts = []
    for g in range(4):
        a, b = bounds[g], bounds[g + 1]
        if a == b:
            continue
        Q = P.take(r[a:b], axis=2)
        m = n.take(r[a:b])
        if g & 1:
            Q, m = clip(Q, m, axis, v[a:b], keep_le=False)
        if g & 2:
            Q, m = clip(Q, m, axis, v[a:b] + 1.0, keep_le=True)
        parts.append((a, b, Q, m))
    s = max([Q.shape[1] for _, _, Q, _ in parts] + [1])
    out = np.empty((3, s, r.size))
    counts = np.empty(r.size, np.int64)
    for a, b, Q, m in parts:
        sq = Q.shape[1]
        out[:, :sq, a:b] = Q
        out[:, sq:, a:b] = Q[:, sq - 1:sq]
        counts[a:b] = m
    return out, counts, r, v


def triangle_pieces(T, source_shape):
    """The pieces of triangles ``T`` (3 coords, 3 vertices, N) (absolute, finite,
    vertices in canonical order) in the source grid's columns.

    Returns ``(tri, X, Y, zlo, zhi, shadow, table_start, table)``, sorted by triangle:
    per piece the triangle, the column, ``zlo``/``zhi`` (absolute levels), ``6 Phi``
    above ``zhi``, and where its ``6 Phi(k)`` for ``zlo <= k < zhi`` start in ``table``.
    """
    ds, hs, ws = source_shape
    o = np.floor(T.min(axis=1))                                   # (3, N) frame origin
    P = T - o[:, None, :]
    # 1. x strips, then 2. y rows, inside the grid.
    xmin, xmax = P[0].min(0), P[0].max(0)
    P1, n1, r1, x0 = _cells_of(P, np.full(P.shape[2], 3), np.maximum(np.floor(xmin), -o[0]),
                           np.minimum(np.ceil(xmax), ws - o[0]), 0)
    ymin, ymax = P1[1].min(0), P1[1].max(0)
    P2, n2, r2, y0 = _cells_of(P1, n1, np.maximum(np.floor(ymin), -o[1].take(r1)),
                           np.minimum(np.ceil(ymax), hs - o[1].take(r1)), 1)
    x0 = x0.take(r2)
    tri = r1.take(r2)
    # A piece needs 3 distinct vertices to have any area; the others are dropped.
    nd = _distinct_count(P2)
    n2 = np.where(nd >= 3, n2, 0)
    # 3. levels: 6 M(zlo) = 0, 6 M(zhi) by the fan, 6 M(c) in between by cut_moment.
    zmin, zmax = P2[2].min(0), P2[2].max(0)
    zlo, zhi = np.floor(zmin), np.ceil(zmax)
    nlev = np.where(n2 > 0, zhi - zlo, 0).astype(np.int64)
    # Slots beyond a polygon's count repeat its last vertex: exact zeros in the fans.
    A2, crs = fan_cross(P2)
    M_full = fan_moment(P2, crs, zhi)
    shadow = -(3.0 * A2)
    table_start = np.cumsum(nlev) - nlev
    table = np.empty(int(nlev.sum()))
    M_prev = np.zeros(P2.shape[2])
    for L in range(1, int(nlev.max()) + 1 if nlev.size else 1):
        sel = np.flatnonzero(nlev >= L)
        last = nlev.take(sel) == L
        M = np.empty(sel.size)
        fi = np.flatnonzero(last)
        M[fi] = M_full.take(sel.take(fi))
        ci = np.flatnonzero(~last)
        if ci.size:
            g = sel.take(ci)
            mmax = int(n2.take(g).max())
            M[ci] = cut_moment(P2[:, :mmax].take(g, axis=2), zlo.take(g) + L)
        table[table_start.take(sel) + (L - 1)] = M_prev.take(sel) - M
        M_prev = np.zeros(P2.shape[2])
        M_prev[sel] = M
    # Keep the pieces with an area, sorted by triangle.
    k = np.flatnonzero(n2 > 0)
    key = tri.take(k)
    if P.shape[2] <= np.iinfo(np.int16).max:
        key = key.astype(np.int16)                                # radix sort
    k = k.take(np.argsort(key, kind="stable"))
    tri, x0, y0, zlo, zhi, shadow, table_start = (a.take(k) for a in (tri, x0, y0, zlo, zhi, shadow, table_start))
    oz = o[2].take(tri)
    return (tri, x0 + o[0].take(tri), y0 + o[1].take(tri), zlo + oz, zhi + oz, shadow,
            table_start, table)


def _batched_pieces(T, source_shape):
    """``triangle_pieces`` in batches of ``BATCH_TRIANGLES`` (the working arrays then
    stay small enough for the caches); results concatenated in triangle order."""
    parts = []
    offset = 0
    for lo in range(0, T.shape[2], BATCH_TRIANGLES):
        tri, X, Y, zlo, zhi, shadow, tstart, table = triangle_pieces(
            T[:, :, lo:lo + BATCH_TRIANGLES], source_shape)
        parts.append((tri + lo, X, Y, zlo, zhi, shadow, tstart + offset, table))
        offset += table.size
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(a) for a in zip(*parts))


def _distinct_count(P):
    """Number of distinct consecutive vertices (padding repeats the last one)."""
    s = P.shape[1]
    cnt = np.ones(P.shape[2], np.int64)
    for j in range(1, s):
        cnt += (P[0, j] != P[0, j - 1]) | (P[1, j] != P[1, j - 1]) | (P[2, j] != P[2, j - 1])
    return cnt


# ----------------------------------------------------------------------------- cells

def _orientation(V):
    """Signed 6-volumes of the six tetrahedra of each cell, ``V`` (8, 3, N) corners:
    (6, N), positive for the identity map."""
    out = []
    for a, b, c, d in TET_CORNERS:
        ax, ay, az = V[b] - V[a]
        bx, by, bz = V[c] - V[a]
        cx, cy, cz = V[d] - V[a]
        out.append(ax * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx))
    return np.stack(out)


def _cells(raw, c, valid, source_shape):
    """Per cell of a slab: ``live`` (finite, valid, non-empty box), ``consistent``
    (all six tetrahedra of one orientation), box origin (3, n) and extents (3, n), and
    the corners ``V`` (8, 3, n), all flattened in (k, i, j) order."""
    ds, hs, ws = source_shape
    d, h, w = c.shape[0] - 1, c.shape[1] - 1, c.shape[2] - 1
    V = np.empty((8, 3, d * h * w))
    finite = np.ones(d * h * w, bool)
    for b in range(8):
        dx, dy, dz = b & 1, (b >> 1) & 1, b >> 2
        V[b] = c[dz:dz + d, dy:dy + h, dx:dx + w].reshape(-1, 3).T
        finite &= np.isfinite(raw[dz:dz + d, dy:dy + h, dx:dx + w]).all(-1).ravel()
    if valid is not None:
        finite &= np.asarray(valid, bool).ravel()
    with np.errstate(invalid="ignore"):
        lo, hi = V.min(0), V.max(0)
        size = np.array([ws, hs, ds], np.float64)[:, None]
        b0 = np.floor(np.clip(lo, 0.0, size))
        b1 = np.ceil(np.clip(hi, 0.0, size))
        ext = np.where(finite, b1 - b0, 0.0).astype(np.int64)
        orient = _orientation(V)
    live = finite & (ext.prod(0) > 0)
    consistent = (orient > 0.0).all(0) | (orient < 0.0).all(0)
    return live, consistent, np.where(live, b0, 0.0), np.where(live, ext, 0), V


def _face_triangles(c, kind, half, lattice):
    """Absolute corners (3 coords, 3 vertices, N) of the triangles ``half`` of the faces
    ``kind`` at lattice points ``lattice`` = (k, i, j) arrays."""
    k, i, j = lattice
    T = np.empty((3, 3, k.size))
    for v, (dz, dy, dx) in enumerate(FACE_TRIS[kind][half]):
        T[:, v] = c[k + dz, i + dy, j + dx].T
    return T


def _units(nx, ny, nz):
    """Split each cell's box into runs of levels of at most about CHUNK_PAIRS voxels:
    (cell, first level, number of levels)."""
    per = np.maximum(CHUNK_PAIRS // np.maximum(nx * ny, 1), 1)
    parts = (nz + per - 1) // per
    cell = np.repeat(np.arange(nz.size), parts)
    first = (np.arange(cell.size) - np.repeat(np.cumsum(parts) - parts, parts)) * per.take(cell)
    return cell, first, np.minimum(per.take(cell), nz.take(cell) - first)


def grid3d_pieces(corners, source_shape, valid=None):
    """Partition record of the grid variant in 3-D: ``(target, source, volume)`` with
    volume > 0, flat row-major indices ``(k*H + i)*W + j``; per target, the source
    voxels of its bounding box in (z, y, x) order (the kernel's order).

    ``corners``: ``(D+1, H+1, W+1, 3)`` backward positions ``(x, y, z)``; ``valid``:
    optional ``(D, H, W)`` bool mask of targets that may have a source.
    """
    source_shape = tuple(int(s) for s in source_shape)
    raw = np.asarray(corners, np.float64)
    c = np.clip(raw, -LIMIT, LIMIT)
    D, H, W = c.shape[0] - 1, c.shape[1] - 1, c.shape[2] - 1
    vmask = None if valid is None else np.asarray(valid, bool).reshape(D, H, W)
    per_slab = max(1, CHUNK_TARGETS // max(H * W, 1))
    slabs = [(k0, min(D, k0 + per_slab)) for k0 in range(0, D, per_slab)]

    def run(slab):
        k0, k1 = slab
        t, s, a = _slab(raw[k0:k1 + 1], c[k0:k1 + 1], None if vmask is None else vmask[k0:k1],
                        source_shape)
        return t + k0 * H * W, s, a

    threads = THREADS if THREADS is not None else min(os.cpu_count() or 1, 8)
    if threads > 1 and len(slabs) > 1:
        with ThreadPoolExecutor(min(threads, len(slabs))) as pool:
            parts = list(pool.map(run, slabs))
    else:
        parts = [run(slab) for slab in slabs]
    out_t, out_s, out_a = (list(p) for p in zip(*parts)) if parts else ([], [], [])
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_a)


def _slab(raw, c, valid, source_shape):
    ds, hs, ws = source_shape
    nk, H, W = c.shape[0] - 1, c.shape[1] - 1, c.shape[2] - 1
    live, consistent, b0, ext, V = _cells(raw, c, valid, source_shape)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if not live.any():
        return empty
    live3 = live.reshape(nk, H, W)
    # Boundary triangles shared by neighbouring cells: the faces next to a live cell.
    tris, ids = [], []
    count = 0
    for kind in range(3):
        shape = [nk, H, W]
        shape[2 - kind] += 1
        need = np.zeros(shape, bool)
        ax = 2 - kind                                  # x-faces vary along j, etc.
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        need[tuple(lo)] |= live3
        need[tuple(hi)] |= live3
        lattice = np.nonzero(need)
        table = np.full(shape + [2], -1, np.int64)
        for half in range(2):
            tris.append(_face_triangles(c, kind, half, lattice))
            table[lattice + (np.full(lattice[0].size, half),)] = count + np.arange(lattice[0].size)
            count += lattice[0].size
        ids.append(table)
    # Interior triangles of the live cells with mixed orientations.
    mixed = np.flatnonzero(live & ~consistent)
    interior_id = np.full((live.size, 6), -1, np.int64)
    for q, f in enumerate(INTERIOR):
        T = np.stack([V[b].take(mixed, axis=1) for b in TRIS[f]], axis=1)
        tris.append(T)
        interior_id[mixed, q] = count + np.arange(mixed.size)
        count += mixed.size
    T = np.concatenate(tris, axis=2)
    tri, X, Y, zlo, zhi, shadow, tstart, table = _batched_pieces(T, source_shape)
    pstart = np.searchsorted(tri, np.arange(count + 1))
    # Which triangle each (cell, TRIS slot) uses.
    cells = np.flatnonzero(live)
    kk, ii, jj = np.unravel_index(cells, (nk, H, W))

    def tri_id(f):
        if f in INTERIOR:
            return interior_id[cells, INTERIOR.index(f)]
        kind, dk, di, dj, half = FACE_OF[f]
        return ids[kind][kk + dk, ii + di, jj + dj, half]

    slot_id = {f: tri_id(f) for f in range(18)}
    cons = consistent.take(cells)
    nx, ny, nz = ext[:, cells]
    ox, oy, oz = b0[:, cells]
    ucell, ufirst, ulev = _units(nx, ny, nz)
    uvox = nx.take(ucell) * ny.take(ucell) * ulev
    ends = np.cumsum(uvox)
    start = 0
    out_t, out_s, out_a = [], [], []
    while start < ucell.size:
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + CHUNK_PAIRS, side="right")))
        stop = min(stop, ucell.size)
        u = np.arange(start, stop)
        t, s, a = _aggregate(u, ucell, ufirst, ulev, uvox, cells, cons, nx, ny, ox, oy, oz,
                             slot_id, pstart, X, Y, zlo, zhi, shadow, tstart, table, source_shape)
        out_t.append(t); out_s.append(s); out_a.append(a)
        start = stop
    return np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_a)


def _aggregate(u, ucell, ufirst, ulev, uvox, cells, cons, nx, ny, ox, oy, oz, slot_id,
               pstart, X, Y, zlo, zhi, shadow, tstart, table, source_shape):
    """Volumes of the voxels of the units ``u`` (runs of levels of the cells' boxes)."""
    ds, hs, ws = source_shape
    uc = ucell.take(u)                      # per unit of this batch: its cell, first
    uf = ufirst.take(u)                     # level and number of levels
    ul = ulev.take(u)
    nvox = uvox.take(u)
    base = np.cumsum(nvox) - nvox
    total = int(nvox.sum())

    def records(rows, gid, sign, bins_per_voxel=1, slot=None):
        """Values ``sign * 6 Phi`` of the triangles ``gid`` in the voxels of units
        ``rows`` (per row: unit, triangle, sign, bin offset): (bin, value). Within each
        voxel, the values come in row order."""
        # Per row: the unit's voxel block and the offset of the row's voxels.
        rc = uc.take(rows)
        rnx = nx.take(rc)
        rplane = rnx * ny.take(rc)
        rlev0 = (oz.take(rc) + uf.take(rows)).astype(np.int64)
        rvb = base.take(rows) - oy.take(rc).astype(np.int64) * rnx - ox.take(rc).astype(np.int64)
        if slot is not None:
            rvb = rvb * bins_per_voxel + slot
            rnx = rnx * bins_per_voxel
            rplane = rplane * bins_per_voxel
        q, p = _expand(pstart.take(gid), pstart.take(gid + 1))   # (row, piece) pairs
        vb = rvb.take(q) + Y.take(p).astype(np.int64) * rnx.take(q) \
            + X.take(p).astype(np.int64) * (1 if slot is None else bins_per_voxel)
        plane = rplane.take(q)
        lev0 = rlev0.take(q)
        zl = zlo.take(p).astype(np.int64)
        zh = zhi.take(p).astype(np.int64)
        sg = sign.take(q)
        sh = sg * shadow.take(p)
        toff = tstart.take(p) - zl
        levels = ul.take(rows).take(q)
        bins, vals = [], []
        for lz in range(int(levels.max()) if levels.size else 0):
            k = lev0 + lz
            m = np.flatnonzero((lz < levels) & (k >= zl))
            km = k.take(m)
            above = km >= zh.take(m)
            idx = np.where(above, 0, toff.take(m) + km)
            below = sg.take(m) * (table.take(idx) if table.size else np.zeros(m.size))
            vals.append(np.where(above, sh.take(m), below))
            bins.append(vb.take(m) + lz * plane.take(m))
        if not bins:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(bins), np.concatenate(vals)

    # Rows in slot order, so that each voxel's sum runs over the triangles in the
    # kernel's order (bincount adds in array order).
    ucons = np.flatnonzero(cons.take(uc))
    umix = np.flatnonzero(~cons.take(uc))
    vol = np.zeros(total)
    if ucons.size:
        cu = uc.take(ucons)
        rows = np.tile(ucons, len(BOUNDARY))
        gid = np.concatenate([slot_id[f].take(cu) for f in BOUNDARY])
        sign = np.repeat(np.array(BOUNDARY_SIGN, np.float64), ucons.size)
        b, v = records(rows, gid, sign)
        vol = np.abs(np.bincount(b, v, minlength=total))
    if umix.size:
        cm = uc.take(umix)
        order = [(e, t) for e in range(4) for t in range(6)]
        rows = np.tile(umix, len(order))
        gid = np.concatenate([slot_id[TETS[t][e][0]].take(cm) for e, t in order])
        sign = np.repeat(np.array([TETS[t][e][1] for e, t in order], np.float64), umix.size)
        slot = np.repeat(np.array([t for e, t in order], np.int64), umix.size)
        b, v = records(rows, gid, sign, 6, slot)
        V6 = np.bincount(b, v, minlength=6 * total).reshape(total, 6)
        acc = np.zeros(total)
        for t in range(6):
            acc = acc + np.abs(V6[:, t])
        mixed_vox = np.repeat(~cons.take(uc), nvox)
        vol = np.where(mixed_vox, acc, vol)
    vol = vol / 6.0
    # Source index of every voxel, in (z, y, x) order per unit.
    tv = np.repeat(np.arange(u.size), nvox)
    cc = uc.take(tv)
    local = np.arange(total) - base.take(tv)
    nxv, nyv = nx.take(cc), ny.take(cc)
    lx = local % nxv
    ly = (local // nxv) % nyv
    lz = local // (nxv * nyv) + uf.take(tv)
    src = ((oz.take(cc).astype(np.int64) + lz) * hs + (oy.take(cc).astype(np.int64) + ly)) * ws \
        + (ox.take(cc).astype(np.int64) + lx)
    keep = np.flatnonzero(vol > 0.0)
    return cells.take(cc.take(keep)), src.take(keep), vol.take(keep)
