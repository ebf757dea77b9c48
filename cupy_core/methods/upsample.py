"""The baseline: Chang et al. 2024 upsampling-based integral noise (docs/DESIGN.md 5).

NumPy reference and launcher of ``upsample.cu``. It is in the project to be measured
against (``python build.py bench``), never as a default.

Each source pixel k is split into N x N sub-pixels with values v_s drawn conditionally
on the stored X_k. Sub-pixel s stands for N * W(sub-square s), so unconditionally the
v_s are i.i.d. N(0, 1) and they sum to N X_k. Given that sum they are

    v_s = u_s - mean_k(u) + X_k / N,      u_s i.i.d. N(0, 1)

(mean X_k / N, covariance I - 11^T / N^2: the conditional law of i.i.d. normals given
their sum). Target pixel p sums the sub-pixels whose centres fall inside its warped
region R_p and divides by sqrt(count): N(0, 1) again; count 0 gives fresh noise.

R_p is the quadrilateral through the four warped corners, with the grid variant's
bow-tie fail-safe (``grid2d.quads``), so both methods use the same region. Its
sub-pixel centres are found row by row: the horizontal line through a row of centres
crosses the quad's edges at most four times, the crossings sorted in pairs give the
spans inside (even-odd rule). Edges are taken lower end first and half-open in y,
spans half-open in x, so a centre on an edge shared by two quads belongs to exactly
one of them and a tiling of quads counts every centre once.

With n_k centres of source k inside R_p and count = sum n_k, the moments given the
prior are those of docs/DESIGN.md 4.4 item 3 with areas a[p, k] = n_k / N^2:
E[Y_p | X] = sum n_k X_k / (N sqrt(count)), Var = 1 - sum n_k^2 / (N^2 count).

Random numbers: u_s is drawn at counter (source k, sub-pixel s = row * N + column,
STREAM_SUBPIXEL << 24 | channel group, frame), so each sub-pixel can be redrawn where
it is needed instead of storing the N^2-times larger field: the GPU draws it once for
the mean and once in the gather; the CPU walks the source in bands of rows, draws each
band once and sums spans from running sums along the sub-pixel rows.
"""
import numpy as np

from . import rng
from .grid2d import quads

# Bytes of sub-pixel values per band on the CPU (float64, all channels): large enough
# that NumPy's per-call overhead does not matter, small enough to stay near the cache.
BAND_BYTES = 1 << 24
# (target, sub-pixel row) pairs handled at once on the CPU.
CHUNK_PAIRS = 1 << 16


def check_factor(factor):
    """The upsampling factor N: an integer >= 1 (ValueError otherwise)."""
    if factor is None:
        raise ValueError("method='upsample' needs factor=N, the number of sub-pixels per "
                         "pixel side (an integer >= 1)")
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)) \
            or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if factor > 4096:
        # Sub-pixel indices are 32-bit counter words: N^2 must fit.
        raise ValueError(f"factor must be at most 4096, got {factor}")
    return int(factor)


def row_ranges(quad, ok, source_shape, factor):
    """Per target, the sub-pixel rows ``[gy0, gy1)`` that may hold centres inside it:
    the bounding box widened by one row on each side (rows without crossings cost a
    little and spare an exact rounding argument), clipped to the source."""
    hs = source_shape[0]
    n = float(factor)
    ys = quad[:, 1]
    with np.errstate(invalid="ignore"):
        lo = np.ceil(np.clip(ys.min(0), -1.0, hs + 1.0) * n - 0.5) - 1.0
        hi = np.ceil(np.clip(ys.max(0), -1.0, hs + 1.0) * n - 0.5) + 1.0
    rows = hs * factor
    gy0 = np.where(ok, np.clip(lo, 0, rows), 0).astype(np.int64)
    gy1 = np.where(ok, np.clip(hi, 0, rows), 0).astype(np.int64)
    return gy0, np.maximum(gy1, gy0)


def spans(qx, qy, gy, factor, ws):
    """Sub-pixel column spans of quads ``qx, qy`` (4, n) on sub-pixel rows ``gy`` (n,):
    ``(a0, b0, a1, b1)``, two half-open spans of global sub-pixel columns each (empty
    when ``b <= a``). The same arithmetic as ``upsample.cu``."""
    n = float(factor)
    yc = (gy.astype(np.float64) + 0.5) / n
    xs = np.full((4, gy.size), np.inf)
    m = np.zeros(gy.size, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for e in range(4):
            f = (e + 1) % 4
            low = qy[e] <= qy[f]     # take each edge lower end first
            xa = np.where(low, qx[e], qx[f]); ya = np.where(low, qy[e], qy[f])
            xb = np.where(low, qx[f], qx[e]); yb = np.where(low, qy[f], qy[e])
            cross = (ya <= yc) & (yc < yb)
            x = xa + (yc - ya) * (xb - xa) / (yb - ya)
            xs[e] = np.where(cross, x, np.inf)
            m += cross
    xs.sort(axis=0)
    cols = ws * factor

    def col(x):
        with np.errstate(invalid="ignore"):
            c = np.ceil(np.clip(x, -1.0, ws + 1.0) * n - 0.5)
        return np.clip(np.where(np.isfinite(c), c, 0), 0, cols).astype(np.int64)

    a0, b0, a1, b1 = col(xs[0]), col(xs[1]), col(xs[2]), col(xs[3])
    b0 = np.where(m >= 2, b0, a0)
    b1 = np.where(m >= 4, b1, a1)
    return a0, np.maximum(b0, a0), a1, np.maximum(b1, a1)


def _pairs(t, gy0, gy1, lo, hi):
    """(target, sub-row) pairs for targets ``t`` over rows ``[max(gy0, lo), min(gy1, hi))``."""
    r0 = np.maximum(gy0[t], lo)
    cnt = np.maximum(np.minimum(gy1[t], hi) - r0, 0)
    tt = np.repeat(t, cnt)
    gy = np.repeat(r0, cnt) + (np.arange(tt.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return tt, gy


def _setup(corners, source_shape, factor, valid):
    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    quad, _ = quads(corners)
    ok = np.ones(h * w, bool) if valid is None else np.asarray(valid, bool).ravel()
    ok &= np.isfinite(quad).all(axis=(0, 1))
    gy0, gy1 = row_ranges(quad, ok, source_shape, factor)
    return h * w, quad, gy0, gy1


def upsample_pieces(corners, source_shape, factor, valid=None):
    """Sub-pixel counts ``(target, source, n_k)`` with n_k > 0: how many centres of
    source k lie inside R_p (``partition_record`` reports ``n_k / N^2``)."""
    hs, ws = source_shape
    n_target, quad, gy0, gy1 = _setup(corners, source_shape, factor, valid)
    order = np.nonzero(gy1 > gy0)[0]
    out_t, out_s, out_n = [], [], []
    # Chunks of targets whose row counts sum to about CHUNK_PAIRS.
    ends = np.cumsum(gy1[order] - gy0[order])
    start = 0
    while start < order.size:
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + CHUNK_PAIRS, side="right")))
        t, gy = _pairs(order[start:stop], gy0, gy1, 0, hs * factor)
        a0, b0, a1, b1 = spans(quad[:, 0, t], quad[:, 1, t], gy, factor, ws)
        for a, b in ((a0, b0), (a1, b1)):
            keep = b > a
            ta, ga, a, b = t[keep], gy[keep], a[keep], b[keep]
            # Split each span at source-cell boundaries: cells a // N .. (b - 1) // N.
            c0, c1 = a // factor, (b - 1) // factor
            ncell = c1 - c0 + 1
            rep = np.repeat(np.arange(ta.size), ncell)
            cell = np.repeat(c0, ncell) + (np.arange(rep.size) - np.repeat(np.cumsum(ncell) - ncell, ncell))
            cnt = np.minimum(b[rep], (cell + 1) * factor) - np.maximum(a[rep], cell * factor)
            out_t.append(ta[rep]); out_s.append((ga[rep] // factor) * ws + cell); out_n.append(cnt)
        start = stop
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    t, s, n = np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_n)
    # Merge the rows: one entry per (target, source).
    key = t * (hs * ws) + s
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv.ravel(), n).astype(np.int64)
    return uniq // (hs * ws), uniq % (hs * ws), total


# Sub-pixel values are summed in 64-bit fixed point (2^-32 units), as in upsample.cu:
# integer sums do not depend on their order, so the kernel's per-sub-pixel sums and
# this path's running sums give the same bits.
SCALE = 4294967296.0


def fixed(v):
    """float32 or float64 values in fixed point, int64 (``up_fixed``, ``__double2ll_rn``)."""
    return np.rint(np.asarray(v, np.float64) * SCALE).astype(np.int64)


def subpixel_normals(k, s, channels, frame, seed):
    """u for sub-pixels ``s`` of sources ``k``: float32 ``(C, n)``, as ``normals4``."""
    return rng.normals_cm(k, s, rng.STREAM_SUBPIXEL, channels, frame, seed)


def offset_fixed(prior_cm, u_sum, factor):
    """The offset X_k / N - mean_k(u) in fixed point, from the fixed-point sum of the
    N^2 draws (as ``upsample_offsets``)."""
    off = prior_cm / float(factor) - (u_sum.astype(np.float64) / SCALE) / float(factor * factor)
    return fixed(off)


def offsets(prior_cm, k, factor, seed, frame):
    """X_k / N - mean_k(u) for sources ``k`` (``prior_cm``: (C, Ns)), int64 fixed point:
    the shift that conditions the sub-pixels on X_k. The reference of
    ``upsample_offsets``; the band loop of ``upsample_numpy`` computes the same numbers
    from its own draws."""
    channels = prior_cm.shape[0]
    nn = factor * factor
    kk = np.repeat(np.asarray(k, np.int64), nn)
    ss = np.tile(np.arange(nn, dtype=np.int64), len(k))
    u = fixed(subpixel_normals(kk, ss, channels, frame, seed)).reshape(channels, len(k), nn)
    return offset_fixed(prior_cm[:, k], u.sum(axis=2), factor)


def _exact_sum(t, part, n):
    """Per-target sums of int64 ``part`` as float64, exact (bincount while every partial
    sum stays below 2^53, else int64 adds)."""
    if part.size == 0 or np.bincount(t, np.abs(part), minlength=n).max() < 2.0 ** 52:
        return np.bincount(t, part, minlength=n)
    out = np.zeros(n, np.int64)
    np.add.at(out, t, part)
    return out.astype(np.float64)


def upsample_numpy(prior, corners, source_shape, factor, valid, seed, frame):
    """The baseline on the CPU. ``prior``: (Ns, C); returns (n_target, C) float64.

    Walks the source in bands of rows: draws every sub-pixel of the band once, shifts
    it by its source's offset, and takes running sums along each sub-pixel row, so
    that a span's sum is a difference of two of them.
    """
    hs, ws = source_shape
    prior = np.ascontiguousarray(np.asarray(prior, np.float64).T)    # (C, Ns)
    channels = prior.shape[0]
    n_target, quad, gy0, gy1 = _setup(corners, source_shape, factor, valid)
    acc = np.zeros((channels, n_target))
    count = np.zeros(n_target, np.int64)
    cols = ws * factor
    band = int(max(1, min(hs, BAND_BYTES // (8 * channels * factor * factor * ws))))
    by_start = np.argsort(gy0, kind="stable")
    by_start = by_start[gy1[by_start] > gy0[by_start]]
    starts = gy0[by_start]
    active = np.zeros(0, np.int64)
    ptr = 0
    sub_r = np.arange(band * factor, dtype=np.int64)[:, None]
    sub_c = np.arange(cols, dtype=np.int64)[None, :]
    for r0 in range(0, hs, band):
        r1 = min(hs, r0 + band)
        lo, hi = r0 * factor, r1 * factor
        new = int(np.searchsorted(starts, hi, side="left"))
        active = np.concatenate([active[gy1[active] > lo], by_start[ptr:new]])
        ptr = new
        if active.size == 0:
            continue
        # Every sub-pixel of the band, in (sub-row, sub-column) order.
        rr = sub_r[:hi - lo]
        k = ((r0 + rr // factor) * ws + sub_c // factor).ravel()
        s = ((rr % factor) * factor + sub_c % factor).ravel()
        u = fixed(subpixel_normals(k, s, channels, frame, seed)).reshape(
            channels, r1 - r0, factor, ws, factor)
        off = offset_fixed(prior[:, r0 * ws:r1 * ws].reshape(channels, r1 - r0, ws),
                           u.sum(axis=(2, 4)), factor)
        u += off[:, :, None, :, None]
        run = np.zeros((channels, hi - lo, cols + 1), np.int64)
        np.cumsum(u.reshape(channels, hi - lo, cols), axis=2, out=run[:, :, 1:])
        run = run.reshape(channels, -1)
        del u
        t_all, g_all = _pairs(active, gy0, gy1, lo, hi)
        for c0 in range(0, t_all.size, CHUNK_PAIRS):
            t, gy = t_all[c0:c0 + CHUNK_PAIRS], g_all[c0:c0 + CHUNK_PAIRS]
            a0, b0, a1, b1 = spans(quad[:, 0, t], quad[:, 1, t], gy, factor, ws)
            base = (gy - lo) * (cols + 1)
            count += np.bincount(t, (b0 - a0) + (b1 - a1), minlength=n_target).astype(np.int64)
            for c in range(channels):
                r = run[c]
                part = (r[base + b0] - r[base + a0]) + (r[base + b1] - r[base + a1])
                acc[c] += _exact_sum(t, part, n_target)
    out = np.empty((channels, n_target))
    has = count > 0
    # As write_gathered: the sum times 1 / sqrt(count).
    out[:, has] = (acc[:, has] / SCALE) * (1.0 / np.sqrt(count[has].astype(np.float64)))
    fresh = np.nonzero(~has)[0]
    if fresh.size:
        out[:, fresh] = rng.normals_cm(fresh, 0, rng.STREAM_FRESH, channels, frame, seed)
    return out.T


# The key the kernels take by value (struct UpKey of upsample.cu).
KEY_FIELDS = [("k0", "<u4"), ("k1", "<u4"), ("frame", "<u4"), ("channels", "<i4"),
              ("factor", "<i4")]


def upsample_cupy(prior, corners, valid, source_shape, factor, seed, frame):
    """The same on the GPU: ``upsample_offsets`` per source, ``upsample_gather`` per
    target. ``prior``: CuPy (Ns, C) float32; returns CuPy (n_target, C) float32."""
    import cupy
    from .cuda import launch, i64, struct

    n_source, channels = prior.shape
    h, w = corners.shape[0] - 1, corners.shape[1] - 1
    k0, k1 = rng.seed_key(seed)
    key = struct(KEY_FIELDS, (k0, k1, rng.frame_word(frame), channels, factor))
    off = cupy.empty((n_source, channels), dtype=cupy.int64)   # fixed point
    out = cupy.empty((h * w, channels), dtype=cupy.float32)
    cost = channels * factor * factor   # draws per item
    launch("upsample.cu", "upsample_offsets", n_source, (prior, off, key), cost=cost)
    launch("upsample.cu", "upsample_gather", h * w,
           (corners, valid, i64(h), i64(w), i64(source_shape[0]), i64(source_shape[1]),
            off, out, key), cost=2 * cost)
    return out
