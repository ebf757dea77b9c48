"""Counter-based standard normals: Philox4x32-10 with Box-Muller (DESIGN.md 6).

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

TWO_M32 = 2.0 ** -32
TWO_PI = 6.283185307179586


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


# Elements per block of the vectorised rounds: small enough that the working arrays
# stay in cache, large enough that NumPy's per-call overhead does not matter.
BLOCK = 1 << 15


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on arrays of uint32 counters (broadcast); returns four uint32 arrays."""
    c = np.broadcast_arrays(*(np.asarray(v, dtype=np.uint64) & MASK32 for v in (c0, c1, c2, c3)))
    shape = c[0].shape
    c = [v.reshape(-1) for v in c]
    n = c[0].size
    out = [np.empty(n, np.uint32) for _ in range(4)]
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    m = min(n, BLOCK)
    x0, x1, x2, x3, p0, p1 = (np.empty(m, np.uint64) for _ in range(6))
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        b = hi - lo
        a0, a1, a2, a3, q0, q1 = x0[:b], x1[:b], x2[:b], x3[:b], p0[:b], p1[:b]
        a0[...] = c[0][lo:hi]; a1[...] = c[1][lo:hi]; a2[...] = c[2][lo:hi]; a3[...] = c[3][lo:hi]
        r0, r1 = k0, k1
        for _ in range(10):
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


def _box_muller(a, b, out_cos, out_sin):
    """Two normals from two uint32 words: ``u1`` in (0, 1] keeps the log finite."""
    u1 = (a.astype(np.float64) + 1.0) * TWO_M32
    angle = TWO_PI * (b.astype(np.float64) * TWO_M32)   # as in philox.cuh
    rad = np.sqrt(-2.0 * np.log(u1))
    np.multiply(rad, np.cos(angle), out=out_cos)
    np.multiply(rad, np.sin(angle), out=out_sin)


def normals_cm(c0, c1, stream, channels, frame, seed):
    """Standard normals for draws ``(c0[i], c1[i])``, channel-major: ``(channels, N)``.

    Row ``ch`` holds the numbers that ``normals4`` gives in CUDA for channel group
    ``ch // 4``. Worked through in blocks so the temporaries stay in cache.
    """
    c0 = np.asarray(c0, dtype=np.uint64).reshape(-1)
    c1 = np.broadcast_to(np.asarray(c1, dtype=np.uint64), c0.shape)
    k0, k1 = seed_key(seed)
    fw = frame_word(frame)
    groups = (channels + 3) // 4
    out = np.empty((groups * 4, c0.size), dtype=np.float64)
    for lo in range(0, c0.size, BLOCK):
        hi = min(c0.size, lo + BLOCK)
        for g in range(groups):
            r0, r1, r2, r3 = philox4x32_10(c0[lo:hi], c1[lo:hi], (int(stream) << 24) | g, fw, k0, k1)
            _box_muller(r0, r1, out[4 * g, lo:hi], out[4 * g + 1, lo:hi])
            _box_muller(r2, r3, out[4 * g + 2, lo:hi], out[4 * g + 3, lo:hi])
    return out[:channels]


def normals(c0, c1, stream, channels, frame, seed):
    """Like ``normals_cm`` but ``(N, channels)``."""
    return normals_cm(c0, c1, stream, channels, frame, seed).T
