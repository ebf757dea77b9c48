"""Fresh i.i.d. N(0, 1) noise, addressed by (seed, frame, cell, channel).

NumPy reference and launcher of ``white.cu``.
"""
import numpy as np

from . import rng
from .cuda import launch, u32
from ..conventions import check_cell_count


def white_noise(shape, channels, *, seed=0, frame=0, xp=np):
    """White noise of spatial ``shape`` (``(H, W)`` or ``(D, H, W)``) with ``channels``
    channels, float32 ``shape + (channels,)``; the same numbers on NumPy and CuPy."""
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (D, H, W) with positive sizes, got {shape}")
    if int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be an integer >= 1, got {channels}")
    channels = int(channels)
    check_cell_count(shape)         # the one refusal, in pixels or voxels
    n = int(np.prod(shape))
    k0, k1 = rng.seed_key(seed)
    if xp is np:
        z = rng.normals(np.arange(n, dtype=np.uint64), 0, rng.STREAM_WHITE, channels, frame, seed)
        return z.astype(np.float32).reshape(shape + (channels,))
    out = xp.empty(shape + (channels,), dtype=xp.float32)
    launch("white.cu", "white_noise", n,
           (np.int32(channels), u32(rng.frame_word(frame)), u32(k0), u32(k1), out),
           cost=channels)
    return out
