"""A bake's extra outputs beside cupy_core's ``noise_XXXX.npy``, written from the noise
in hand by the frame loop's ``on_frame`` hook (``exr_writer``, ``vdb_writer``), and
the results loaded into the .blend afterwards (``load_preview``: the preview PNGs as
an image sequence; ``load_volume_sequence``: the VDB files as a Volume object), and
``PreviewRecorder``: the backward maps and renders a bake computes, kept on disk for
``cupy_core.preview``'s animated side-by-side and flicker figures."""
import os

import numpy as np

from cupy_core.bake import files as cio
from cupy_core.bake.loop import record_written

from .. import vdb as V
from ..errors import BakeError, disk_full
from .scratch import ScratchFolder


def write_noise_exr(path, noise):
    """``noise`` (H, W, C) as a float32 EXR, atomically: channels R, G, B, A for C <= 4
    (Blender shows them), else ``noise.00``, ``noise.01``, ..."""
    import OpenEXR  # the bundled wheel

    c = noise.shape[2]
    names = "RGBA"[:c] if c <= 4 else [f"noise.{i:02d}" for i in range(c)]
    channels = {n: np.ascontiguousarray(noise[..., i], dtype=np.float32)
                for i, n in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with cio.atomic_path(path) as tmp, OpenEXR.File(header, channels) as f:
        f.write(tmp)


def exr_writer(out_dir):
    """``on_frame`` output: ``noise_XXXX.exr`` of each frame (kept where a resumed bake
    already wrote it). The OpenEXR module is checked for now, before any frame."""
    try:
        import OpenEXR  # noqa: F401
    except ImportError:
        raise BakeError("EXR output needs the OpenEXR module (bundled with the "
                        "installed add-on; pip install OpenEXR otherwise)") from None

    def write(frame, noise):
        path = os.path.join(out_dir, cio.frame_name("noise", frame, "exr"))
        if not os.path.isfile(path):
            write_noise_exr(path, noise)
    return write


def vdb_writer(out_dir, voxel_to_world):
    """``on_frame`` output: ``noise_XXXX.vdb`` of each frame, placed by
    ``voxel_to_world[frame]`` (kept where a resumed bake already wrote it)."""
    def write(frame, noise):
        path = os.path.join(out_dir, cio.frame_name("noise", frame, "vdb"))
        if not os.path.isfile(path):
            V.write_noise_vdb(path, noise, voxel_to_world[frame])
    return write


def load_preview(out_dir, first_frame, name="Warped noise preview"):
    """Load ``preview_XXXX.png`` as an image sequence (scrub it in the Image editor);
    None when there is none."""
    import bpy

    path = os.path.join(out_dir, cio.frame_name("preview", first_frame, "png"))
    if not os.path.isfile(path):
        return None
    img = bpy.data.images.get(name)
    if img is not None and os.path.normpath(bpy.path.abspath(img.filepath)) != os.path.normpath(path):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.load(path)
        img.name = name
    img.source = "SEQUENCE"
    img.reload()
    return img


def load_volume_sequence(out_dir, first_frame, frame_count, scene,
                         name="Warped noise volume"):
    """Load ``noise_XXXX.vdb`` as a Volume object (reusing one of that name) whose
    sequence plays frame ``first_frame + n`` on scene frame ``first_frame + n``; None
    when there is none. The grids are ``noise_0`` .. ``noise_{C-1}`` (shade them with
    an Attribute node). The VDB transform already places the grid in world space: the
    object stays at the origin with no rotation."""
    import bpy

    path = os.path.join(out_dir, cio.frame_name("noise", first_frame, "vdb"))
    if not os.path.isfile(path):
        return None
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


class PreviewRecorder:
    """Keeps, in a temporary folder, each backward map (at pixel centres) and render
    the bake computes, and after the bake writes ``comparison.gif``, ``space_time.png``
    and ``flicker.json`` (``cupy_core.preview.preview_bake``) into the output folder:
    with the flicker figures when every frame's map was computed in this run (not for
    a resumed bake's earlier frames), with the scene when every frame has a render."""

    def __init__(self, first_frame, count):
        self.first, self.count = int(first_frame), int(count)
        self._scratch = ScratchFolder("preview")
        self.folder = self._scratch.path
        self.maps, self.renders = set(), set()

    def _save(self, name, array):
        try:
            np.save(os.path.join(self.folder, name), array)
        except OSError as exc:
            full = disk_full(exc, "temporary folder", self.folder)
            if full is not None:
                raise full from None
            raise

    def keep_positions(self, t, positions):
        """The backward map of transition t (frame first + t + 1 -> first + t)."""
        self._save(f"map_{t}.npy", np.asarray(positions, np.float32))
        self.maps.add(t)

    def keep_render(self, frame, image):
        if image is not None:
            self._save(f"render_{frame}.npy", image)
            self.renders.add(frame)

    def _loaded(self, name, keys):
        from cupy_core.bake.loop import LazyFrames
        return LazyFrames(len(keys), lambda i: np.load(
            os.path.join(self.folder, f"{name}_{keys[i]}.npy")))

    def write(self, out_dir, log=print):
        """The pictures of the bake in ``out_dir``; a note instead of an error when
        they cannot be made (the bake itself is whole)."""
        from cupy_core.preview import preview_bake
        transitions = list(range(self.count - 1))
        frames = list(range(self.first, self.first + self.count))
        positions = (self._loaded("map", transitions)
                     if set(transitions) <= self.maps else None)
        renders = (self._loaded("render", frames)
                   if set(frames) <= self.renders else None)
        try:
            shown = preview_bake(out_dir, positions=positions, renders=renders)
        except (ValueError, OSError) as exc:
            log(f"[noise] no animated preview: {exc}")
            return None
        for line in shown.lines:
            log(f"[noise] {line}")
        # bake.json lists them, so that a --no-resume bake removes them with the rest.
        record_written(out_dir, [p for p in (shown.gif, shown.slices, shown.flicker_json) if p])
        return shown

    def close(self):
        self._scratch.close()
