"""Sampling the pieces (docs/DESIGN.md 4.2, 4.3): the NumPy path of the four bridge passes.

Each function mirrors one kernel pass of ``bridge.cuh``:

1. ``sum_weights``   S_k = sum of the raw weights requested from source k
2. ``sum_pieces``    T_k = sum of the piece draws Z_i ~ N(0, a_i) of source k
3. ``remainders``    D_k = X_k - (T_k + Z_r), Z_r ~ N(0, r_k) for the unclaimed rest
   (and ``target_sums``: G_p = sum of target p's Z_i, kept so that no normal is
   drawn twice)
4. ``gather``        Y_p = (G_p + sum_i a_i D_k) / sqrt(A_p), or fresh noise if A_p = 0

with ``a_i = w_i / S_k`` when every source is normalised (particle variant) and
``a_i = w_i / max(S_k, 1)`` otherwise (grid variant: only an over-committed source is
rescaled). Draws are addressed by (target, source), so the order of work is irrelevant.

These functions are the readable reference, one per pass; ``bridge_numpy`` runs the
same arithmetic fused per block of pieces on a thread pool (the same bits:
tests/methods/test_kernels_emulated.py, test_fused_bridge_equals_the_passes).
"""
import threading

import numpy as np

from . import rng


def divisor(S, normalise_all):
    """What each source's raw weights are divided by."""
    return np.where(S > 0, S, 1.0) if normalise_all else np.maximum(S, 1.0)


# Arrays per channel are channel-major here, (C, n), so each channel is contiguous.

# The kernels sum weights in 64-bit fixed point (2^-32 units); so does this path, so
# that both see the same S_k to the bit (a tiny difference in S would otherwise be
# magnified by sqrt(1 - S) in the remainder draw).
S_SCALE = 4294967296.0
# A remainder below this is under the resolution of those sums: not drawn.
REST_EPS = 2.0 ** -24


def sum_weights(source, weight, n_source):
    fixed = np.rint(weight * S_SCALE)   # half-even, as __double2ll_rn
    return np.bincount(source, fixed, minlength=n_source) / S_SCALE


def scaled_areas(source, weight, S, normalise_all):
    return weight / divisor(S, normalise_all)[source]


def piece_draws(target, source, area, channels, seed, frame):
    """Z_i ~ N(0, a_i), one per piece and channel: float64 ``(C, n_pieces)``
    (``sqrt(a_i)`` times the float32 normal, as the kernel's ``sa * (double)z``)."""
    z = rng.normals_cm(target, source, rng.STREAM_PIECE, channels, frame, seed)
    out = np.empty(z.shape, np.float64)
    sa = np.sqrt(area)
    rng.parallel_blocks(z.shape[1], lambda lo, hi: np.multiply(
        z[:, lo:hi], sa[lo:hi], out=out[:, lo:hi]), block=1 << 17)
    return out


# The kernels sum the piece draws in 64-bit fixed point (2^-40 units); so does this path.
T_SCALE = 1099511627776.0


def sum_pieces(source, Z, n_source):
    """T_k per channel, ``(C, Ns)``: the sum of its pieces' Z_i, each rounded to 2^-40
    (``to_fixed`` in bridge.cuh), so that the sum does not depend on the order.

    ``bincount`` adds the integer-valued float64 numbers exactly while every partial sum
    stays below 2^53: |Z_i| <= max|z| (a_i <= 1), so a source with fewer than
    2^52 / (max|z| 2^40), about 600, pieces is safe; otherwise exact int64 adds."""
    per_source = np.bincount(source, minlength=n_source).max() if source.size else 0
    exact = per_source * (rng.max_abs_normal() * T_SCALE + 1.0) < 2.0 ** 52

    def one(zc):
        fixed = np.rint(zc * T_SCALE)
        if exact:
            return np.bincount(source, fixed, minlength=n_source) / T_SCALE
        out = np.zeros(n_source, np.int64)
        np.add.at(out, source, fixed.astype(np.int64))
        return out / T_SCALE

    if source.size * len(Z) >= rng.PARALLEL_MIN and len(Z) > 1:
        return np.stack(list(rng.pool().map(one, Z)))
    return np.stack([one(zc) for zc in Z])


def remainders(prior, T, S, normalise_all, seed, frame):
    """D_k = X_k - T_k - Z_r for every source with a piece (0 elsewhere); ``(C, Ns)``."""
    channels = prior.shape[0]
    D = np.zeros_like(T)
    used = S > 0
    D[:, used] = prior[:, used] - T[:, used]
    if not normalise_all:
        # Only sources not wholly claimed have a remainder to draw.
        rest = np.where(used, np.maximum(1.0 - S / np.maximum(S, 1.0), 0.0), 0.0)
        k = np.nonzero(rest >= REST_EPS)[0]
        zr = rng.normals_cm(k, 0xFFFFFFFF, rng.STREAM_REMAINDER, channels, frame, seed)
        D[:, k] = prior[:, k] - (T[:, k] + np.sqrt(rest[k]) * zr)
    return D


def target_sums(target, Z, n_target):
    """G_p = sum of target p's piece draws, ``(C, n_target)``: what the kernels' pass 2
    keeps per target so that pass 4 draws no normal (same order: each target's pieces
    in the geometry's order, from 0)."""
    if target.size * len(Z) >= rng.PARALLEL_MIN and len(Z) > 1:
        return np.stack(list(rng.pool().map(
            lambda zc: np.bincount(target, zc, minlength=n_target), Z)))
    return np.stack([np.bincount(target, zc, minlength=n_target) for zc in Z])


def gather(target, source, area, G, D, n_target, channels, seed, frame):
    """Y_p = (G_p + sum_i a_i D_k) / sqrt(A_p) per target, ``(C, n_target)``."""
    A = np.bincount(target, area, minlength=n_target)
    out = np.empty((channels, n_target), np.float64)
    has = A > 0
    inv = 1.0 / np.sqrt(A[has])

    def one(c):
        pieces = area * D[c][source]
        out[c, has] = (G[c] + np.bincount(target, pieces, minlength=n_target))[has] * inv

    if target.size * channels >= rng.PARALLEL_MIN and channels > 1:
        list(rng.pool().map(one, range(channels)))
    else:
        for c in range(channels):
            one(c)
    fresh = np.nonzero(~has)[0]
    if fresh.size:
        out[:, fresh] = rng.normals_cm(fresh, 0, rng.STREAM_FRESH, channels, frame, seed)
    return out


# Pieces per task of the fused CPU path (bridge_numpy): one block's temporaries stay in
# cache, and the blocks are shared out over the thread pool.
BLOCK_PIECES = 1 << 16
# A block whose sources span more than 4 x its pieces + this adds into T after the pass
# (one bincount over all sources) rather than locally.
WIDE_MIN = 4096


def _target_blocks(target, size):
    """Split the pieces (sorted by target) into runs of about ``size`` pieces that never
    cut a target's pieces in two: ``[(lo, hi), ...]``."""
    n = target.size
    cuts = [0]
    while cuts[-1] < n:
        at = cuts[-1] + size
        if at >= n:
            cuts.append(n)
            break
        # Move the cut to the first piece of the next target.
        cuts.append(int(np.searchsorted(target, target[at - 1], side="right")))
    return list(zip(cuts[:-1], cuts[1:]))


def _map(fn, items):
    if len(items) > 1 and sum(hi - lo for lo, hi in items) >= rng.PARALLEL_MIN:
        return list(rng.pool().map(lambda it: fn(*it), items))
    return [fn(*it) for it in items]


def bridge_numpy(prior, target, source, weight, n_target, normalise_all, seed, frame):
    """The whole bridge on the CPU. ``prior``: ``(n_source, C)``, float32 or float64;
    returns float64 ``(n_target, C)``.

    The same passes as the functions above (and the kernels), fused per block of pieces:
    pass 2 draws a block's normals, keeps its fixed-point values for T and adds its
    targets' G in cache; pass 4 gathers a block's targets. Blocks run on the thread
    pool; no sum depends on the split (fixed point for sources, whole targets per block).
    """
    prior = np.asarray(prior)     # float32 is used as it is (exact in float64 arithmetic)
    if prior.dtype not in (np.float32, np.float64):
        prior = prior.astype(np.float64)
    n_source, channels = prior.shape
    n = target.size
    half = n // 2

    def pass1(lo, hi):
        """Pass 1 on half the pieces: integer-valued sums, exact in any order; with them
        each source's piece count (for T below) and whether the half is in order."""
        src = source[lo:hi]
        return (np.bincount(src, np.rint(weight[lo:hi] * S_SCALE), minlength=n_source),
                np.bincount(src, minlength=n_source),
                bool((target[lo + 1:hi] >= target[lo:hi - 1]).all()))

    (s_a, n_a, in_order_a), (s_b, n_b, in_order_b) = _map(pass1, [(0, half), (half, n)])
    S = (s_a + s_b) / S_SCALE
    per_source = int((n_a + n_b).max()) if n else 0
    if n and not (in_order_a and in_order_b and (half == 0 or target[half] >= target[half - 1])):
        order = np.argsort(target, kind="stable")   # keeps each target's own order
        target, source, weight = target[order], source[order], weight[order]
    blocks = _target_blocks(target, BLOCK_PIECES)
    div = divisor(S, normalise_all)
    a = np.empty(n, np.float64)                 # scaled areas, filled per block in pass 2
    G = np.zeros((channels, n_target), np.float64)
    k0, k1 = rng.seed_key(seed)
    fw = rng.frame_word(frame)
    groups = (channels + 3) // 4
    # T in fixed point: integer-valued float64 sums are exact, whatever the order,
    # while every partial sum stays below 2^53 (see sum_pieces); otherwise int64 adds.
    exact = per_source * (rng.max_abs_normal() * T_SCALE + 1.0) < 2.0 ** 52
    T = np.zeros((channels, n_source), np.float64 if exact else np.int64)
    lock = threading.Lock()
    wide = []          # blocks whose sources spread too far to add locally

    def draw(lo, hi):
        b = hi - lo
        z = np.empty((groups * 4, b), rng.F)
        rng.normals_into(z, target[lo:hi].view(np.uint64), source[lo:hi].view(np.uint64),
                         rng.STREAM_PIECE, fw, k0, k1)
        ab = np.divide(weight[lo:hi], np.take(div, source[lo:hi]), out=a[lo:hi])
        zi = np.multiply(z[:channels], np.sqrt(ab))           # sqrt(a_i) z, float64
        t0 = int(target[lo])
        tl = target[lo:hi] - t0
        m = int(target[hi - 1]) - t0 + 1
        for c in range(channels):
            G[c, t0:t0 + m] = np.bincount(tl, zi[c], minlength=m)
        np.multiply(zi, T_SCALE, out=zi)
        fixed = np.rint(zi, out=zi)                           # Z_i in 2^-40 units
        src = source[lo:hi]
        s0, s1 = int(src.min()), int(src.max()) + 1
        if not exact or s1 - s0 > 4 * b + WIDE_MIN:
            wide.append((src, fixed))
            return
        sl = src - s0
        part = np.stack([np.bincount(sl, fixed[c], minlength=s1 - s0)
                         for c in range(channels)])
        with lock:
            T[:, s0:s1] += part

    _map(draw, blocks)
    for src, fixed in wide:
        for c in range(channels):
            if exact:
                T[c] += np.bincount(src, fixed[c], minlength=n_source)
            else:
                np.add.at(T[c], src, fixed[c].astype(np.int64))
    del wide
    if T.dtype != np.float64:
        T = T.astype(np.float64)                # what T / T_SCALE converts it to
    rng.parallel_blocks(n_source, lambda lo, hi: np.divide(T[:, lo:hi], T_SCALE,
                                                           out=T[:, lo:hi]), block=1 << 16)
    D = remainders_fused(prior, T, S, normalise_all, seed, frame)

    out = np.empty((n_target, channels), np.float64)
    A = np.zeros(n_target, np.float64)

    def gather_block(lo, hi):
        t0 = int(target[lo])
        tl = target[lo:hi] - t0
        m = int(target[hi - 1]) - t0 + 1
        Ab = np.bincount(tl, a[lo:hi], minlength=m)
        A[t0:t0 + m] = Ab
        src = source[lo:hi]
        ab = a[lo:hi]
        has = Ab > 0
        every = bool(has.all())
        ob = out[t0:t0 + m]
        with np.errstate(divide="ignore", invalid="ignore"):   # A = 0: fresh noise below
            inv = 1.0 / np.sqrt(Ab)
            for c in range(channels):
                acc = np.bincount(tl, ab * np.take(D[c], src), minlength=m)
                acc = G[c, t0:t0 + m] + acc
                acc *= inv
                if every:
                    ob[:, c] = acc
                else:
                    ob[has, c] = acc[has]

    _map(gather_block, blocks)
    fresh = np.nonzero(~(A > 0))[0]
    if fresh.size:
        out[fresh] = rng.normals_cm(fresh, 0, rng.STREAM_FRESH, channels, frame, seed).T
    return out


def remainders_fused(prior, T, S, normalise_all, seed, frame):
    """``remainders`` for ``prior`` ``(n_source, C)``, turning ``T`` into D in place."""
    channels = T.shape[0]
    used = S > 0
    Dk = k = None
    if not normalise_all:
        # Only sources not wholly claimed have a remainder to draw.
        rest = np.where(used, np.maximum(1.0 - S / np.maximum(S, 1.0), 0.0), 0.0)
        k = np.nonzero(rest >= REST_EPS)[0]
        if k.size:
            zr = rng.normals_cm(k, 0xFFFFFFFF, rng.STREAM_REMAINDER, channels, frame, seed)
            Dk = prior[k].T - (T[:, k] + np.sqrt(rest[k]) * zr)
    unused = ~used

    def block(lo, hi):
        Tb = T[:, lo:hi]
        np.subtract(prior[lo:hi].T, Tb, out=Tb)
        np.copyto(Tb, 0.0, where=unused[lo:hi])

    rng.parallel_blocks(T.shape[1], block, block=1 << 16)
    if Dk is not None:
        T[:, k] = Dk
    return T


# The key the bridge kernels take by value (struct BridgeKey of bridge.cuh).
KEY_FIELDS = [("k0", "<u4"), ("k1", "<u4"), ("frame", "<u4"), ("channels", "<i4"),
              ("normalise_all", "<i4")]
# Relative cost of one target-channel of each geometry, for the launch split
# (cuda.launch): about the pieces a target has times the work to find one.
GEOMETRY_COST = {"grid2d": 8, "particle2d": 2, "grid3d": 64, "particle3d": 4}
# Piece-cache slots per target (bridge.cuh, PieceCache): pass 1 keeps up to this many
# pieces of each target (12 bytes each) so that passes 2 and 4 need not walk its
# geometry again. Only where the geometry costs more than reading them back.
CACHE_SLOTS = {"grid2d": 8, "grid3d": 8}


def bridge_cupy(cu_file, prefix, geom_args, prior, n_target, normalise_all, seed, frame):
    """The same four passes on the GPU, launching ``PREFIX_*`` kernels of ``cu_file``.

    ``geom_args``: the geometry's kernel arguments (GEOM_ARGS in the .cu file);
    ``prior``: CuPy ``(n_source, C)`` float32. Returns CuPy ``(n_target, C)`` float32.
    """
    import cupy
    from .cuda import launch, struct

    n_source, channels = prior.shape
    k0, k1 = rng.seed_key(seed)
    key = struct(KEY_FIELDS, (k0, k1, rng.frame_word(frame), channels, int(normalise_all)))
    S = cupy.zeros(n_source, dtype=cupy.uint64)
    T = cupy.zeros((n_source, channels), dtype=cupy.uint64)  # becomes D in place
    G = cupy.empty((n_target, channels), dtype=cupy.float64)  # every entry written in pass 2
    out = cupy.empty((n_target, channels), dtype=cupy.float32)
    cost = GEOMETRY_COST.get(prefix, 64)
    slots = CACHE_SLOTS.get(prefix, 0) if n_source < 2 ** 32 else 0
    if slots:
        cache = (cupy.empty(n_target, dtype=cupy.int32),
                 cupy.empty((slots, n_target), dtype=cupy.uint32),
                 cupy.empty((slots, n_target), dtype=cupy.float64), np.int32(slots))
    else:
        cache = (None, None, None, np.int32(0))   # null pointers: no cache
    launch(cu_file, f"{prefix}_sum_weights", n_target, geom_args + cache + (S,), cost=cost)
    launch(cu_file, f"{prefix}_sum_pieces", n_target, geom_args + cache + (S, T, G, key),
           cost=cost * channels)
    launch(cu_file, f"{prefix}_remainder", n_source, (prior, S, T, key), cost=channels)
    launch(cu_file, f"{prefix}_gather", n_target, geom_args + cache + (S, T, G, out, key),
           cost=cost * channels)
    return out
