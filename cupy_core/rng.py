"""Counter-based standard normals: Philox4x32-10 with Box-Muller (DESIGN.md 6).

This is the NumPy twin of ``philox.cuh``. A draw is addressed by a counter
``(c0, c1, stream << 24 | channel // 4, frame)`` under the key ``(seed_lo, seed_hi)``,
so any draw can be recomputed anywhere, in any order, on the CPU or the GPU.
The counter words mean:

* ``c0, c1``: which cell or piece (for a piece: target index, source index),
* ``stream``: what the draw is for (white noise, piece, remainder, fresh),
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


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on arrays of uint32 counters (broadcast); returns four uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & MASK32 for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for _ in range(10):
        p0 = M0 * c0
        p1 = M1 * c2
        n0 = (p1 >> SHIFT32) ^ c1 ^ np.uint64(k0)
        n2 = (p0 >> SHIFT32) ^ c3 ^ np.uint64(k1)
        c0, c1, c2, c3 = n0, p1 & MASK32, n2, p0 & MASK32
        k0 = (k0 + W0) & 0xFFFFFFFF
        k1 = (k1 + W1) & 0xFFFFFFFF
    return (c0.astype(np.uint32), c1.astype(np.uint32),
            c2.astype(np.uint32), c3.astype(np.uint32))


def _box_muller(a, b):
    u1 = (a.astype(np.float64) + 1.0) * TWO_M32
    u2 = b.astype(np.float64) * TWO_M32
    rad = np.sqrt(-2.0 * np.log(u1))
    angle = TWO_PI * u2
    return rad * np.cos(angle), rad * np.sin(angle)


def normals(c0, c1, stream, channels, frame, seed):
    """Standard normals for draws ``(c0[i], c1[i])``: float64 array ``(N, channels)``.

    Column ``ch`` is the same number that ``normal_at`` / ``normals4`` give in CUDA.
    """
    c0 = np.asarray(c0, dtype=np.uint64).reshape(-1)
    c1 = np.broadcast_to(np.asarray(c1, dtype=np.uint64), c0.shape)
    k0, k1 = seed_key(seed)
    fw = frame_word(frame)
    groups = (channels + 3) // 4
    out = np.empty((c0.size, groups * 4), dtype=np.float64)
    for g in range(groups):
        r0, r1, r2, r3 = philox4x32_10(c0, c1, (int(stream) << 24) | g, fw, k0, k1)
        out[:, 4 * g], out[:, 4 * g + 1] = _box_muller(r0, r1)
        out[:, 4 * g + 2], out[:, 4 * g + 3] = _box_muller(r2, r3)
    return out[:, :channels]
