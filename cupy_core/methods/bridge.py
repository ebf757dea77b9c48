"""Sampling the pieces (DESIGN.md 4.2, 4.3): the NumPy path of the four bridge passes.

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
"""
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


def bridge_numpy(prior, target, source, weight, n_target, normalise_all, seed, frame):
    """The whole bridge on the CPU. ``prior``: ``(n_source, C)``; returns ``(n_target, C)``."""
    prior = np.ascontiguousarray(prior.T, dtype=np.float64)
    channels, n_source = prior.shape
    S = sum_weights(source, weight, n_source)
    a = scaled_areas(source, weight, S, normalise_all)
    Z = piece_draws(target, source, a, channels, seed, frame)
    T = sum_pieces(source, Z, n_source)
    G = target_sums(target, Z, n_target)
    del Z
    D = remainders(prior, T, S, normalise_all, seed, frame)
    return gather(target, source, a, G, D, n_target, channels, seed, frame).T


# The key the bridge kernels take by value (struct BridgeKey of bridge.cuh).
KEY_FIELDS = [("k0", "<u4"), ("k1", "<u4"), ("frame", "<u4"), ("channels", "<i4"),
              ("normalise_all", "<i4")]
# Relative cost of one target-channel of each geometry, for the launch split
# (cuda.launch): about the pieces a target has times the work to find one.
GEOMETRY_COST = {"grid2d": 8, "particle2d": 2, "grid3d": 64, "particle3d": 4}


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
    launch(cu_file, f"{prefix}_sum_weights", n_target, geom_args + (S,), cost=cost)
    launch(cu_file, f"{prefix}_sum_pieces", n_target, geom_args + (S, T, G, key),
           cost=cost * channels)
    launch(cu_file, f"{prefix}_remainder", n_source, (prior, S, T, key), cost=channels)
    launch(cu_file, f"{prefix}_gather", n_target, geom_args + (S, T, G, out, key),
           cost=cost * channels)
    return out
