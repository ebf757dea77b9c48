"""The surface and geometry bakes, on top of ``cupy_core.bake.loop``:

* ``bake_surface_sequence``: every frame is transported from the fixed texture noise
  (``maps.surface_noise``), not chained: frame i depends only on its own
  screen-to-texture map, so a frame seen twice from the same view is the same noise;
* ``bake_geometry_sequence``: screen-space noise warped frame to frame (chained, as
  the flow bakes) by the geometric backward maps at pixel corners.
"""
import numpy as np

from ..bake.loop import bake_flow_sequence, bake_frames
from .maps import BACKGROUND_RULES, surface_noise, texture_noise

__all__ = ["bake_surface_sequence", "bake_geometry_sequence"]


def bake_surface_sequence(uv_maps, out_dir, *, shape, frame_count, texture_size, tiles=1,
                          method="grid", seed=0, channels=4, latent_factor=1,
                          first_frame=0, background="fresh", source=None, progress=True,
                          preview=False, resume=True, xp=None, on_frame=None, target=None,
                          inputs=None, sidecars=(), max_memory=None):
    """Bake surface noise. ``uv_maps[i]`` (a sequence, computed when asked) is frame
    ``first_frame + i``'s ``(corners (H+1, W+1, 2), valid (H, W))`` from
    ``maps.uv_positions`` (or the ray-casting twin); the texture is
    ``texture_noise(texture_size, channels, seed=seed, tiles=tiles)``. ``on_frame``
    ``target``, ``inputs``, ``sidecars`` and ``max_memory`` as in
    ``cupy_core.bake.loop.bake_chain``."""
    if background not in BACKGROUND_RULES:
        raise ValueError(f"background must be one of {BACKGROUND_RULES}, got {background!r}")
    if method not in ("grid", "particle"):
        raise ValueError(f"method must be 'grid' or 'particle', got {method!r}")
    xp = np if xp is None else xp
    state = {}

    def make(i):
        if "texture" not in state:
            state["texture"] = texture_noise(texture_size, channels, seed=seed, tiles=tiles,
                                             xp=xp)
        corners, valid = uv_maps[i]
        return surface_noise(state["texture"], xp.asarray(corners), np.asarray(valid),
                             method=method, seed=seed, frame=first_frame + i,
                             background=background)

    params = {"kind": "surface", "method": method, "seed": seed,
              "texture_size": int(texture_size), "tiles": int(tiles),
              "background": background, "at": "corners"}
    return bake_frames(make, out_dir, frame_count=frame_count, shape=shape,
                       channels=channels, latent_factor=latent_factor,
                       first_frame=first_frame, source=source, params=params,
                       progress=progress, preview=preview, resume=resume, xp=xp,
                       on_frame=on_frame, target=target, inputs=inputs,
                       sidecars=sidecars, max_memory=max_memory)


def bake_geometry_sequence(positions, out_dir, *, shape, method="grid", seed=0, channels=4,
                           latent_factor=1, first_frame=0, source=None, progress=True,
                           preview=False, resume=True, xp=None, on_frame=None,
                           target=None, inputs=None, sidecars=(), max_memory=None):
    """Bake screen-space noise chained through ``positions[t]`` (frame
    ``first_frame + t + 1``'s backward map at pixel corners, ``(H+1, W+1, 2)``, from
    ``maps.geometry_positions``); ``on_frame`` and ``target`` as in
    ``cupy_core.bake.loop.bake_chain``."""
    return bake_flow_sequence(positions, out_dir, method=method, seed=seed,
                              channels=channels, latent_factor=latent_factor, at="corners",
                              shape=shape, first_frame=first_frame, source=source,
                              progress=progress, preview=preview, resume=resume, xp=xp,
                              on_frame=on_frame, target=target, inputs=inputs,
                       sidecars=sidecars, max_memory=max_memory)
