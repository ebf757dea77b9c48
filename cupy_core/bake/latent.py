"""Downsampling white noise to latent resolution (docs/DESIGN.md 7)."""
import numpy as np

from ..conventions import array_module


def downsample(noise, factor):
    """Sum ``factor``-sized blocks and divide by sqrt(block size): white noise stays
    white N(0, 1). Trailing rows/columns that do not fill a block are dropped, as
    latent encoders do (``H // factor``)."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    factor = int(factor)
    if noise.ndim not in (3, 4):
        raise ValueError(f"noise must be (H, W, C) or (D, H, W, C), got shape {tuple(noise.shape)}")
    xp = array_module(noise)
    if factor == 1:
        return noise.astype(xp.float32)
    spatial = noise.shape[:-1]
    small = tuple(s // factor for s in spatial)
    if min(small) < 1:
        raise ValueError(f"factor {factor} is larger than the noise's spatial shape {spatial}")
    crop = noise[tuple(slice(0, s * factor) for s in small)].astype(xp.float64)
    split = []
    for s in small:
        split += [s, factor]
    blocks = crop.reshape(tuple(split) + (noise.shape[-1],))
    summed = blocks.sum(axis=tuple(range(1, 2 * len(small), 2)))
    return (summed / np.sqrt(factor ** len(small))).astype(xp.float32)
