"""Rendering the Vector and Depth passes into temporary multilayer EXR files, with every
render setting restored afterwards (also after an error or a cancel).

Settings changed for the bake (and put back by ``RenderSettings.restore``): engine
Cycles, 1 sample, no denoising or adaptive sampling, no light bounces, a box pixel
filter of the smallest width (each pixel sampled at its centre, so 1 sample gives clean
vectors and depth), no compositing, sequencer or border, the Vector and Depth passes
on, multilayer EXR (32-bit float), the output path (a temporary folder, never the
user's) and the current frame.
"""
import os

import bpy

from .errors import BakeError


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


def check_scene(scene):
    """Errors that make a vectors bake meaningless, as ``BakeError``."""
    if scene.camera is None:
        raise BakeError(f"scene {scene.name!r} has no camera: set Scene > Camera")
    if scene.render.use_motion_blur:
        raise BakeError("motion blur is on (Render properties > Motion Blur): the Vector "
                        "pass is empty with motion blur, turn it off for the bake")


def render_size(scene):
    r = scene.render
    return (int(r.resolution_y * r.resolution_percentage / 100),
            int(r.resolution_x * r.resolution_percentage / 100))


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
        check_scene(scene)
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
        from .readers.vectors import camera_matrices

        scene = self.scene
        scene.frame_set(frame)
        path = os.path.join(self.folder, f"frame_{frame:06d}.exr")
        scene.render.filepath = path
        h, w = render_size(scene)
        result = bpy.ops.render.render(write_still=True, scene=scene.name,
                                       layer=self.view_layer.name)
        if "FINISHED" not in result or not os.path.isfile(path):
            raise BakeError(f"rendering frame {frame} failed (no {path!r} written)")
        return path, camera_matrices(scene, scene.camera, w, h)

    def restore(self):
        errors = self.settings.restore()
        if self._frame is not None:
            self.scene.frame_set(self._frame, subframe=self._subframe)
            self._frame = None
        return errors

    def __exit__(self, *exc):
        self.restore()
        return False
