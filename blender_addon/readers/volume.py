"""Blender -> volume noise inputs: the domain grid, object matrices, fluid cache files
and their layout.

Axes (the only place they are converted): the domain is a box object; its *local*
X, Y, Z (Blender: Z up) become voxel x (j, the W axis), y (i, H) and z (k, D), in
voxel units over the object's local bounding box, so a noise array ``[k, i, j]`` is
``[local z][local y][local x]`` and the VDB written by ``blender_addon.vdb`` lines up
with the box in the viewport. All matrices are the *evaluated* ``matrix_world`` at the
frame asked for (drivers, constraints, parents, armature bones as parents).

Deformers: a lattice or an armature moves the noise the way it moves a mesh bound to
it; ``is_deformer`` tells them, and ``bake.scene_changes.DeformationProbe`` measures
that (a temporary mesh: a change of the scene, so it lives there). Nothing here
changes the scene: every function reads it at its current frame.
"""
import os
import re

import numpy as np

from .. import vdb as V
from ..errors import BakeError
from ..paths import abspath


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


DEFORMER_TYPES = ("LATTICE", "ARMATURE")


def is_deformer(ob):
    return ob.type in DEFORMER_TYPES


def domain_grid(ob, resolution):
    """``cupy_core.volume.Domain`` of the domain object at the current frame."""
    from cupy_core.volume import Domain, VolumeInputError

    if ob.type not in {"MESH", "VOLUME", "EMPTY"} and not hasattr(ob, "bound_box"):
        raise BakeError(f"domain {ob.name!r} ({ob.type}) has no bounding box")
    bmin, bmax = local_box(ob)
    if ob.type == "EMPTY" or not (np.asarray(bmax) - np.asarray(bmin) > 0).all():
        kind = "an Empty" if ob.type == "EMPTY" else f"a {ob.type.lower()} without volume"
        raise BakeError(f"the domain object {ob.name} has no size ({kind}): use a mesh "
                        "box (Add > Mesh > Cube, scaled to the region) as the domain")
    try:
        # Blender's fluid domain scales the box by Object.scale (parents ignored).
        return Domain.from_box(bmin, bmax, int(resolution), matrix_world(ob),
                               scale=tuple(ob.scale))
    except VolumeInputError as exc:
        raise BakeError(f"domain {ob.name!r}: {exc}") from None


def fluid_domain_settings(ob):
    for m in ob.modifiers:
        if m.type == "FLUID" and getattr(m, "fluid_type", "") == "DOMAIN":
            return m.domain_settings
    return None


def fluid_cache_files(ob, frames, cache_dir="", offset=None):
    """``{frame: .vdb}`` of a fluid domain's baked data cache: ``<cache>/data/``
    files ending in ``_####.vdb`` (Blender writes ``fluid_data_####.vdb``). ``cache_dir``
    (if given) replaces the modifier's cache directory (a cache baked elsewhere; no
    Fluid modifier needed then). Scene frame f reads cache frame ``f - offset``
    (default: the modifier's Cache > Offset, as Blender loads it; 0 without one). A
    missing frame is an error naming it."""
    ds = fluid_domain_settings(ob)
    if offset is None:
        offset = int(getattr(ds, "cache_frame_offset", 0)) if ds is not None else 0
    if not cache_dir:
        if ds is None:
            raise BakeError(f"object {ob.name!r} is not a fluid domain (no Fluid modifier "
                            "of type Domain): choose the domain, or another motion source")
        if getattr(ds, "cache_data_format", "OPENVDB") != "OPENVDB":
            raise BakeError(f"fluid domain {ob.name!r} caches its data as "
                            f"{ds.cache_data_format}: set Cache > Format Volumes to "
                            "OpenVDB and bake again")
        cache_dir = ds.cache_directory
    cache = abspath(cache_dir)
    data = os.path.join(cache, "data")
    if not os.path.isdir(data):
        raise BakeError(f"fluid domain {ob.name!r}: no baked cache in {data!r}: bake "
                        "the fluid (OpenVDB cache format) first")
    files = {}
    for name in sorted(os.listdir(data)):
        m = re.search(r"_(\d+)\.vdb$", name)
        if m and "data" in name:
            files.setdefault(int(m.group(1)), os.path.join(data, name))
    missing = [f for f in frames if f - offset not in files]
    if missing:
        shifted = f" (with the cache offset {offset})" if offset else ""
        raise BakeError(f"fluid cache {data!r} has no velocity file for frame(s) "
                        f"{', '.join(map(str, missing[:10]))}"
                        f"{' ...' if len(missing) > 10 else ''}{shifted}")
    return {f: files[f - offset] for f in frames}


def fluid_layout(ob, first_file, fmt="auto"):
    """How to read the cache: ``{"format": "mantaflow" | "world", "resolution": (x, y, z)
    or None, "time_scale": float}``. "auto": Blender's own layout when ``ob`` is a fluid
    domain or the file records Mantaflow's ``file_base_resolution``, else world
    placement and units (a cache written by another tool)."""
    ds = fluid_domain_settings(ob)
    try:
        res = V.mantaflow_resolution(first_file)
    except ValueError as exc:
        raise BakeError(str(exc)) from None
    if fmt == "auto":
        fmt = "mantaflow" if ds is not None or res is not None else "world"
    if fmt == "mantaflow":
        if ds is not None and ds.use_adaptive_domain:
            raise BakeError(f"fluid domain {ob.name!r} uses Adaptive Domain: its cache "
                            "grids change size and place every frame; turn it off and bake "
                            "again")
        if res is None and ds is not None:
            res = tuple(int(n) for n in ds.domain_resolution)
        if res is None or min(res) < 1:
            raise BakeError(f"{first_file!r} does not record its grid size: choose the fluid "
                            "domain object (its Fluid modifier knows the resolution)")
    time_scale = float(ds.time_scale) if ds is not None else 1.0
    return {"format": fmt, "resolution": res, "time_scale": time_scale}
