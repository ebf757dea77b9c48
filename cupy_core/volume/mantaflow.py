"""Blender's Mantaflow fluid cache velocity -> ``VelocityGrid`` (no Blender, no openvdb).

What Blender's sources say about a gas domain's OpenVDB data cache (``intern/mantaflow``,
``DNA_fluid_types.h``, ``blenkernel/intern/fluid.cc``; read, not run: Mantaflow does not
run under bpy from PyPI):

* file ``<cache>/data/fluid_data_####.vdb`` holds every grid of the frame; the velocity
  grid is ``"velocity"``, a Vec3 float grid of class *staggered* (Mantaflow's MAC grid:
  the x component of cell ``(i, j, k)`` lives on the face between cells ``i-1`` and
  ``i``, likewise y and z), stored sparse: zero where there is no smoke;
* values are in grid cells per Mantaflow time unit; one frame lasts
  ``frame_length = 0.1 * 25 / fps * time_scale`` time units;
* the grid's transform is only a uniform voxel size (no placement); metadata
  ``file_base_resolution`` gives the grid's size. Cell ``(i, j, k)`` of a
  non-adaptive domain is the box ``bmin + cell * ((i, j, k) .. (i, j, k) + 1)`` of the
  domain object's *local* bounding box, ``cell = (bmax - bmin) / base_res``, and world
  is ``matrix_world @ local``: index x, y, z are the object's local X, Y, Z.
"""
import numpy as np

from .grid import VelocityGrid, VolumeInputError, float_field, as_matrix

__all__ = ["frame_length", "staggered_to_centred", "mantaflow_velocity_grid"]

DT_DEFAULT = 0.1   # Blender's fluid.cc: frame_length = DT_DEFAULT * (25 / fps) * time_scale


def frame_length(fps, time_scale=1.0):
    """Mantaflow time units per frame."""
    if not fps > 0 or not time_scale > 0:
        raise VolumeInputError(f"fps and the fluid's time scale must be > 0, got {fps}, "
                               f"{time_scale}")
    return DT_DEFAULT * 25.0 / float(fps) * float(time_scale)


def staggered_to_centred(v):
    """MAC velocity ``(D, H, W, 3)`` (array ``[k, i, j]``, components x, y, z) to cell
    centres: each component is the mean of its cell's two faces along its own axis;
    the last cell's far face (the domain wall, not stored) repeats its near face."""
    v = np.asarray(v, np.float64)
    out = np.empty_like(v)
    for comp, axis in ((0, 2), (1, 1), (2, 0)):    # x along W, y along H, z along D
        a = v[..., comp]
        far = np.concatenate([np.take(a, np.arange(1, a.shape[axis]), axis=axis),
                              np.take(a, [a.shape[axis] - 1], axis=axis)], axis=axis)
        out[..., comp] = 0.5 * (a + far)
    return out


def mantaflow_velocity_grid(raw, bmin, bmax, matrix_world, fps, time_scale=1.0,
                            staggered=True):
    """World velocity per frame at cell centres from Mantaflow's stored ``raw``
    ``(D, H, W, 3)`` (array ``[k, i, j]``, cells per time unit) of a domain whose
    object has the local box ``bmin..bmax`` and world matrix ``matrix_world``."""
    raw = np.asarray(raw)
    if raw.ndim != 4 or raw.shape[-1] != 3 or min(raw.shape[:3]) < 1:
        raise VolumeInputError(f"the fluid velocity must be (D, H, W, 3), got {raw.shape}")
    raw = float_field(raw, "the fluid velocity")
    bmin = np.asarray(bmin, np.float64)
    ext = np.asarray(bmax, np.float64) - bmin
    if not (ext > 0).all():
        raise VolumeInputError(f"the fluid domain's box must have positive size, got {ext}")
    m = as_matrix(matrix_world, "the fluid domain's world matrix")
    d, h, w = raw.shape[:3]
    cell = ext / np.array([w, h, d], np.float64)          # local size of a cell (x, y, z)
    v = staggered_to_centred(raw) if staggered else raw
    local = v * (frame_length(fps, time_scale) * cell)    # local units per frame
    world = local @ m[:3, :3].T
    v2l = np.eye(4)
    v2l[:3, :3] = np.diag(cell)
    v2l[:3, 3] = bmin
    return VelocityGrid(world, m @ v2l, units="frame")
