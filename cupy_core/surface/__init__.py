"""Surface noise and geometric motion from triangle meshes (no Blender import).

* ``camera``: the camera JSON format, projection to our pixels (y down), rays;
* ``raster``: a NumPy z-buffer rasteriser at arbitrary sample points (pixel corners);
* ``uvmap``: UV -> texture pixel positions (tile stack), UV islands;
* ``maps``: screen-to-texture and screen-space backward maps, one frame of surface noise;
* ``meshio``: mesh sequences and ray casting with trimesh (optional dependency);
* ``bake``: the surface and geometry bakes (``python -m cupy_core surface``).
"""
from .camera import Camera, load_cameras, cameras_to_json, project, rays
from .maps import (Mesh, geometry_positions, surface_noise, texture_noise, uv_positions,
                   warp_masked)
from .uvmap import uv_islands, uv_to_texture

__all__ = ["Camera", "load_cameras", "cameras_to_json", "project", "rays", "Mesh",
           "geometry_positions", "surface_noise", "texture_noise", "uv_positions",
           "warp_masked", "uv_islands", "uv_to_texture"]
