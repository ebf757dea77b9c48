"""Source "volume": a domain box sets the voxel grid; the 3-D backward map of frame f
comes from

* ``volume_motion="objects"``: the chosen objects at f and f-1 (``follow="all"``: the
  first object drives the whole domain; "inside": voxels in an object's bounding box
  follow it, the rest stay still in world space; see ``cupy_core.volume.grid``). An
  object moves the noise rigidly (or affinely: scaled, bone-parented) by its evaluated
  ``matrix_world``; a lattice or an armature *deforms* it as it deforms a mesh bound to
  it (``scene_changes.DeformationProbe``; armatures through their bone envelopes);
* ``volume_motion="fluid"``: the domain's baked fluid cache (OpenVDB, ``<cache>/data``).
  Blender's own cache (``fluid_format`` "auto" or "mantaflow"): the staggered
  ``velocity`` grid in cells per Mantaflow time unit, placed by the domain object's box
  and matrix (``cupy_core.volume.mantaflow``); a cache from another tool ("world"): the
  Vec3 grid whose name contains "vel", placed by its transform, in world units per
  ``velocity_units``. Every voxel corner is traced back through frame f's field (RK2);
* ``volume_motion="velocity"``: a velocity sequence on disk, ``velocity_XXXX.npy`` (see
  ``cupy_core.volume.grid.load_velocity_frame``) on the domain's grid at frame f, or
  ``velocity_XXXX.vdb`` (a Vec3 grid named like "vel", placed by its transform).

Outputs: ``noise_XXXX.npy`` ``(D, H, W, C)``, ``latents.npy``, ``bake.json`` (cupy_core's
3-D bake loop; its source records whether ``.vdb`` files were written and why not)
and, where the openvdb module exists (bpy 4.5 and 5.0), ``noise_XXXX.vdb`` (grids
``noise_0``..; the ``on_frame`` hook). Every input frame is checked before the first
frame is written.
"""
from cupy_core.bake.fingerprint import hash_files
from cupy_core.bake.loop import LazyFrames
from cupy_core.volume import (VelocityGrid, VolumeInputError, backtrace_positions,
                              bake_volume_sequence, load_velocity_frame,
                              mantaflow_velocity_grid, object_positions, velocity_sequence)

from .. import vdb as V
from ..errors import BakeError
from ..paths import abspath
from ..readers import volume as R
from .outputs import vdb_writer
from .scene_changes import deformation_probes, kept_frame


def inputs(ctx, dom_ob, frames):
    """What the motion reads from disk, checked before anything is written:
    ``(movers, fluid cache files, velocity files)``."""
    s = ctx.settings
    movers, cache, vfiles = [], None, None
    if s.volume_motion == "objects":
        movers = [R.find_object(n, "moving") for n in s.motion_objects]
    elif s.volume_motion == "fluid":
        cache = R.fluid_cache_files(dom_ob, frames[1:], abspath(s.fluid_cache))
        if cache and not V.available():
            raise BakeError("the fluid cache is OpenVDB, which needs the openvdb module: "
                            f"{V.why_unavailable()}")
    else:
        vfiles = velocity_sequence(abspath(s.velocity_path), frames[1:])
        if any(p.endswith(".vdb") for p in vfiles.values()) and not V.available():
            raise BakeError("the velocity sequence has .vdb files, which need the openvdb "
                            f"module: {V.why_unavailable()}")
    return movers, cache, vfiles


def bake(ctx):
    """Bake; the result has ``vdb`` (whether .vdb files were written) and ``vdb_note``
    (why not) added."""
    s, scene = ctx.settings, ctx.scene
    dom_ob = R.find_object(s.domain, "domain")
    frames = list(ctx.frames)
    fps = scene.render.fps / scene.render.fps_base
    write_vdb = bool(s.vdb) and V.available()
    note = None if write_vdb or not s.vdb else V.why_unavailable()
    if note:
        ctx.log(f"[noise] {note}")
    movers, cache, vfiles = inputs(ctx, dom_ob, frames)

    with ctx.scene_change(kept_frame(scene)) as goto:
        def read_scene():
            grids, dom_boxes, mats, boxes = {}, {}, {}, {}
            for f in frames:
                ctx.check_stop(esc=True)
                goto(f)
                grids[f] = R.domain_grid(dom_ob, s.resolution)
                dom_boxes[f] = (R.local_box(dom_ob), R.matrix_world(dom_ob))
                mats[f] = [R.matrix_world(ob) for ob in movers]
                boxes[f] = [R.local_box(ob) for ob in movers]
            return grids, dom_boxes, mats, boxes

        grids, dom_boxes, mats, boxes = ctx.call(read_scene)
        layout = None
        if s.volume_motion == "fluid" and len(frames) > 1:
            layout = R.fluid_layout(dom_ob, cache[frames[1]], s.fluid_format)
        shape = grids[frames[0]].shape
        for f in frames:
            if grids[f].shape != shape:
                raise BakeError(f"the domain's grid changed from {shape} to {grids[f].shape} "
                                f"at frame {f}: keep the domain's proportions fixed")

        def fluid_velocity(f):
            try:
                if layout["format"] == "mantaflow":
                    raw, staggered = V.read_mantaflow_velocity(cache[f], layout["resolution"])
                    (bmin, bmax), m = dom_boxes[f]
                    return mantaflow_velocity_grid(raw, bmin, bmax, m, fps,
                                                   layout["time_scale"], staggered=staggered)
                data, m, _ = V.read_velocity_vdb(cache[f])
            except ValueError as exc:
                raise BakeError(f"fluid cache frame {f}: {exc}") from None
            return VelocityGrid(data, m, units=s.velocity_units, fps=fps)

        def file_velocity(f, now):
            if vfiles[f].endswith(".vdb"):      # placed by its own transform
                try:
                    data, m, _ = V.read_velocity_vdb(vfiles[f])
                except ValueError as exc:
                    raise BakeError(f"velocity frame {f}: {exc}") from None
                return VelocityGrid(data, m, units=s.velocity_units, fps=fps)
            data = load_velocity_frame(vfiles[f], shape)
            return VelocityGrid(data, now.voxel_to_world, units=s.velocity_units, fps=fps)

        source = {"kind": "blender volume", "scene": scene.name, "domain": dom_ob.name,
                  "motion": s.volume_motion, "objects": [ob.name for ob in movers],
                  "follow": s.follow, "velocity": s.velocity_path,
                  "velocity_units": s.velocity_units, "resolution": int(s.resolution),
                  "voxel_size": grids[frames[0]].voxel_size,
                  "voxels": list(grids[frames[0]].shape[::-1]),
                  "substeps": int(s.substeps), "vdb": write_vdb, "vdb_note": note,
                  "deformers": [ob.name for ob in movers if R.is_deformer(ob)],
                  "fluid": layout}
        more = {"velocity": hash_files(vfiles)} if vfiles else {}
        if cache:
            more["fluid"] = hash_files(cache)
        fingerprint = ctx.inputs(**more)     # a resume after an edit is refused
        ctx.open_output()
        ctx.report(0, frames[0])
        probes_change = deformation_probes(scene, movers, frames[0], int(s.probe_cells))
        with ctx.scene_change(probes_change) as probes:
            def positions(t):
                ctx.check_stop(esc=True)
                f = frames[t + 1]
                now, prev = grids[f], grids[f - 1]
                try:
                    if s.volume_motion == "objects":
                        deform = {n: ctx.call(lambda: probe.sample(f, now.corners_world()))
                                  for n, probe in probes.items()}
                        return object_positions(
                            now, prev, [(mats[f][n], mats[f - 1][n], boxes[f][n],
                                         deform.get(n)) for n in range(len(movers))],
                            follow=s.follow)
                    vel = (fluid_velocity(f) if s.volume_motion == "fluid"
                           else file_velocity(f, now))
                    return backtrace_positions(now, prev, vel, substeps=int(s.substeps))
                except VolumeInputError as exc:
                    raise BakeError(f"frame {f}: {exc}") from None

            outputs = [vdb_writer(ctx.out_dir, {f: grids[f].voxel_to_world for f in frames})
                       ] if write_vdb else []
            result = bake_volume_sequence(
                LazyFrames(len(frames) - 1, positions), ctx.out_dir, shape=shape,
                method=s.method, seed=int(s.seed), channels=int(s.channels),
                latent_factor=int(s.latent_factor), first_frame=frames[0], source=source,
                resume=s.resume, xp=ctx.xp, on_frame=ctx.on_frame(*outputs),
                inputs=fingerprint, sidecars=("vdb",) if write_vdb else ())
    result.vdb = write_vdb
    result.vdb_note = note
    return result
