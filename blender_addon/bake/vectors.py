"""Sources "vectors" (render the Vector and Depth passes of every frame, Cycles at 1
sample, into a temporary folder) and "exr" (an EXR sequence already rendered with
them): the passes of frames f-1 and f and the cameras make frame f's backward
positions at pixel centres (``cupy_core.vector_pass``: disocclusion, background
rules), computed only when the loop asks, so a resumed bake renders only the frames
it still needs (and the one before).

Before anything is written: "vectors" checks the camera, motion blur and the pixel
aspect; "exr" opens every file of the sequence (readable and whole, one file per
frame, the Vector pass, the Depth pass where the background rule needs it, one size).
Each render is read as soon as it is written and its file deleted, so the temporary
folder (``scratch.ScratchFolder``, removed however the bake ends) holds at most the
render in progress; a render that wrote no whole file is a full disk where the folder
has no room left (``DiskFullError`` naming it). SIGINT, SIGTERM and Esc are checked
before every render and every frame's map (``BakeContext.check_stop``).
"""
import os
import re

from cupy_core.bake.fingerprint import hash_files
from cupy_core.bake.loop import LazyFrames, bake_flow_sequence
from cupy_core.bake.sequences import sequence_files
from cupy_core.vector_pass import backward_positions

from ..errors import BakeError
from ..paths import abspath
from ..readers.vectors import (DamagedExrError, PassError, camera_matrices,
                               read_combined_exr, read_exr_channels, read_vector_exr,
                               pixel_aspect, render_size)
from .context import check_camera, check_motion_blur
from .outputs import exr_writer
from .scene_changes import VectorRenderer, kept_frame
from .scratch import ScratchFolder

# A frame number at the end of a file name: "-" is its sign only right after a
# separator (render_-001.exr is frame -1, render-0001.exr frame 1).
EXR_NAME = r"(?i)(?:|.*[_.\s-](?=-)|.*[_.\s-]|.*\D)(-?\d+)\.exr"
# What each background rule reads from the Depth pass (settings.BACKGROUND_RULES).
RULES_NEEDING_DEPTH = {"camera": "tells the background by its depth and moves it with "
                                 "the camera", "fresh": "tells the background by its depth"}
RULE_WORDS = {"camera": "camera (At Infinity)", "vectors": "vectors (As Rendered)",
              "fresh": "fresh"}


def exr_files(path, frames):
    """``{frame: file}`` of an EXR sequence: ``path`` is a pattern with # or a folder
    whose .exr files end in frame numbers."""
    if not path:
        raise BakeError("source 'exr' needs an EXR sequence (a folder or a path with #)")
    path = abspath(path)
    if os.path.isdir(path):          # two files for one frame: which one is meant?
        seen, wanted = {}, set(frames)
        for name in sorted(os.listdir(path)):
            m = re.fullmatch(EXR_NAME, name)
            if m and int(m.group(1)) in wanted:
                f = int(m.group(1))
                if f in seen:
                    raise BakeError(f"EXR sequence {path!r} has two files for frame {f}: "
                                    f"{seen[f]!r} and {name!r}; keep one")
                seen[f] = name
    return sequence_files(path, frames, what="EXR sequence", name_pattern=EXR_NAME,
                          error=BakeError)


def check_exr_sequence(files, background, log=print):
    """Open every file of the sequence before the first frame: readable and whole, the
    Vector pass, the Depth pass where ``background`` needs it, one size. Returns
    ``(H, W)``."""
    shape, first = None, None
    for frame, path in files.items():
        ch = read_exr_channels(path)
        vec, depth = read_vector_exr(path, ch)
        if depth is None and background in RULES_NEEDING_DEPTH:
            raise PassError(
                f"EXR file {path!r} has no Depth pass, which the background rule "
                f"{RULE_WORDS[background]} needs (it {RULES_NEEDING_DEPTH[background]}): "
                "render the sequence with the Z (Depth) pass on, or choose the background "
                f"rule {RULE_WORDS['vectors']}, which needs no Depth")
        if shape is None:
            shape, first = vec.shape[:2], path
        elif vec.shape[:2] != shape:
            raise BakeError(f"EXR file {path!r} is {vec.shape[1]}x{vec.shape[0]}, "
                            f"{first!r} is {shape[1]}x{shape[0]}: one size for the sequence")
    return tuple(shape)


def check_pixel_aspect(scene):
    """Blender 5.0's multilayer EXR writer fails on non-square pixels ("Conflicting
    attributes ... pixelAspectRatio"): refused before rendering, in words."""
    import bpy
    ax, ay = pixel_aspect(scene)
    if ax != ay and bpy.app.version >= (5, 0, 0):
        raise BakeError(
            f"the render's pixel aspect is {ax:g}:{ay:g} (Output properties > Format > "
            f"Aspect): Blender {bpy.app.version_string} cannot write the Vector and "
            "Depth passes of a render with non-square pixels to the EXR file the bake "
            "reads; set Aspect X and Y to the same value for the bake")


def render_view_layer(scene):
    """The view layer to render: the window's, where it is one of ``scene``'s, else
    the scene's first."""
    import bpy
    layer = getattr(bpy.context, "view_layer", None)
    return layer if layer is not None and bpy.context.scene == scene else scene.view_layers[0]


def bake(ctx):
    s, scene = ctx.settings, ctx.scene
    outputs = [exr_writer(ctx.out_dir)] if s.exr else []
    if s.source == "vectors":
        check_camera(scene)
        check_motion_blur(scene)
        check_pixel_aspect(scene)
        shape = render_size(scene)
        source = {"kind": "blender vectors", "scene": scene.name,
                  "camera": scene.camera.name, "background": s.background}
    else:
        check_motion_blur(scene)
        if s.background == "camera" and scene.camera is None:
            raise BakeError(f"the background rule {RULE_WORDS['camera']} moves the "
                            "background with the camera the sequence was rendered "
                            f"through: set Scene > Camera, or choose {RULE_WORDS['vectors']}"
                            f" or {RULE_WORDS['fresh']}")
        files = exr_files(s.exr_path, ctx.frames)
        shape = check_exr_sequence(files, s.background, ctx.log)
        source = {"kind": "blender exr", "path": s.exr_path, "background": s.background}
    # What decides the noise, so that a resume after an edit is refused, not spliced.
    inputs = ctx.inputs(**({"exr": hash_files(files)} if s.source == "exr" else {}))
    ctx.open_output()
    tmp = ScratchFolder("render") if s.source == "vectors" else None
    try:
        if s.source == "vectors":
            layer = ctx.call(lambda: render_view_layer(scene))
            change = VectorRenderer(scene, layer, tmp.path)
        else:
            change = kept_frame(scene)
        with ctx.scene_change(change) as changed:
            if s.source == "vectors":
                def passes_at(frame):
                    return changed.render(frame)
            else:
                def passes_at(frame):
                    changed(frame)
                    cam = scene.camera
                    return files[frame], (None if cam is None else
                                          camera_matrices(scene, cam, shape[1], shape[0]))

            cache = {}

            def read(frame, path):
                try:
                    ch = read_exr_channels(path)
                except DamagedExrError as exc:
                    if s.source == "vectors":   # the render's file: a full disk?
                        raise changed.failure(frame, path, str(exc)) from None
                    raise
                vec, depth = read_vector_exr(path, ch)
                if ctx.recorder is not None:
                    ctx.recorder.keep_render(frame, read_combined_exr(path, ch))
                return vec, depth

            def passes(frame):
                if frame not in cache:
                    ctx.check_stop(esc=True)
                    if s.source == "vectors":
                        ctx.log(f"[noise] rendering frame {frame}")
                    path, cam = ctx.call(lambda: passes_at(frame))
                    try:
                        vec, depth = read(frame, path)
                    finally:
                        if s.source == "vectors" and os.path.exists(path):
                            os.remove(path)     # read: only the arrays are kept
                    if vec.shape[:2] != tuple(shape):
                        raise BakeError(f"frame {frame}: the Vector pass is "
                                        f"{vec.shape[1]}x{vec.shape[0]}, the bake is "
                                        f"{shape[1]}x{shape[0]}")
                    for old in [k for k in cache if k < frame - 1]:
                        del cache[old]
                    cache[frame] = (vec, depth, cam)
                    ctx.check_stop(esc=True)
                return cache[frame]

            def positions(t):
                ctx.check_stop(esc=True)
                frame = s.frame_start + t + 1
                vec, depth, cam = passes(frame)
                vec_p, depth_p, cam_p = passes(frame - 1)
                pos = backward_positions(vec, depth, vec_p, depth_p,
                                         background=s.background, cam_now=cam,
                                         cam_prev=cam_p)
                if ctx.recorder is not None:
                    ctx.recorder.keep_positions(t, pos)
                return pos

            ctx.report(0, s.frame_start)
            return bake_flow_sequence(
                LazyFrames(ctx.total - 1, positions), ctx.out_dir, method=s.method,
                seed=int(s.seed), channels=int(s.channels),
                latent_factor=int(s.latent_factor), at="centers", shape=shape,
                first_frame=s.frame_start, source=source, progress=False,
                preview=s.preview, resume=s.resume, xp=ctx.xp,
                on_frame=ctx.on_frame(*outputs), target=s.target_choice(),
                inputs=inputs, sidecars=("exr",) if s.exr else ())
    finally:
        if tmp is not None:
            tmp.close()
