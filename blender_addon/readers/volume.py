"""Blender -> volume noise inputs: the domain grid, object matrices, fluid cache files,
and the baked VDB sequence loaded back as a Volume object.

Axes (the only place they are converted): the domain is a box object; its *local*
X, Y, Z (Blender: Z up) become voxel x (j, the W axis), y (i, H) and z (k, D), in
voxel units over the object's local bounding box, so a noise array ``[k, i, j]`` is
``[local z][local y][local x]`` and the VDB written by ``blender_addon.vdb`` lines up
with the box in the viewport. All matrices are the *evaluated* ``matrix_world`` at the
frame asked for (drivers, constraints, parents, armature bones as parents).

Deformers: a lattice or an armature moves the noise the way it moves a mesh bound to
it. ``DeformationProbe`` measures that with a temporary vertex-only mesh, parented to
the deformer (so it also follows the deformer's own motion) and given a Lattice or
Armature modifier (armatures: bone envelopes, since a probe has no vertex groups). Its
vertices are a rest grid covering the domain; their evaluated world positions at f-1
and f make a ``cupy_core.volume.SampledDeformation``. The probe is removed afterwards.
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


DEFORMER_TYPES = ("LATTICE", "ARMATURE")


def is_deformer(ob):
    return ob.type in DEFORMER_TYPES


class DeformationProbe:
    """A temporary mesh deformed by ``deformer`` (a lattice or an armature) as Blender
    deforms a mesh bound to it; see the module's notes. ``rest_frame``: the frame at
    which the probe's local coordinates are world coordinates. Call ``remove()``."""

    NAME = "cupy_noise_probe"

    def __init__(self, scene, deformer, rest_frame, *, margin=0.25, max_cells=48):
        import bpy
        from mathutils import Matrix

        if not is_deformer(deformer):
            raise BakeError(f"{deformer.name!r} ({deformer.type}) is not a lattice or armature")
        self.scene, self.deformer = scene, deformer
        self.margin, self.max_cells = float(margin), int(max_cells)
        old = scene.frame_current
        scene.frame_set(rest_frame)
        self.rest = matrix_world(deformer)
        scene.frame_set(old)
        self.mesh = bpy.data.meshes.new(self.NAME)
        self.ob = bpy.data.objects.new(self.NAME, self.mesh)
        scene.collection.objects.link(self.ob)
        self.ob.parent = deformer
        self.ob.matrix_parent_inverse = Matrix(np.linalg.inv(self.rest).tolist())
        mod = self.ob.modifiers.new("cupy_noise_deform", deformer.type)
        mod.object = deformer
        if deformer.type == "ARMATURE":
            mod.use_vertex_groups = False
            mod.use_bone_envelopes = True
        self.count = 0

    def _set_points(self, pts):
        me = self.mesh
        me.clear_geometry()
        me.vertices.add(len(pts))
        me.vertices.foreach_set("co", np.ascontiguousarray(pts, np.float32).ravel())
        me.update()
        self.count = len(pts)

    def _read(self):
        import bpy
        bpy.context.view_layer.update()
        obe = self.ob.evaluated_get(_depsgraph())
        me = obe.to_mesh()
        try:
            if len(me.vertices) != self.count:
                raise BakeError(f"the deformer {self.deformer.name!r} changed the probe's "
                                f"vertex count ({self.count} -> {len(me.vertices)})")
            co = np.empty(self.count * 3, np.float32)
            me.vertices.foreach_get("co", co)
        finally:
            obe.to_mesh_clear()
        m = np.array(obe.matrix_world, np.float64)
        return co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]

    def sample(self, frame_now, world_points):
        """``SampledDeformation`` between ``frame_now - 1`` and ``frame_now`` whose
        probe covers ``world_points`` (frame f's domain corners). Leaves the scene at
        frame f-1."""
        from cupy_core.volume import (SampledDeformation, VolumeInputError, probe_grid,
                                      rest_points)
        sc = self.scene
        sc.frame_set(frame_now)
        # the probe's rest region: the domain brought back by the deformer's own motion
        back = self.rest @ np.linalg.inv(matrix_world(self.deformer))
        pts = np.asarray(world_points, np.float64).reshape(-1, 3)
        local = pts @ back[:3, :3].T + back[:3, 3]
        origin, spacing, counts = probe_grid(local, margin=self.margin,
                                             max_cells=self.max_cells)
        rest = rest_points(origin, spacing, counts)
        self._set_points(rest.reshape(-1, 3))
        now = self._read().reshape(rest.shape)
        sc.frame_set(frame_now - 1)
        prev = self._read().reshape(rest.shape)
        try:
            return SampledDeformation(origin, spacing, now, prev)
        except VolumeInputError as exc:
            raise BakeError(f"deformer {self.deformer.name!r} at frame {frame_now}: {exc}") \
                from None

    def remove(self):
        import bpy
        ob, me = self.ob, self.mesh
        self.ob = self.mesh = None
        if ob is not None and ob.name in bpy.data.objects:
            bpy.data.objects.remove(ob)
        if me is not None and me.name in bpy.data.meshes:
            bpy.data.meshes.remove(me)


def domain_grid(ob, resolution):
    """``cupy_core.volume.Domain`` of the domain object at the current frame."""
    from cupy_core.volume import Domain, VolumeInputError

    if ob.type not in {"MESH", "VOLUME", "EMPTY"} and not hasattr(ob, "bound_box"):
        raise BakeError(f"domain {ob.name!r} ({ob.type}) has no bounding box")
    bmin, bmax = local_box(ob)
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
    import bpy

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
    cache = bpy.path.abspath(cache_dir)
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
    from .. import vdb as V

    ds = fluid_domain_settings(ob)
    if fmt not in ("auto", "mantaflow", "world"):
        raise BakeError(f"fluid cache format must be auto, mantaflow or world, got {fmt!r}")
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


def load_volume_sequence(out_dir, first_frame, frame_count, name="Warped noise volume",
                         scene=None):
    """Load ``noise_XXXX.vdb`` as a Volume object (reusing one of that name) whose
    sequence plays frame ``first_frame + n`` on scene frame ``first_frame + n``. The
    grids are ``noise_0`` .. ``noise_{C-1}`` (shade them with an Attribute node).
    The VDB transform already places the grid in world space: the object stays at
    the origin with no rotation."""
    import bpy
    from cupy_core.bake import files as cio

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
