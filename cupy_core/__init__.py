"""Infinite-resolution integral noise warping (Deng et al. 2024) on CPU and GPU.

The public API of docs/DESIGN.md 8, and nothing else.
"""
from .bake.latent import downsample
from .warp import NoiseWarper, partition_record, warp
from .methods.white import white_noise

__version__ = "0.1.0"
__all__ = ["warp", "partition_record", "white_noise", "NoiseWarper", "downsample",
           "load_latents", "__version__"]


def load_latents(folder, pipeline=None, *, dtype=None, device=None):
    """A bake folder's model latents as a torch tensor, checked against a diffusers
    ``pipeline`` if given (``cupy_core.targets.load``; needs the ``models`` extra).
    torch is imported only when this is called."""
    from .targets.load import load_latents as _load
    return _load(folder, pipeline, dtype=dtype, device=device)
