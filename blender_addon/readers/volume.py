"""Blender -> volume noise inputs: the domain grid, object matrices, fluid cache files,
and the baked VDB sequence loaded back as a Volume object.

Axes (the only place they are converted): the domain is a box object; its *local*
X, Y, Z (Blender: Z up) become voxel x (j, the W axis), y (i, H) and z (k, D), in
voxel units over the object's local bounding box, so a noise array ``[k, i, j]`` is
``[local z][local y][local x]`` and the VDB written by ``blender_addon.vdb`` lines up
with the box in the viewport. All matrices are the *evaluated* ``matrix_world`` at the
frame asked for (drivers, constraints, parents, armature bones as parents).
"""
import os
import re

import numpy as np

from ..errors import BakeError


def _depsgraph():
    import bpy
    return bpy.context.evaluated_depsgraph_get()


def find_object(name, what):
    import bpy
    ob = bpy.data.objects.get(name or "")
    if ob is None:
        raise BakeError(f"no {what} object: set the {what} (got {name!r})")
    return ob


def local_box(ob):
    """``(bmin, bmax)`` of the evaluated object's local bounding box."""
    obe = ob.evaluated_get(_depsgraph())
    bb = np.array([tuple(c) for c in obe.bound_box], np.float64)
    return bb.min(axis=0), bb.max(axis=0)


def matrix_world(ob):
    return np.array(ob.evaluated_get(_depsgraph()).matrix_world, np.float64)


def domain_grid(ob, resolution):
    """``cupy_core.volume.Domain`` of the domain object at the current frame."""
    from cupy_core.volume import Domain, VolumeInputError

    if ob.type not in {"MESH", "VOLUME", "EMPTY"} and not hasattr(ob, "bound_box"):
        raise BakeError(f"domain {ob.name!r} ({ob.type}) has no bounding box")
    bmin, bmax = local_box(ob)
    try:
        return Domain.from_box(bmin, bmax, int(resolution), matrix_world(ob))
    except VolumeInputError as exc:
        raise BakeError(f"domain {ob.name!r}: {exc}") from None


def fluid_domain_settings(ob):
    for m in ob.modifiers:
        if m.type == "FLUID" and getattr(m, "fluid_type", "") == "DOMAIN":
            return m.domain_settings
    return None


def fluid_cache_files(ob, frames, cache_dir=""):
    """``cache_dir`` (if given) replaces the modifier's cache directory (a cache baked
    elsewhere; no Fluid modifier needed then). ``{frame: .vdb}`` of a fluid domain's baked data cache: ``<cache>/data/`` files
    ending in ``_####.vdb`` (Mantaflow's ``fluid_data_####.vdb``). A missing frame is
    an error naming it."""
    import bpy

    ds = None if cache_dir else fluid_domain_settings(ob)
    if ds is None and not cache_dir:
        raise BakeError(f"object {ob.name!r} is not a fluid domain (no Fluid modifier of "
                        "type Domain): choose the domain, or another motion source")
    cache = bpy.path.abspath(cache_dir or ds.cache_directory)
    data = os.path.join(cache, "data")
    if not os.path.isdir(data):
        raise BakeError(f"fluid domain {ob.name!r}: no baked cache in {data!r}: bake "
                        "the fluid (OpenVDB cache format) first")
    files = {}
    for name in sorted(os.listdir(data)):
        m = re.search(r"_(\d+)\.vdb$", name)
        if m and "data" in name:
            files.setdefault(int(m.group(1)), os.path.join(data, name))
    missing = [f for f in frames if f not in files]
    if missing:
        raise BakeError(f"fluid cache {data!r} has no velocity file for frame(s) "
                        f"{', '.join(map(str, missing[:10]))}"
                        f"{' ...' if len(missing) > 10 else ''}")
    return {f: files[f] for f in frames}


def load_volume_sequence(out_dir, first_frame, frame_count, name="Warped noise volume",
                         scene=None):
    """Load ``noise_XXXX.vdb`` as a Volume object (reusing one of that name) whose
    sequence plays frame ``first_frame + n`` on scene frame ``first_frame + n``. The
    grids are ``noise_0`` .. ``noise_{C-1}`` (shade them with an Attribute node).
    The VDB transform already places the grid in world space: the object stays at
    the origin with no rotation."""
    import bpy
    from cupy_core import io as cio

    path = os.path.join(out_dir, cio.frame_name("noise", first_frame, "vdb"))
    if not os.path.isfile(path):
        return None
    scene = scene or bpy.context.scene
    vol = bpy.data.volumes.get(name) or bpy.data.volumes.new(name)
    vol.filepath = path
    vol.is_sequence = frame_count > 1
    vol.frame_start = first_frame
    vol.frame_duration = frame_count
    vol.frame_offset = first_frame - 1
    vol.sequence_mode = "CLIP"
    ob = bpy.data.objects.get(name)
    if ob is None or ob.data != vol:
        ob = bpy.data.objects.new(name, vol)
    if scene.collection.objects.get(ob.name) is None:
        scene.collection.objects.link(ob)
    return ob
