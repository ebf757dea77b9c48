"""OpenVDB files through the ``openvdb`` module bundled in bpy 4.5 and 5.0 (in
``bpy.utils.resource_path('LOCAL')/python/lib/python3.11/site-packages``, not on
``sys.path``; BLENDER_FACTS 8). bpy 4.2 has none: ``available()`` then says why and the
volume bake writes ``.npy`` only. nanobind prints "leaked" warnings at exit: harmless.

Axes. Our noise volume is ``(D, H, W, C)``, array ``[k, i, j]`` = ``[z][y][x]``;
openvdb's ``copyFromArray``/``copyToArray`` index the numpy array as ``[x][y][z]``
(index coordinate ``(i, j, k)`` of OpenVDB = our ``(x, y, z)`` = ``(j, i, k)``), so
arrays are transposed ``(2, 1, 0)`` on the way in and out. OpenVDB voxel values sit at
integer index points (cell centred), ours at ``(j+.5, i+.5, k+.5)``: the grid transform
is ``voxel_to_world @ translate(.5, .5, .5)`` (OpenVDB's 4x4 is the row-vector form,
the transpose of ours). Grids: one FloatGrid per channel, ``noise_0`` .. ``noise_{C-1}``.
"""
import os
import sys

import numpy as np

_MODULE = None
_WHY = None


def _site_packages():
    import bpy
    return os.path.join(bpy.utils.resource_path("LOCAL"), "python", "lib",
                        f"python{sys.version_info.major}.{sys.version_info.minor}",
                        "site-packages")


def openvdb():
    """The openvdb module, or None (``why_unavailable()`` says why)."""
    global _MODULE, _WHY
    if _MODULE is not None or _WHY is not None:
        return _MODULE
    try:
        import openvdb as vdb  # noqa: F401  (an installed one wins)
    except ImportError:
        try:
            path = _site_packages()
        except Exception as exc:  # no bpy
            _WHY = f"the openvdb module is not installed ({exc})"
            return None
        if path not in sys.path:
            sys.path.append(path)
        try:
            import openvdb as vdb  # noqa: F811
        except ImportError:
            import bpy
            _WHY = (f"Blender {bpy.app.version_string} does not bundle the openvdb Python "
                    "module (4.5 and later do): volume noise is written as .npy only")
            return None
    _MODULE = vdb
    return vdb


def available():
    return openvdb() is not None


def why_unavailable():
    openvdb()
    return _WHY


def _need():
    vdb = openvdb()
    if vdb is None:
        raise RuntimeError(_WHY)
    return vdb


def translation(d):
    """The 4x4 translation by ``d``."""
    m = np.eye(4)
    m[:3, 3] = d
    return m


def grid_transform(vdb, voxel_to_world):
    """OpenVDB's transform for our ``voxel_to_world`` (voxel values at cell centres)."""
    m = np.asarray(voxel_to_world, np.float64) @ translation(0.5)
    return vdb.createLinearTransform(m.T.tolist())


def index_to_world_matrix(grid):
    """The grid's index -> world map as a 4x4 (column vectors), from ``indexToWorld``."""
    t = grid.transform
    o = np.array(t.indexToWorld((0.0, 0.0, 0.0)), np.float64)
    m = np.eye(4)
    for a in range(3):
        e = [0.0, 0.0, 0.0]
        e[a] = 1.0
        m[:3, a] = np.array(t.indexToWorld(tuple(e)), np.float64) - o
    m[:3, 3] = o
    return m


def write_noise_vdb(path, noise, voxel_to_world, prefix="noise"):
    """Write ``noise`` (D, H, W, C) as one FloatGrid per channel, atomically."""
    vdb = _need()
    noise = np.asarray(noise, np.float32)
    if noise.ndim != 4:
        raise ValueError(f"noise must be (D, H, W, C), got shape {noise.shape}")
    grids = []
    for c in range(noise.shape[3]):
        g = vdb.FloatGrid(0.0)
        g.copyFromArray(np.ascontiguousarray(noise[..., c].transpose(2, 1, 0)))
        g.name = f"{prefix}_{c}"
        g.transform = grid_transform(vdb, voxel_to_world)
        g.gridClass = vdb.GridClass.FOG_VOLUME if hasattr(vdb, "GridClass") else g.gridClass
        grids.append(g)
    from cupy_core.bake.files import atomic_path
    with atomic_path(path) as tmp:
        vdb.write(tmp, grids, {"cupy_shape": " ".join(map(str, noise.shape))})
    return path


def _velocity_grid(path, load=True):
    """The velocity grid of ``path``: ``velocity`` (Blender's fluid cache), else the
    first Vec3 grid whose name contains "vel"; ValueError naming the grids otherwise.
    Only that grid is loaded (a cache frame also holds density, heat, ...); with
    ``load=False`` only its metadata."""
    vdb = _need()
    try:
        metas = vdb.readAllGridMetadata(path)
    except Exception as exc:
        raise ValueError(f"cannot read the OpenVDB file {path!r}: {exc}") from None
    vec = [g for g in metas if "vec3" in g.valueTypeName.lower() and "vel" in g.name.lower()]
    vec.sort(key=lambda g: g.name != "velocity")
    if not vec:
        found = ", ".join(f"{g.name} ({g.valueTypeName})" for g in metas) or "none"
        raise ValueError(f"{path!r} has no Vec3 velocity grid (a name containing 'vel'); "
                         f"grids found: {found}")
    return vdb.read(path, vec[0].name) if load else vec[0]


def _meta(grid, key):
    try:
        return grid[key]
    except (KeyError, TypeError, IndexError):
        return None


def read_velocity_vdb(path):
    """``(velocity (D, H, W, 3), voxel_to_world, grid name)`` of a velocity grid in world
    placement and units (a cache from another tool; Blender's own is read by
    ``read_mantaflow_velocity``). Index space: the grid's active bounding box, its
    minimum corner becomes voxel (0, 0, 0)."""
    g = _velocity_grid(path)
    lo, hi = g.evalActiveVoxelBoundingBox()
    lo, hi = np.array(lo), np.array(hi)
    if (hi < lo).any():   # empty grid: one zero voxel
        lo = hi = np.zeros(3, int)
    n = hi - lo + 1
    a = np.zeros((n[0], n[1], n[2], 3), np.float32)
    g.copyToArray(a, tuple(int(x) for x in lo))
    m = index_to_world_matrix(g) @ translation(lo.astype(np.float64)) @ translation(-0.5)
    return a.transpose(2, 1, 0, 3), m, g.name


def _resolution(grid):
    res = _meta(grid, "file_base_resolution")
    return None if res is None else tuple(int(round(float(n))) for n in res)


def mantaflow_resolution(path):
    """The grid size ``(x, y, z)`` Mantaflow recorded in ``path`` (metadata
    ``file_base_resolution``), or None for an older file without it."""
    return _resolution(_velocity_grid(path, load=False))


def read_mantaflow_velocity(path, resolution=None):
    """``(raw (D, H, W, 3) float32, staggered)`` of Blender's fluid cache file: the stored
    values (cells per Mantaflow time unit, ``cupy_core.volume.mantaflow``) of index
    ``(0, 0, 0) .. resolution - 1``, zero where the sparse grid has no voxel.
    ``resolution`` ``(x, y, z)``: the file's ``file_base_resolution`` when None."""
    g = _velocity_grid(path)
    res = resolution or _resolution(g)
    if res is None:
        raise ValueError(f"{path!r} does not record its grid size (no file_base_resolution): "
                         "give the fluid domain's resolution")
    a = np.zeros((int(res[0]), int(res[1]), int(res[2]), 3), np.float32)
    g.copyToArray(a, (0, 0, 0))
    staggered = str(g.gridClass).lower().endswith("staggered") or \
        str(_meta(g, "class") or "").lower() == "staggered"
    return a.transpose(2, 1, 0, 3), staggered
