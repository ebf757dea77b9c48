"""Screen-to-texture maps for the "surface" source, and the Cycles UV pass.

* ``uv_maps_at(scene, frame, shape, texture_size, objects)``: rasterised at pixel
  corners from the evaluated meshes (``readers.geometry``; exact corners, no render);
  this is what the bake uses.
* ``uv_pass_positions(U, V, A, texture_size)``: the same map at pixel centres from a
  Cycles UV pass (BLENDER_FACTS 2: ``U/A``, ``V/A`` where the coverage A > 0, v up, so
  ``y = (1 - v) N`` for top-row-first textures); pixels not fully covered (A < 1) are
  NaN. The pass has no object index, so every object maps to tile 0; it serves as a
  check of the rasteriser against the renderer.
"""
import numpy as np

from cupy_core.surface import uv_positions, uv_to_texture

from .geometry import scene_camera, scene_mesh

FULL_COVERAGE = 0.999


def uv_maps_at(scene, frame, shape, texture_size, objects=None):
    """``(corners (H+1, W+1, 2), valid (H, W))`` of ``frame`` (see module doc)."""
    mesh, _ = scene_mesh(scene, frame, objects)
    cam = scene_camera(scene, shape[1], shape[0])
    return uv_positions(mesh, cam, texture_size)


def uv_pass_positions(u, v, a, texture_size):
    """Texture positions at pixel centres ``(H, W, 2)`` from the UV pass channels
    (rows top first), NaN where coverage is below full."""
    u, v, a = (np.asarray(c, dtype=np.float64) for c in (u, v, a))
    full = a >= FULL_COVERAGE
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([u / a, v / a], axis=-1)
    uv[~full] = np.nan
    return uv_to_texture(uv, texture_size)
