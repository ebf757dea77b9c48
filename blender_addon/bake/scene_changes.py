"""Everything a bake changes in the scene, each undone on the way out (after success,
an error or a cancel); run them on Blender's main thread (``BakeContext.scene_change``):

* ``VectorRenderer``: temporary renders of the Vector and Depth passes into multilayer
  EXR files, with the render settings they need (``RenderSettings`` restores them);
* ``kept_frame``: frame changes (``frame_set``), the scene's frame put back;
* ``deformation_probes``: temporary probe meshes measuring how a lattice or an
  armature deforms space (``DeformationProbe``), removed.

Settings changed for a render (and put back by ``RenderSettings.restore``): engine
Cycles, 1 sample, no denoising or adaptive sampling, no light bounces, a box pixel
filter of the smallest width (each pixel sampled at its centre, so 1 sample gives clean
vectors and depth), no compositing, sequencer or border, the Vector and Depth passes
on, multilayer EXR (32-bit float), the output path (a temporary folder, never the
user's) and the current frame.

Probes: a vertex-only mesh, parented to the deformer (so it also follows the
deformer's own motion) and given a Lattice or Armature modifier (armatures: bone
envelopes, since a probe has no vertex groups). Its vertices are a rest grid covering
the domain; their evaluated world positions at f-1 and f make a
``cupy_core.volume.SampledDeformation``.
"""
import contextlib
import os

import bpy
import numpy as np

from cupy_core.volume import SampledDeformation, VolumeInputError, probe_grid, rest_points

from ..errors import BakeError
from ..readers import volume as R
from ..readers.vectors import camera_matrices, render_size


class RenderSettings:
    """Set attributes, remembering the old values; ``restore()`` puts them back in the
    order they were first changed (the order matters for Blender 5.0's ``media_type``)."""

    def __init__(self):
        self._saved = []
        self._keys = set()

    def remember(self, owner, *attrs):
        """Record attributes before changing others that may change them too (file
        format -> colour depth)."""
        for attr in attrs:
            if hasattr(owner, attr):
                key = (owner.as_pointer(), attr)
                if key not in self._keys:
                    self._keys.add(key)
                    self._saved.append((owner, attr, getattr(owner, attr)))

    def set(self, owner, attr, value):
        if not hasattr(owner, attr):
            return False
        self.remember(owner, attr)
        if getattr(owner, attr) != value:
            setattr(owner, attr, value)
        return True

    def restore(self):
        errors = []
        for owner, attr, value in self._saved:
            try:
                if getattr(owner, attr) != value:
                    setattr(owner, attr, value)
            except Exception as exc:  # keep restoring the rest
                errors.append(f"{attr}: {exc}")
        self._saved.clear()
        self._keys.clear()
        return errors



class VectorRenderer:
    """Renders frames of ``scene`` (through its camera, ``view_layer``) into EXR files
    in ``folder``. Use as a context manager: settings are restored on exit."""

    def __init__(self, scene, view_layer, folder):
        self.scene = scene
        self.view_layer = view_layer
        self.folder = folder
        self.settings = RenderSettings()
        self._frame = None
        self._subframe = None

    def __enter__(self):
        scene, s = self.scene, self.settings
        self._frame, self._subframe = scene.frame_current, scene.frame_subframe
        try:
            r = scene.render
            s.set(r, "engine", "CYCLES")
            c = scene.cycles
            for attr, value in (("samples", 1), ("use_denoising", False),
                                ("use_adaptive_sampling", False), ("max_bounces", 0),
                                ("time_limit", 0.0), ("pixel_filter_type", "BOX"),
                                ("filter_width", 0.01), ("seed", 0),
                                ("use_animated_seed", False)):
                s.set(c, attr, value)
            for attr, value in (("use_compositing", False), ("use_sequencer", False),
                                ("use_border", False), ("use_single_layer", True),
                                ("use_file_extension", True), ("use_overwrite", True),
                                ("use_placeholder", False),
                                ("filepath", os.path.join(self.folder, "frame.exr"))):
                s.set(r, attr, value)
            im = r.image_settings
            s.remember(im, "media_type", "file_format", "color_depth", "color_mode",
                       "exr_codec", "use_exr_interleave", "use_preview")
            if hasattr(im, "media_type"):                 # Blender 5.0
                s.set(im, "media_type", "MULTI_LAYER_IMAGE")
            s.set(im, "file_format", "OPEN_EXR_MULTILAYER")
            s.set(im, "color_depth", "32")
            s.set(im, "exr_codec", "ZIP")
            vl = self.view_layer
            s.set(vl, "use_pass_vector", True)
            s.set(vl, "use_pass_z", True)
        except BaseException:
            self.restore()
            raise
        return self

    def render(self, frame):
        """Render ``frame``; return the EXR path and the camera's ``projection @ view``."""
        scene = self.scene
        scene.frame_set(frame)
        path = os.path.join(self.folder, f"frame_{frame:06d}.exr")
        scene.render.filepath = path
        h, w = render_size(scene)
        try:
            result = bpy.ops.render.render(write_still=True, scene=scene.name,
                                           layer=self.view_layer.name)
        except RuntimeError as exc:     # Blender 5.0: "Error writing render result"
            raise self.failure(frame, path, " ".join(str(exc).split())) from None
        if "FINISHED" not in result or not os.path.isfile(path):
            raise self.failure(frame, path, f"no {path!r} written")
        return path, camera_matrices(scene, scene.camera, w, h)

    def render_bytes(self):
        """About how many bytes one render file takes at most (Combined, Vector and
        Depth, 32-bit float, uncompressed)."""
        h, w = render_size(self.scene)
        return h * w * (4 + 4 + 1) * 4 + 65536

    def failure(self, frame, path, detail):
        """The error for a render that wrote no whole file: a full disk (little space
        left in the folder), else what Blender said."""
        from .scratch import DiskFull, free_bytes
        free = free_bytes(self.folder)
        if free is not None and free < self.render_bytes():
            return DiskFull(self.folder)
        return BakeError(f"rendering frame {frame} failed ({detail}); see Blender's "
                         "messages above")

    def restore(self):
        errors = self.settings.restore()
        if self._frame is not None:
            self.scene.frame_set(self._frame, subframe=self._subframe)
            self._frame = None
        return errors

    def __exit__(self, *exc):
        self.restore()
        return False


class DeformationProbe:
    """A temporary mesh deformed by ``deformer`` (a lattice or an armature) as Blender
    deforms a mesh bound to it; see the module's notes. ``rest_frame``: the frame at
    which the probe's local coordinates are world coordinates. Call ``remove()``."""

    NAME = "cupy_noise_probe"

    def __init__(self, scene, deformer, rest_frame, *, margin=0.25, max_cells=48):
        from mathutils import Matrix

        if not R.is_deformer(deformer):
            raise BakeError(f"{deformer.name!r} ({deformer.type}) is not a lattice or armature")
        self.scene, self.deformer = scene, deformer
        self.margin, self.max_cells = float(margin), int(max_cells)
        old = scene.frame_current
        scene.frame_set(rest_frame)
        self.rest = R.matrix_world(deformer)
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
        bpy.context.view_layer.update()
        obe = self.ob.evaluated_get(bpy.context.evaluated_depsgraph_get())
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
        sc = self.scene
        sc.frame_set(frame_now)
        # the probe's rest region: the domain brought back by the deformer's own motion
        back = self.rest @ np.linalg.inv(R.matrix_world(self.deformer))
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
        ob, me = self.ob, self.mesh
        self.ob = self.mesh = None
        if ob is not None and ob.name in bpy.data.objects:
            bpy.data.objects.remove(ob)
        if me is not None and me.name in bpy.data.meshes:
            bpy.data.meshes.remove(me)


@contextlib.contextmanager
def kept_frame(scene):
    """Yields ``goto(frame)``, which sets the scene's frame; the frame (and subframe)
    the scene was on is restored on exit."""
    frame, subframe = scene.frame_current, scene.frame_subframe
    try:
        yield scene.frame_set
    finally:
        if scene.frame_current != frame or scene.frame_subframe != subframe:
            scene.frame_set(frame, subframe=subframe)


@contextlib.contextmanager
def deformation_probes(scene, objects, rest_frame, max_cells=48):
    """Yields ``{index: DeformationProbe}`` for the deformers (lattices, armatures)
    among ``objects``; every probe is removed on exit."""
    probes = {}
    try:
        for n, ob in enumerate(objects):
            if R.is_deformer(ob):
                probes[n] = DeformationProbe(scene, ob, rest_frame, max_cells=max_cells)
        yield probes
    finally:
        for probe in probes.values():
            probe.remove()
