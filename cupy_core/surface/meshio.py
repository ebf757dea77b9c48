"""The standalone route (``python -m cupy_core surface``): mesh sequences loaded with
trimesh (OBJ, PLY, glTF/GLB, anything trimesh reads), and the UV correspondence and
visibility found by casting rays through the pixel corners with trimesh's ray queries
(``trimesh.ray.ray_triangle``: pure NumPy, with an ``rtree`` index), independently of
the rasteriser the Blender add-on uses. trimesh is an optional dependency
(``pip install cupy_core[surface]``), imported only here.
"""
import glob
import os
import re

import numpy as np

from ..bake.sequences import has_frame_pattern, pattern_files
from .camera import rays
from .maps import Mesh, geometry_from_hits, uv_from_hits
from .raster import corner_points

MESH_EXTENSIONS = (".obj", ".ply", ".gltf", ".glb", ".stl", ".off")


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise ValueError("the surface command needs trimesh (and rtree for its ray "
                         "queries): pip install 'cupy_core[surface]'") from None
    return trimesh


def _natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def sequence_files(path):
    """The files of a mesh sequence: a folder (its mesh files in natural name order),
    a glob pattern (``flag_*.obj``) or a pattern with ``#`` for the frame number."""
    path = str(path)
    if os.path.isdir(path):
        files = [os.path.join(path, n) for n in os.listdir(path)
                 if n.lower().endswith(MESH_EXTENSIONS)]
    elif has_frame_pattern(path):
        # In frame order; a frame number longer than the run of # (frame 10000 of
        # mesh_####.obj) or negative is found too, and two files for one frame refused.
        files = list(pattern_files(path, what="mesh sequence").values())
        if not files:
            raise ValueError(f"mesh sequence {path!r}: no mesh files found")
        return files
    elif any(c in path for c in "*?["):
        files = glob.glob(path)
    elif os.path.isfile(path):
        files = [path]
    else:
        raise ValueError(f"mesh sequence {path!r}: no such file or folder")
    files = sorted(files, key=lambda p: _natural(os.path.basename(p)))
    if not files:
        raise ValueError(f"mesh sequence {path!r}: no mesh files found")
    return files


def load_mesh(path):
    """``(trimesh.Trimesh, Mesh)`` of one file, vertex and face order kept, with its
    UVs (per vertex in trimesh; per corner in ``Mesh``) when it has them."""
    trimesh = _trimesh()
    try:
        tm = trimesh.load(path, force="mesh", process=False, maintain_order=True)
    except Exception as exc:
        raise ValueError(f"cannot load mesh {str(path)!r}: {exc}") from None
    if not isinstance(tm, trimesh.Trimesh) or len(tm.faces) == 0:
        raise ValueError(f"mesh {str(path)!r} has no triangles")
    uv = getattr(tm.visual, "uv", None)
    corner_uv = None if uv is None else np.asarray(uv, dtype=np.float64)[tm.faces]
    return tm, Mesh(np.asarray(tm.vertices), np.asarray(tm.faces), corner_uv)


def load_mesh_sequence(path):
    """``[(trimesh, Mesh), ...]`` for the sequence; all frames must share topology."""
    out = [load_mesh(f) for f in sequence_files(path)]
    v0, f0 = len(out[0][1].vertices), out[0][1].faces
    for f, (_, m) in zip(sequence_files(path), out):
        if len(m.vertices) != v0 or not np.array_equal(m.faces, f0):
            raise ValueError(f"mesh {f!r} does not have the first frame's topology "
                             f"({len(m.vertices)} vertices vs {v0}, or other triangles)")
    return out


def _first_hits(tm, origins, directions):
    """``(face (N,), bary (N, 3), location (N, 3))`` of the first hit of each ray."""
    import trimesh
    n = origins.shape[0]
    face = np.full(n, -1, dtype=np.int64)
    bary = np.zeros((n, 3))
    loc = np.full((n, 3), np.nan)
    ok = np.isfinite(origins).all(axis=1) & np.isfinite(directions).all(axis=1)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return face, bary, loc
    caster = trimesh.ray.ray_triangle.RayMeshIntersector(tm)
    tri, ray, where = caster.intersects_id(origins[idx], directions[idx],
                                           multiple_hits=False, return_locations=True)
    r = idx[ray]
    face[r] = tri
    loc[r] = where
    bary[r] = trimesh.triangles.points_to_barycentric(tm.triangles[tri], where)
    return face, bary, loc


def uv_positions_rays(tm, mesh, camera, texture_size):
    """``maps.uv_positions`` by ray casting through the pixel corners."""
    h, w = camera.shape
    origins, dirs = rays(camera, corner_points((h, w)).reshape(-1, 2))
    face, bary, _ = _first_hits(tm, origins, dirs)
    return uv_from_hits(mesh, face, bary, (h, w), texture_size)


def geometry_positions_rays(tm_now, mesh_now, tm_prev, mesh_prev, cam_now, cam_prev,
                            background="camera"):
    """``maps.geometry_positions`` by ray casting: the corner rays of frame f hit the
    surface (``maps.geometry_from_hits`` moves the hits to frame f-1); a point is hidden
    when the old camera's ray towards it hits something nearer."""
    h, w = cam_now.shape
    pts = corner_points((h, w)).reshape(-1, 2)
    origins, dirs = rays(cam_now, pts)
    face, bary, _ = _first_hits(tm_now, origins, dirs)

    def occluded(sel, old3d, old_xy):
        o2, d2 = rays(cam_prev, old_xy)
        f2, _, loc2 = _first_hits(tm_prev, o2, d2)
        dist_own = np.einsum("nc,nc->n", old3d - o2, d2)
        dist_hit = np.einsum("nc,nc->n", loc2 - o2, d2)
        return (f2 >= 0) & (f2 != face[sel]) & \
            (dist_hit < dist_own - (1e-4 * np.abs(dist_own) + 1e-6))

    pos = geometry_from_hits(pts, face, bary, mesh_prev, cam_now, cam_prev,
                             background=background, occluded=occluded)
    return pos.reshape(h + 1, w + 1, 2)
