"""Counter-based standard normals: Philox4x32-10 with Box-Muller (docs/DESIGN.md 6).

This is the NumPy twin of ``philox.cuh``. A draw is addressed by a counter
``(c0, c1, stream << 24 | channel // 4, frame)`` under the key ``(seed_lo, seed_hi)``,
so any draw can be recomputed anywhere, in any order, on the CPU or the GPU.
The counter words mean:

* ``c0, c1``: which cell or piece (for a piece: target index, source index),
* ``stream``: what the draw is for (white noise, piece, remainder, fresh, sub-pixel),
* ``channel // 4``: one Philox block gives four normals, channels 4g..4g+3,
* ``frame``: the frame being made.
"""
import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)

STREAM_WHITE = 1
STREAM_PIECE = 2
STREAM_REMAINDER = 3
STREAM_FRESH = 4
STREAM_SUBPIXEL = 5   # the upsampling baseline's sub-pixels (upsample.py)

# The version of the noise generator: which numbers a (seed, frame, cell) gives. Bump it
# whenever the counters, the Philox rounds or the normal transform change; a bake
# records it (bake.json, ``noise_generator``) and refuses to resume one made by another.
# 1: float64 Box-Muller with the libm's log/sin/cos (before 2026-11).
# 2: float32 Box-Muller with the project's own log and sin/cos (below).
# 3: the same normals; the grid variant's areas from the per-column form of Green's
#    theorem (grid2d.py edge_columns/edge_row) and its pieces columns outer, rows inner
#    (other bits of the grid noise; particle unchanged).
GENERATOR_VERSION = 3

# The float32 transform (normals4 in philox.cuh does the same operations in the same
# order). Only + - * / and sqrt on IEEE float32, plus exact integer and bit operations,
# so every IEEE machine gives the same bits: NumPy here, CUDA (--fmad=false), g++
# (-ffp-contract=off). Constants are float32 values.
F = np.float32
TWO_M32_F = F(2.0 ** -32)
TWO_M29_F = F(2.0 ** -29)
PI_4_F = F(0.7853981633974483)
LN2_HI_F = F(0.693145751953125)        # 0x3F317200: e * LN2_HI is exact for |e| < 2^8
LN2_LO_F = F(1.4286068203094172e-06)
# ln(m) = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.1716: odd series to f^9
# (truncation < 1e-9, far below float32's 6e-8).
LOG_C = tuple(F(1.0 / k) for k in (3, 5, 7, 9))
# sin, cos on [0, pi/4]: Taylor series to x^9 and x^10 (truncation < 2e-9).
SIN_C = tuple(F(v) for v in (-1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880))
COS_C = tuple(F(v) for v in (-0.5, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800))
# The largest |z| the transform reaches: u1 >= 2^-33, so the radius is at most
# sqrt(-2 ln 2^-33) = sqrt(66 ln 2) (the exact float32 value: ``max_abs_normal()``).
U1_MIN = 2.0 ** -33

def seed_key(seed):
    """Split a user seed (any int that fits in 64 bits) into Philox's two key words."""
    seed = int(seed)
    if not -(2 ** 63) <= seed < 2 ** 64:
        raise ValueError(f"seed must fit in 64 bits, got {seed}")
    seed &= 0xFFFFFFFFFFFFFFFF
    return seed & 0xFFFFFFFF, seed >> 32


def frame_word(frame):
    """Frames may be negative in Blender; the counter takes them modulo 2^32."""
    return int(frame) & 0xFFFFFFFF


# Elements per block: per task of the thread pool, and per pass of Philox's rounds and
# of the normal transform. Smaller passes keep the temporaries in the first caches and
# run faster on one thread, but every NumPy call releases and retakes the GIL, and with
# two threads those hand-overs cost more than the cache saves: passes of 8192 took 1.6x
# the time of 32768 for a 1024 x 1024 x 4 particle frame on 2 cores (65536 and 131072:
# no better than 32768).
BLOCK = 1 << 15


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on arrays of uint32 counters (broadcast); returns four uint32 arrays.

    When ``c2`` and ``c3`` are scalars (every draw of this package: stream and channel
    group, frame), the first round's products of them are scalars too and round 1 and
    the first half of round 2 take fewer array operations (same numbers)."""
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    scalar23 = np.ndim(c2) == 0 and np.ndim(c3) == 0
    if scalar23:
        s2, s3 = int(c2) & 0xFFFFFFFF, int(c3) & 0xFFFFFFFF
        c = np.broadcast_arrays(*(np.asarray(v, dtype=np.uint64) & MASK32 for v in (c0, c1)))
    else:
        c = np.broadcast_arrays(*(np.asarray(v, dtype=np.uint64) & MASK32
                                  for v in (c0, c1, c2, c3)))
    shape = c[0].shape
    c = [v.reshape(-1) for v in c]
    n = c[0].size
    out = [np.empty(n, np.uint32) for _ in range(4)]
    m = min(n, BLOCK)
    x0, x1, x2, x3, p0, p1 = (np.empty(m, np.uint64) for _ in range(6))
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        b = hi - lo
        a0, a1, a2, a3, q0, q1 = x0[:b], x1[:b], x2[:b], x3[:b], p0[:b], p1[:b]
        r0, r1 = k0, k1
        rounds = 10
        if scalar23:
            # Round 1: M1 c2 is a scalar, so new c1 is one; M0 c0 an array.
            prod = int(M1) * s2
            np.multiply(c[0][lo:hi], M0, out=q0)
            np.bitwise_xor(c[1][lo:hi], np.uint64((prod >> 32) ^ r0), out=a0)
            np.right_shift(q0, SHIFT32, out=a2)
            np.bitwise_xor(a2, np.uint64(s3 ^ r1), out=a2)
            np.bitwise_and(q0, MASK32, out=a3)
            lo1 = prod & 0xFFFFFFFF
            r0 = (r0 + W0) & 0xFFFFFFFF
            r1 = (r1 + W1) & 0xFFFFFFFF
            # Round 2 with the scalar c1.
            np.multiply(a0, M0, out=q0)
            np.multiply(a2, M1, out=q1)
            np.right_shift(q1, SHIFT32, out=a0)
            np.bitwise_xor(a0, np.uint64(lo1 ^ r0), out=a0)
            np.bitwise_and(q1, MASK32, out=a1)
            np.right_shift(q0, SHIFT32, out=a2)
            np.bitwise_xor(a2, a3, out=a2)
            np.bitwise_xor(a2, np.uint64(r1), out=a2)
            np.bitwise_and(q0, MASK32, out=a3)
            r0 = (r0 + W0) & 0xFFFFFFFF
            r1 = (r1 + W1) & 0xFFFFFFFF
            rounds = 8
        else:
            a0[...] = c[0][lo:hi]; a1[...] = c[1][lo:hi]
            a2[...] = c[2][lo:hi]; a3[...] = c[3][lo:hi]
        for _ in range(rounds):
            np.multiply(a0, M0, out=q0)
            np.multiply(a2, M1, out=q1)
            np.right_shift(q1, SHIFT32, out=a0)       # new c0 = hi(M1 c2) ^ c1 ^ k0
            np.bitwise_xor(a0, a1, out=a0)
            np.bitwise_xor(a0, np.uint64(r0), out=a0)
            np.bitwise_and(q1, MASK32, out=a1)        # new c1 = lo(M1 c2)
            np.right_shift(q0, SHIFT32, out=a2)       # new c2 = hi(M0 c0) ^ c3 ^ k1
            np.bitwise_xor(a2, a3, out=a2)
            np.bitwise_xor(a2, np.uint64(r1), out=a2)
            np.bitwise_and(q0, MASK32, out=a3)        # new c3 = lo(M0 c0)
            r0 = (r0 + W0) & 0xFFFFFFFF
            r1 = (r1 + W1) & 0xFFFFFFFF
        out[0][lo:hi] = a0; out[1][lo:hi] = a1; out[2][lo:hi] = a2; out[3][lo:hi] = a3
    return tuple(o.reshape(shape) for o in out)


def ln_f32(u):
    """Natural log of float32 ``u > 0`` (normal numbers), as ``ln_f32`` in philox.cuh:
    ``u = m 2^e`` with ``m`` in [0x3F3504F3, 0x3FB504F2] (about [sqrt(1/2), sqrt(2)))
    from the bits, then
    ``e ln 2 + 2 atanh((m - 1) / (m + 1))``. Float32 in, float32 out."""
    u = np.asarray(u, F)
    # Integer steps only (musl's logf reduction): shifting the bits by
    # 0x3F800000 - 0x3F3504F3 moves the exponent boundary to m = sqrt(1/2).
    ix = u.view(np.uint32) + np.uint32(0x004AFB0D)
    e = (ix >> np.uint32(23)).view(np.int32) - np.int32(127)
    m = ((ix & np.uint32(0x007FFFFF)) + np.uint32(0x3F3504F3)).view(F)
    f = (m - F(1.0)) / (m + F(1.0))
    f2 = f * f
    p = f2 * (LOG_C[0] + f2 * (LOG_C[1] + f2 * (LOG_C[2] + f2 * LOG_C[3])))
    lnm = F(2.0) * (f + f * p)
    ef = e.astype(F)
    return ef * LN2_HI_F + (ef * LN2_LO_F + lnm)


def sincos_turn_f32(b):
    """``(cos, sin)`` of ``2 pi b / 2^32`` for uint32 words ``b``, float32, as
    ``sincos_turn_f32`` in philox.cuh: ``b + 2^29`` (mod 2^32) splits, in integers and
    exactly, into a quadrant (top 2 bits) and ``theta`` in [-pi/4, pi/4) (the other 30,
    less 2^29); Taylor series of sin and cos on that interval, then the quadrant's
    swap and signs (sign-bit flips)."""
    b = np.asarray(b).astype(np.uint32, copy=False) + np.uint32(0x20000000)
    q = b >> np.uint32(30)
    low = (b & np.uint32(0x3FFFFFFF)).view(np.int32) - np.int32(0x20000000)
    x = (low.astype(F) * TWO_M29_F) * PI_4_F
    x2 = x * x
    s = x + x * (x2 * (SIN_C[0] + x2 * (SIN_C[1] + x2 * (SIN_C[2] + x2 * SIN_C[3]))))
    c = F(1.0) + x2 * (COS_C[0] + x2 * (COS_C[1] + x2 * (COS_C[2] + x2 * (COS_C[3] + x2 * COS_C[4]))))
    # Quadrants 1, 3 swap sin and cos: a bit select (no data-dependent branch).
    cb, sb = c.view(np.uint32), s.view(np.uint32)
    d = cb ^ sb
    d &= np.uint32(0) - (q & np.uint32(1))
    cos = (cb ^ d).view(F)
    sin = (sb ^ d).view(F)
    # Negate (flip the sign bit): cos in quadrants 1, 2; sin in quadrants 2, 3.
    cos.view(np.uint32)[...] ^= ((q + np.uint32(1)) & np.uint32(2)) << np.uint32(30)
    sin.view(np.uint32)[...] ^= (q & np.uint32(2)) << np.uint32(30)
    return cos, sin


def box_muller_f32(a, b):
    """Two float32 standard normals from two uint32 words (philox.cuh's
    ``box_muller_f32``): ``u1 = (a + 1/2) 2^-32`` in (0, 1], radius ``sqrt(-2 ln u1)``,
    angle ``2 pi b 2^-32``."""
    u1 = (np.asarray(a).astype(F) + F(0.5)) * TWO_M32_F
    rad = np.sqrt(F(-2.0) * ln_f32(u1))
    cos, sin = sincos_turn_f32(b)
    return rad * cos, rad * sin


_MAX_ABS = []


def max_abs_normal():
    """The largest |z| the transform can give (a = 0, b = 0: u1 = 2^-33, angle 0)."""
    if not _MAX_ABS:
        z0, _ = box_muller_f32(np.zeros(1, np.uint32), np.zeros(1, np.uint32))
        _MAX_ABS.append(float(z0[0]))
    return _MAX_ABS[0]


def normals_into(out, c0, c1, stream, fw, k0, k1):
    """Fill ``out`` (float32 ``(4 groups, N)``) with the normals of draws ``(c0, c1)``
    (uint64 ``(N,)``) for ``frame_word`` ``fw`` and key ``(k0, k1)``, a pass of
    ``BLOCK`` draws at a time (the work of one task; ``normals_cm`` shares them out)."""
    groups = out.shape[0] // 4
    for lo in range(0, c0.size, BLOCK):
        hi = min(c0.size, lo + BLOCK)
        for g in range(groups):
            r0, r1, r2, r3 = philox4x32_10(c0[lo:hi], c1[lo:hi], (int(stream) << 24) | g,
                                           fw, k0, k1)
            out[4 * g, lo:hi], out[4 * g + 1, lo:hi] = box_muller_f32(r0, r1)
            out[4 * g + 2, lo:hi], out[4 * g + 3, lo:hi] = box_muller_f32(r2, r3)


# Draws above this many are split over a pool of threads (NumPy releases the GIL in its
# loops; the numbers do not depend on the split). None: one thread per core, at most 8.
THREADS = None
PARALLEL_MIN = 1 << 16
_pool = None


def pool():
    """The thread pool shared by the CPU path (rng, bridge)."""
    global _pool
    if _pool is None:
        import os
        from concurrent.futures import ThreadPoolExecutor
        n = THREADS or min(8, os.cpu_count() or 1)
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cupy_core")
    return _pool


def parallel_blocks(n, fn, block=BLOCK):
    """Run ``fn(lo, hi)`` over ``[0, n)`` in blocks, on the pool when ``n`` is large."""
    spans = [(lo, min(n, lo + block)) for lo in range(0, n, block)]
    if n < PARALLEL_MIN or len(spans) < 2:
        for lo, hi in spans:
            fn(lo, hi)
        return
    for f in [pool().submit(fn, lo, hi) for lo, hi in spans]:
        f.result()


def concatenate(arrays):
    """``np.concatenate`` of 1-D arrays, the copies shared out over the pool when large
    (a frame's partition record is some 100 MB: a serial copy would idle the others)."""
    total = sum(a.size for a in arrays)
    if total < PARALLEL_MIN or len(arrays) < 2:
        return np.concatenate(arrays)
    out = np.empty(total, np.result_type(*arrays))
    at = np.cumsum([0] + [a.size for a in arrays])

    def copy(i):
        out[at[i]:at[i + 1]] = arrays[i]

    list(pool().map(copy, range(len(arrays))))
    return out


def normals_cm(c0, c1, stream, channels, frame, seed):
    """Standard normals for draws ``(c0[i], c1[i])``, channel-major: float32
    ``(channels, N)``.

    Row ``ch`` holds the numbers that ``normals4`` gives in CUDA for channel group
    ``ch // 4``. Worked through in blocks (on a thread pool for large N) so the
    temporaries stay in cache.
    """
    c0 = np.asarray(c0, dtype=np.uint64).reshape(-1)
    c1 = np.broadcast_to(np.asarray(c1, dtype=np.uint64), c0.shape)
    k0, k1 = seed_key(seed)
    fw = frame_word(frame)
    groups = (channels + 3) // 4
    out = np.empty((groups * 4, c0.size), dtype=F)

    def run(lo, hi):
        normals_into(out[:, lo:hi], c0[lo:hi], c1[lo:hi], stream, fw, k0, k1)

    parallel_blocks(c0.size, run)
    return out[:channels]


def normals(c0, c1, stream, channels, frame, seed):
    """Like ``normals_cm`` but ``(N, channels)``."""
    return normals_cm(c0, c1, stream, channels, frame, seed).T
