"""Sources "vectors" (render the Vector and Depth passes of every frame, Cycles at 1
sample, into a temporary folder) and "exr" (an EXR sequence already rendered with
them): the passes of frames f-1 and f and the cameras make frame f's backward
positions at pixel centres (``cupy_core.vector_pass``: disocclusion, background
rules), computed only when the loop asks, so a resumed bake renders only the frames
it still needs (and the one before)."""
import shutil
import tempfile

from cupy_core.bake.loop import LazyFrames, bake_flow_sequence
from cupy_core.bake.sequences import sequence_files
from cupy_core.vector_pass import backward_positions

from ..errors import BakeError
from ..paths import abspath
from ..readers.vectors import (camera_matrices, read_combined_exr, read_vector_exr,
                               render_size)
from .context import check_camera, check_motion_blur
from .outputs import exr_writer
from .scene_changes import VectorRenderer, kept_frame


def exr_files(path, frames):
    """``{frame: file}`` of an EXR sequence: ``path`` is a pattern with # or a folder
    whose .exr files end in frame numbers."""
    if not path:
        raise BakeError("source 'exr' needs an EXR sequence (a folder or a path with #)")
    return sequence_files(abspath(path), frames, what="EXR sequence",
                          name_pattern=r"(?i).*?(-?\d+)\.exr", error=BakeError)


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
        shape = render_size(scene)
        source = {"kind": "blender vectors", "scene": scene.name,
                  "camera": scene.camera.name, "background": s.background}
    else:
        check_motion_blur(scene)
        files = exr_files(s.exr_path, ctx.frames)
        shape = read_vector_exr(files[s.frame_start])[0].shape[:2]
        source = {"kind": "blender exr", "path": s.exr_path, "background": s.background}
    tmp = tempfile.mkdtemp(prefix="cupy_noise_render_")
    try:
        if s.source == "vectors":
            layer = ctx.call(lambda: render_view_layer(scene))
            change = VectorRenderer(scene, layer, tmp)
        else:
            change = kept_frame(scene)
        with ctx.scene_change(change) as changed:
            if s.source == "vectors":
                def passes_at(frame):
                    return changed.render(frame)
            else:
                def passes_at(frame):
                    def camera():
                        if scene.camera is None:
                            return None
                        changed(frame)
                        return camera_matrices(scene, scene.camera, shape[1], shape[0])
                    return files[frame], camera()

            cache = {}

            def passes(frame):
                if frame not in cache:
                    path, cam = ctx.call(lambda: passes_at(frame))
                    vec, depth = read_vector_exr(path)
                    if ctx.recorder is not None:
                        ctx.recorder.keep_render(frame, read_combined_exr(path))
                    if vec.shape[:2] != tuple(shape):
                        raise BakeError(f"frame {frame}: the Vector pass is "
                                        f"{vec.shape[1]}x{vec.shape[0]}, the bake is "
                                        f"{shape[1]}x{shape[0]}")
                    for old in [k for k in cache if k < frame - 1]:
                        del cache[old]
                    cache[frame] = (vec, depth, cam)
                return cache[frame]

            def positions(t):
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
                on_frame=ctx.on_frame(*outputs),
                target=s.target_choice())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
