"""Infinite-resolution integral noise warping (Deng et al. 2024) on CPU and GPU.

The public API of DESIGN.md 8, and nothing else.
"""
from .bake.latent import downsample
from .warp import NoiseWarper, partition_record, warp
from .methods.white import white_noise

__version__ = "0.1.0"
__all__ = ["warp", "partition_record", "white_noise", "NoiseWarper", "downsample", "__version__"]
