"""Sources "surface" (noise in the meshes' UV textures, carried to the screen each
frame) and "geometry" (screen noise chained by the meshes' exact motion at pixel
corners): the evaluated render meshes and the camera of each frame, no render
(``readers.geometry``), into ``cupy_core.surface``'s bakes."""
import numpy as np

from cupy_core.bake.loop import LazyFrames
from cupy_core.conventions import corners_to_centers
from cupy_core.surface.bake import bake_geometry_sequence, bake_surface_sequence
from cupy_core.surface.maps import geometry_positions, uv_positions

from ..errors import BakeError
from ..readers.geometry import render_objects, scene_camera, scene_mesh
from ..readers.vectors import render_size
from .context import check_camera
from .outputs import exr_writer
from .scene_changes import kept_frame

# The add-on's background setting for the mesh sources: "camera" (At Infinity) and
# "fresh" keep their meaning; "vectors" (As Rendered) means the noise stays on the
# screen. A surface bake has no camera rule: off-surface pixels get fresh noise unless
# "vectors" asks for static screen noise.
SURFACE_BACKGROUND = {"camera": "fresh", "fresh": "fresh", "vectors": "static"}
GEOMETRY_BACKGROUND = {"camera": "camera", "fresh": "fresh", "vectors": "screen"}


def bake(ctx):
    import bpy

    s, scene = ctx.settings, ctx.scene
    check_camera(scene)
    outputs = [exr_writer(ctx.out_dir)] if s.exr else []
    h, w = shape = render_size(scene)
    with ctx.scene_change(kept_frame(scene)) as goto:
        def objects():
            goto(s.frame_start)
            return render_objects(scene, bpy.context.evaluated_depsgraph_get())

        obs = ctx.call(objects)
        cache = {}

        def at(frame):
            """``(mesh, camera)`` of ``frame`` (the last three kept)."""
            if frame not in cache:
                ctx.check_stop(esc=True)

                def grab():
                    goto(frame)
                    return scene_mesh(scene, obs)[0], scene_camera(scene, w, h)
                if len(cache) > 2:
                    cache.clear()
                cache[frame] = ctx.call(grab)
            return cache[frame]

        source = {"kind": f"blender {s.source}", "scene": scene.name,
                  "camera": scene.camera.name, "objects": [ob.name for ob in obs],
                  "background": s.background}
        common = dict(shape=shape, method=s.method, seed=int(s.seed),
                      channels=int(s.channels), latent_factor=int(s.latent_factor),
                      first_frame=s.frame_start, source=source, progress=False,
                      preview=s.preview, resume=s.resume, xp=ctx.xp,
                      on_frame=ctx.on_frame(*outputs), target=s.target_choice(),
                      sidecars=("exr",) if s.exr else ())
        def check_uv(mesh):
            if mesh.uv is None or not np.isfinite(mesh.uv).any():
                raise BakeError("the surface source needs meshes with a UV map")

        if s.source == "surface":
            check_uv(at(s.frame_start)[0])     # before anything is written
        common["inputs"] = ctx.inputs()      # a resume after an edit is refused
        ctx.open_output()
        ctx.report(0, s.frame_start)
        if s.source == "surface":
            def uv_map(i):
                ctx.check_stop(esc=True)
                mesh, cam = at(s.frame_start + i)
                check_uv(mesh)
                return uv_positions(mesh, cam, int(s.texture_size))

            return bake_surface_sequence(
                LazyFrames(ctx.total, uv_map), ctx.out_dir, frame_count=ctx.total,
                texture_size=int(s.texture_size), tiles=max(1, len(obs)),
                background=SURFACE_BACKGROUND[s.background], **common)

        def positions(t):
            ctx.check_stop(esc=True)
            frame = s.frame_start + t + 1
            prev_mesh, prev_cam = at(frame - 1)
            mesh, cam = at(frame)
            pos = geometry_positions(mesh, prev_mesh, cam, prev_cam,
                                     background=GEOMETRY_BACKGROUND[s.background])
            if ctx.recorder is not None:
                ctx.recorder.keep_positions(t, corners_to_centers(pos))
            return pos

        return bake_geometry_sequence(LazyFrames(ctx.total - 1, positions), ctx.out_dir,
                                      **common)
