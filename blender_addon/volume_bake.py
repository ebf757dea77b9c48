"""The volume bake (source "volume"): a domain box sets the voxel grid; the 3-D
backward map of frame f comes from

* ``motion="objects"``: the chosen objects at f and f-1 (``follow="all"``: the first
  object drives the whole domain; "inside": voxels in an object's bounding box follow
  it, the rest stay still in world space; see ``cupy_core.volume.grid``). An object
  moves the noise rigidly (or affinely: scaled, bone-parented) by its evaluated
  ``matrix_world``; a lattice or an armature *deforms* it as it deforms a mesh bound to
  it (``readers.volume.DeformationProbe``; armatures through their bone envelopes);
* ``motion="fluid"``: the domain's baked fluid cache (OpenVDB, ``<cache>/data``).
  Blender's own cache (``fluid_format`` "auto" or "mantaflow"): the staggered
  ``velocity`` grid in cells per Mantaflow time unit, placed by the domain object's box
  and matrix (``cupy_core.volume.mantaflow``); a cache from another tool ("world"): the
  Vec3 grid whose name contains "vel", placed by its transform, in world units per
  ``velocity_units``. Every voxel corner is traced back through frame f's field (RK2);
* ``motion="velocity"``: a velocity sequence on disk, ``velocity_XXXX.npy`` (see
  ``cupy_core.volume.grid.load_velocity_frame``) on the domain's grid at frame f, or
  ``velocity_XXXX.vdb`` (a Vec3 grid named like "vel", placed by its transform).

Outputs: ``noise_XXXX.npy`` ``(D, H, W, C)``, ``latents.npy``, ``bake.json`` (cupy_core's
3-D bake loop, atomic files, resume; its source records whether ``.vdb`` files were
written and why not) and, where the openvdb module exists (bpy 4.5 and 5.0),
``noise_XXXX.vdb`` (grids ``noise_0``..) loaded back as a Volume object.
Every input frame is checked before the first frame is written; the scene's frame is
restored and any probe removed, after success, error or cancel.
"""
import dataclasses
import os

from .errors import BakeError

MOTIONS = ("objects", "fluid", "velocity")


@dataclasses.dataclass
class VolumeSettings:
    out_dir: str
    domain: str = ""                  # the domain object's name
    motion: str = "objects"           # MOTIONS
    objects: tuple = ()               # object motion: names
    follow: str = "all"               # "all" or "inside"
    velocity_path: str = ""           # velocity: folder of velocity_XXXX.npy or a # path
    fluid_cache: str = ""             # fluid: a cache folder instead of the modifier's
    velocity_units: str = "frame"     # "frame" or "second" (with the scene's fps)
    fluid_format: str = "auto"        # "auto", "mantaflow" (Blender's cache) or "world"
    probe_cells: int = 48             # deformers: probe cells along its longest side
    resolution: int = 32              # voxels along the domain's longest side
    substeps: int = 2                 # RK2 steps per frame for velocity fields
    method: str = "grid"
    seed: int = 0
    channels: int = 4
    latent_factor: int = 1
    device: str = "auto"
    vdb: bool = True                  # also noise_XXXX.vdb where openvdb exists
    load_volume: bool = True          # load the VDB sequence as a Volume object
    frame_start: int = None
    frame_end: int = None
    resume: bool = True


def run_volume_bake(scene, s, *, progress=None, cancelled=None, main=None, log=print):
    """Bake volume noise for ``scene`` with ``VolumeSettings`` ``s``; return cupy_core's
    ``BakeResult`` (with ``vdb`` and ``vdb_note`` attributes added)."""
    from cupy_core.bake import files as cio
    from cupy_core.volume import (VelocityGrid, VolumeInputError, backtrace_positions,
                                  bake_volume_sequence, load_velocity_frame,
                                  mantaflow_velocity_grid, object_positions, velocity_sequence)

    from . import vdb as V
    from .bake import array_module, resolve_out_dir
    from .readers import volume as R

    call = main or (lambda fn: fn())
    if s.frame_start is None:
        s.frame_start = scene.frame_start
    if s.frame_end is None:
        s.frame_end = scene.frame_end
    if s.frame_end < s.frame_start:
        raise BakeError(f"frame range {s.frame_start}-{s.frame_end} is empty")
    if s.motion not in MOTIONS:
        raise BakeError(f"volume motion must be one of {MOTIONS}, got {s.motion!r}")
    if int(s.channels) < 1 or int(s.resolution) < 1 or int(s.latent_factor) < 1:
        raise BakeError("channels, resolution and latent factor must be >= 1")
    if not str(s.out_dir).strip():
        raise BakeError("no output folder given")
    if not s.domain:
        raise BakeError("volume noise needs a domain: choose a box object as the domain")
    dom_ob = R.find_object(s.domain, "domain")
    frames = list(range(s.frame_start, s.frame_end + 1))
    fps = scene.render.fps / scene.render.fps_base
    out_dir = resolve_out_dir(s.out_dir)
    try:
        cio.check_output_dir(out_dir)
    except cio.OutputError as exc:
        raise BakeError(str(exc)) from None
    xp = array_module(s.device)
    write_vdb = bool(s.vdb) and V.available()
    note = None if write_vdb or not s.vdb else V.why_unavailable()
    if note:
        log(f"[noise] {note}")

    # --- everything from the scene, checked before anything is written
    movers = []
    if s.motion == "objects":
        names = [n for n in s.objects if n] or []
        if not names:
            raise BakeError("object motion needs at least one object to follow")
        movers = [R.find_object(n, "moving") for n in names]
    elif s.motion == "fluid":
        cache = R.fluid_cache_files(dom_ob, frames[1:], bpy_abspath(s.fluid_cache))
        if cache and not V.available():
            raise BakeError("the fluid cache is OpenVDB, which needs the openvdb module: "
                            f"{V.why_unavailable()}")
    else:
        try:
            vfiles = velocity_sequence(bpy_abspath(s.velocity_path), frames[1:])
        except VolumeInputError as exc:
            raise BakeError(str(exc)) from None
        if any(p.endswith(".vdb") for p in vfiles.values()) and not V.available():
            raise BakeError("the velocity sequence has .vdb files, which need the openvdb "
                            f"module: {V.why_unavailable()}")
    old = scene.frame_current
    grids, mats, boxes, dom_boxes = {}, {}, {}, {}

    def grab():
        try:
            for f in frames:
                scene.frame_set(f)
                grids[f] = R.domain_grid(dom_ob, s.resolution)
                dom_boxes[f] = (R.local_box(dom_ob), R.matrix_world(dom_ob))
                mats[f] = [R.matrix_world(ob) for ob in movers]
                boxes[f] = [R.local_box(ob) for ob in movers]
        finally:
            scene.frame_set(old)

    call(grab)
    layout = None
    if s.motion == "fluid" and len(frames) > 1:
        layout = R.fluid_layout(dom_ob, cache[frames[1]], s.fluid_format)
    shape = grids[frames[0]].shape
    for f in frames:
        if grids[f].shape != shape:
            raise BakeError(f"the domain's grid changed from {shape} to {grids[f].shape} at "
                            f"frame {f}: keep the domain's proportions fixed")
    total = len(frames)

    class Positions:
        def __len__(self):
            return total - 1

        def __getitem__(self, t):
            f = frames[t + 1]
            if cancelled is not None and cancelled():
                from .bake import BakeCancelled
                raise BakeCancelled(f"bake cancelled at frame {f}; rerun to resume")
            if progress is not None:
                progress(t + 1, total, f)
            now, prev = grids[f], grids[f - 1]
            try:
                if s.motion == "objects":
                    deform = {}
                    for n, probe in probes.items():
                        deform[n] = call(lambda: probe.sample(f, now.corners_world()))
                    return object_positions(
                        now, prev, [(mats[f][n], mats[f - 1][n], boxes[f][n], deform.get(n))
                                    for n in range(len(movers))], follow=s.follow)
                if s.motion == "fluid":
                    vel = fluid_velocity(f)
                elif vfiles[f].endswith(".vdb"):      # placed by its own transform
                    try:
                        data, m, _ = V.read_velocity_vdb(vfiles[f])
                    except ValueError as exc:
                        raise BakeError(f"velocity frame {f}: {exc}") from None
                    vel = VelocityGrid(data, m, units=s.velocity_units, fps=fps)
                else:
                    data = load_velocity_frame(vfiles[f], shape)
                    vel = VelocityGrid(data, now.voxel_to_world, units=s.velocity_units,
                                       fps=fps)
                return backtrace_positions(now, prev, vel, substeps=int(s.substeps))
            except VolumeInputError as exc:
                raise BakeError(f"frame {f}: {exc}") from None

    def fluid_velocity(f):
        try:
            if layout["format"] == "mantaflow":
                raw, staggered = V.read_mantaflow_velocity(cache[f], layout["resolution"])
                (bmin, bmax), m = dom_boxes[f]
                return mantaflow_velocity_grid(raw, bmin, bmax, m, fps, layout["time_scale"],
                                               staggered=staggered)
            data, m, _ = V.read_velocity_vdb(cache[f])
        except ValueError as exc:
            raise BakeError(f"fluid cache frame {f}: {exc}") from None
        units = "second" if s.velocity_units == "second" else "frame"
        return VelocityGrid(data, m, units=units, fps=fps)

    def on_frame(frame, noise):
        if not write_vdb:
            return
        path = os.path.join(out_dir, cio.frame_name("noise", frame, "vdb"))
        if not os.path.isfile(path):
            V.write_noise_vdb(path, noise, grids[frame].voxel_to_world)

    source = {"kind": "blender volume", "scene": scene.name, "domain": dom_ob.name,
              "motion": s.motion, "objects": [ob.name for ob in movers],
              "follow": s.follow, "velocity": s.velocity_path,
              "velocity_units": s.velocity_units, "resolution": int(s.resolution),
              "voxel_size": grids[frames[0]].voxel_size,
              "voxels": list(grids[frames[0]].shape[::-1]),
              "substeps": int(s.substeps), "vdb": write_vdb, "vdb_note": note,
              "deformers": [ob.name for ob in movers if R.is_deformer(ob)],
              "fluid": layout}
    probes = {}
    if progress is not None:
        progress(0, total, frames[0])
    try:
        def make_probes():
            for n, ob in enumerate(movers):
                if R.is_deformer(ob):
                    probes[n] = R.DeformationProbe(scene, ob, frames[0],
                                                   max_cells=int(s.probe_cells))
        call(make_probes)
        result = bake_volume_sequence(
            Positions(), out_dir, shape=shape, method=s.method, seed=int(s.seed),
            channels=int(s.channels), latent_factor=int(s.latent_factor),
            first_frame=frames[0], source=source, resume=s.resume, xp=xp, on_frame=on_frame)
    except (cio.OutputError, VolumeInputError) as exc:
        raise BakeError(str(exc)) from None
    finally:
        def tidy():
            for probe in probes.values():
                probe.remove()
            if scene.frame_current != old:
                scene.frame_set(old)
        call(tidy)
    result.vdb = write_vdb
    result.vdb_note = note
    if write_vdb and s.load_volume:
        call(lambda: R.load_volume_sequence(out_dir, frames[0], total, scene=scene))
    if progress is not None:
        progress(total, total, frames[-1])
    return result


def bpy_abspath(path):
    import bpy
    path = str(path)
    return bpy.path.abspath(path) if path.startswith("//") else path
