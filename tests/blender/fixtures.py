"""Test fixtures: files as Blender and other tools write them (OpenVDB velocity grids,
Blender's fluid cache layout), the noise VDB read back, and the Cycles UV pass as a
texture map. Only the tests use these; they are not part of the add-on."""
import numpy as np

from blender_addon import vdb as V
from cupy_core.surface import uv_to_texture

FULL_COVERAGE = 0.999


def uv_pass_positions(u, v, a, texture_size):
    """Texture positions at pixel centres ``(H, W, 2)`` from a Cycles UV pass (rows top
    first; BLENDER_FACTS 2: ``U/A``, ``V/A`` where the coverage A > 0, v up), NaN where
    the coverage is below full. The pass has no object index: every object maps to
    tile 0. A check of the rasteriser against the renderer."""
    u, v, a = (np.asarray(c, dtype=np.float64) for c in (u, v, a))
    full = a >= FULL_COVERAGE
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([u / a, v / a], axis=-1)
    uv[~full] = np.nan
    return uv_to_texture(uv, texture_size)


def read_noise_vdb(path, prefix="noise"):
    """``(noise (D, H, W, C) float32, voxel_to_world 4x4)`` from ``write_noise_vdb``'s file."""
    vdb = V.openvdb()
    grids, meta = vdb.readAll(path)
    shape = tuple(int(n) for n in str(meta["cupy_shape"]).split())
    by_name = {g.name: g for g in grids}
    out = np.zeros(shape, np.float32)
    m = None
    for c in range(shape[3]):
        g = by_name.get(f"{prefix}_{c}")
        if g is None:
            raise ValueError(f"{path!r} has no grid {prefix}_{c} (grids: {sorted(by_name)})")
        a = np.zeros((shape[2], shape[1], shape[0]), np.float32)
        g.copyToArray(a)
        out[..., c] = a.transpose(2, 1, 0)
        m = V.index_to_world_matrix(g) @ V.translation(-0.5)
    return out, m


def write_velocity_vdb(path, velocity, voxel_to_world, name="velocity"):
    """A Vec3SGrid ``name`` from ``velocity`` (D, H, W, 3), world (vx, vy, vz) at voxel
    centres (the layout of ``cupy_core.volume.VelocityGrid``); for test fixtures."""
    vdb = V.openvdb()
    v = np.asarray(velocity, np.float32)
    g = vdb.Vec3SGrid()
    g.copyFromArray(np.ascontiguousarray(v.transpose(2, 1, 0, 3)))
    g.name = name
    g.transform = V.grid_transform(vdb, voxel_to_world)
    vdb.write(path, [g])
    return path


def write_mantaflow_velocity(path, raw, voxel_size, name="velocity"):
    """A test fixture laid out as Blender writes its fluid cache: a staggered Vec3SGrid
    ``velocity`` of ``raw`` (D, H, W, 3) at index (0, 0, 0).., a voxel-size-only
    transform and ``file_base_resolution`` metadata."""
    vdb = V.openvdb()
    v = np.asarray(raw, np.float32)
    g = vdb.Vec3SGrid()
    g.copyFromArray(np.ascontiguousarray(v.transpose(2, 1, 0, 3)))
    g.name = name
    g.transform = vdb.createLinearTransform(float(voxel_size))
    if hasattr(vdb, "GridClass"):
        g.gridClass = vdb.GridClass.STAGGERED
    g["file_base_resolution"] = (v.shape[2], v.shape[1], v.shape[0])
    g["file_voxel_size"] = float(voxel_size)
    vdb.write(path, [g])
    return path
