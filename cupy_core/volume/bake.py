"""The chained 3-D bake (docs/DESIGN.md 9 for volumes): frame ``first_frame`` is white
noise ``(D, H, W, C)``, each later frame the warp of the one before by the backward
positions at voxel corners. Files, each written atomically: ``noise_XXXX.npy``
``(D, H, W, C)`` float32 per frame, ``latents.npy`` ``(F, D//f, H//f, W//f, C)``, and
``bake.json`` ("in progress" until the end). A rerun with the same parameters resumes
after the last whole frame; other parameters raise ``BakeMismatchError``. An error in
the positions of a frame (a missing or malformed velocity frame) stops the bake with
every frame written so far kept, whole, for a resume.

``on_frame(frame, noise)`` (optional) is called for every frame of the bake, resumed
ones included, after its ``.npy`` is on disk: the add-on writes its OpenVDB files there.
"""
import numpy as np

from ..bake.loop import bake_chain
from ..warp import warp_chained

__all__ = ["bake_volume_sequence"]


def bake_volume_sequence(positions, out_dir, *, shape, method="grid", seed=0, channels=4,
                         latent_factor=1, first_frame=0, source=None, resume=True, xp=None,
                         on_frame=None, warp_options=None, inputs=None, sidecars=(),
                         max_memory=None):
    """Bake ``len(positions) + 1`` frames; ``positions[t]`` is the ``(D+1, H+1, W+1, 3)``
    backward map (voxel corners, ``(x, y, z)``) making frame ``first_frame + t + 1``,
    asked for only when that frame is baked. ``shape`` is ``(D, H, W)``. The frame loop,
    resume and files are ``cupy_core.bake.loop``'s; ``inputs`` (the velocity files'
    fingerprint: ``cupy_core.bake.fingerprint.hash_files``), ``sidecars`` (``("vdb",)``)
    and ``max_memory`` as in ``bake_chain``."""
    import cupy_core

    xp = np if xp is None else xp
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (D, H, W), got {shape}")
    if min(shape) < 1:
        raise ValueError(f"the volume is {'x'.join(map(str, shape))} voxels: the domain "
                         "object has no size: use a mesh box with a size as the domain")
    channels, latent_factor, first_frame = int(channels), int(latent_factor), int(first_frame)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if not 1 <= latent_factor <= min(shape):
        raise ValueError(f"latent factor must be in 1..{min(shape)}, got {latent_factor}")
    count = len(positions)
    warp_options = dict(warp_options or {})
    corners = tuple(n + 1 for n in shape) + (3,)
    params = {
        "source": source, "method": method, "seed": int(seed), "channels": channels,
        "at": "corners", "shape": list(shape), "first_frame": first_frame,
        "frame_count": count + 1, "latent_factor": latent_factor, "dims": 3,
        "warp_options": warp_options}

    def produce(i, previous):
        if i == 0:
            return cupy_core.white_noise(shape, channels, seed=int(seed), frame=first_frame,
                                         xp=xp)
        frame = first_frame + i
        pos = positions[i - 1]
        pos = np.asarray(pos, np.float64) if xp is np else xp.asarray(pos)
        if tuple(pos.shape) != corners:
            raise ValueError(f"positions for frame {frame} have shape {tuple(pos.shape)}; "
                             f"expected {corners}")
        return warp_chained(previous, pos, method=method, seed=int(seed), frame=frame,
                            at="corners", **warp_options)

    return bake_chain(produce, out_dir, params=params, frame_count=count + 1,
                      first_frame=first_frame, noise_shape=shape + (channels,),
                      latent_factor=latent_factor, progress=False, resume=resume, xp=xp,
                      on_frame=on_frame, inputs=inputs, sidecars=sidecars,
                      max_memory=max_memory)
