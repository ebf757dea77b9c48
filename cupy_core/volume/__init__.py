"""Volume noise (no Blender import): 3-D noise carried by object or fluid motion.

* ``grid``: the domain grid (voxel <-> world transforms), rigid/affine backward maps
  at voxel corners from 4x4 matrices, velocity grids (trilinear sampling, RK2
  backtrace of corners), velocity sequences on disk, validation;
* ``deform``: deformations sampled at probe points (lattices, armatures), inverted
  by Newton steps on their trilinear interpolant;
* ``mantaflow``: Blender's fluid cache velocity (MAC, cells per time unit, placed by
  the domain object) as a ``VelocityGrid``;
* ``bake``: the chained 3-D bake loop (atomic ``noise_XXXX.npy``, bake.json, resume,
  a per-frame hook for the add-on's OpenVDB writer).

Conventions (docs/DESIGN.md 3): a noise volume is ``(D, H, W, C)``; voxel ``(k, i, j)`` is
the cube ``x in [j, j+1], y in [i, i+1], z in [k, k+1]`` of *voxel coordinates*
``(x, y, z)``. A domain's ``voxel_to_world`` (4x4, column vectors) maps voxel
coordinates to world: ``world = A @ (x, y, z, 1)``. For a Blender box domain the
voxel x, y, z axes are the object's local X, Y, Z (z up), so no axis is flipped.
"""
from .grid import (Domain, VelocityGrid, VolumeInputError, affine_positions,
                   backtrace_positions, corner_points, load_velocity_frame,
                   object_positions, rigid_positions, velocity_sequence)
from .deform import SampledDeformation, probe_grid, rest_points
from .mantaflow import frame_length, mantaflow_velocity_grid, staggered_to_centred
from .bake import bake_volume_sequence

__all__ = ["Domain", "VelocityGrid", "VolumeInputError", "affine_positions",
           "backtrace_positions", "corner_points", "load_velocity_frame",
           "object_positions", "rigid_positions", "velocity_sequence",
           "SampledDeformation", "probe_grid", "rest_points", "frame_length",
           "mantaflow_velocity_grid", "staggered_to_centred", "bake_volume_sequence"]
