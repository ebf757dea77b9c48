"""The bake: scene (or EXR sequence) -> backward positions -> cupy_core's frame loop.
Shared by the operator and headless.py.

``run_bake(scene, settings)`` bakes frames ``frame_start..frame_end`` into
``settings.out_dir`` with ``cupy_core.bake.loop.bake_flow_sequence`` (atomic files,
bake.json, latents.npy, resume). The positions of frame f are computed when the loop
asks for them, so a resumed bake renders only the frames it still needs (and the one
before, for disocclusion).
"""
import dataclasses
import os
import re
import shutil
import tempfile

import numpy as np

from .readers import vectors as V
from .render import BakeError, VectorRenderer, check_scene, render_size

SOURCES = ("vectors", "exr", "surface", "geometry", "volume")
METHODS = ("grid", "particle")
DEVICES = ("auto", "cpu", "gpu")


class BakeCancelled(Exception):
    """The user cancelled; every file on disk is whole and the bake can resume."""


@dataclasses.dataclass
class BakeSettings:
    out_dir: str
    source: str = "vectors"
    exr_path: str = ""                # EXR source: a folder or a pattern with #
    method: str = "grid"
    seed: int = 0
    channels: int = 4
    latent_factor: int = 8
    device: str = "auto"
    exr: bool = False                 # also noise_XXXX.exr
    preview: bool = True              # also preview_XXXX.png
    frame_start: int = None
    frame_end: int = None
    background: str = "camera"        # readers.vectors.BACKGROUND_RULES
    resume: bool = True
    texture_size: int = 512           # surface source: the texture noise is N x N per object
    # volume source (volume_bake.VolumeSettings): object names, not objects
    domain: str = ""                  # the domain box object
    volume_motion: str = "objects"    # objects / fluid / velocity
    motion_objects: tuple = ()        # objects motion: the objects that move the noise
    follow: str = "all"               # all / inside
    velocity_path: str = ""           # velocity: folder of velocity_XXXX.npy or a # path
    fluid_cache: str = ""             # fluid: a cache folder instead of the modifier's
    velocity_units: str = "frame"     # frame / second
    fluid_format: str = "auto"        # auto / mantaflow / world
    resolution: int = 32              # voxels along the domain's longest side
    vdb: bool = True                  # also noise_XXXX.vdb where openvdb exists

    def volume_settings(self):
        """The ``volume_bake.VolumeSettings`` of a "volume" bake."""
        from .volume_bake import VolumeSettings
        return VolumeSettings(
            out_dir=self.out_dir, domain=self.domain or "", motion=self.volume_motion,
            objects=tuple(n for n in self.motion_objects if n), follow=self.follow,
            velocity_path=self.velocity_path, fluid_cache=self.fluid_cache,
            velocity_units=self.velocity_units, fluid_format=self.fluid_format,
            resolution=int(self.resolution), method=self.method, seed=int(self.seed), channels=int(self.channels),
            latent_factor=int(self.latent_factor), device=self.device, vdb=bool(self.vdb),
            frame_start=self.frame_start, frame_end=self.frame_end, resume=self.resume)

    def check(self):
        if self.source not in SOURCES:
            raise BakeError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.method not in METHODS:
            raise BakeError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.device not in DEVICES:
            raise BakeError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.background not in V.BACKGROUND_RULES:
            raise BakeError(f"background must be one of {V.BACKGROUND_RULES}")
        if self.source == "volume":
            if self.follow not in ("all", "inside"):
                raise BakeError(f"follow must be 'all' or 'inside', got {self.follow!r}")
            if self.velocity_units not in ("frame", "second"):
                raise BakeError("velocity units must be 'frame' or 'second', got "
                                f"{self.velocity_units!r}")
            if self.fluid_format not in ("auto", "mantaflow", "world"):
                raise BakeError("fluid cache format must be auto, mantaflow or world, got "
                                f"{self.fluid_format!r}")
            if int(self.resolution) < 1:
                raise BakeError(f"resolution must be >= 1, got {self.resolution}")
        if int(self.channels) < 1:
            raise BakeError(f"channels must be >= 1, got {self.channels}")
        if int(self.texture_size) < 1:
            raise BakeError(f"texture size must be >= 1, got {self.texture_size}")
        if int(self.latent_factor) < 1:
            raise BakeError(f"latent factor must be >= 1, got {self.latent_factor}")
        if self.frame_end < self.frame_start:
            raise BakeError(f"frame range {self.frame_start}-{self.frame_end} is empty")
        if not str(self.out_dir).strip():
            raise BakeError("no output folder given")


# --------------------------------------------------------------------------- devices

def device_info(refresh=False):
    """``{"cupy": version or None, "gpu": name or None, "error": text or None}`` from
    the core's GPU probe (run once per process: it compiles and launches a kernel)."""
    from cupy_core.device import gpu_status
    status = gpu_status(refresh=refresh)
    return {"cupy": status.cupy_version, "gpu": status.name if status.ok else None,
            "error": None if status.ok else f"{status.reason}; {status.advice}"}


def array_module(device):
    """None (NumPy, the CPU) or the ``cupy`` module for ``device``: Auto falls back to
    the CPU (one warning) where the GPU path cannot run, GPU is then a BakeError."""
    from cupy_core.device import GpuUnavailableError, use_gpu
    try:
        if not use_gpu(device):
            return None
    except GpuUnavailableError as exc:
        raise BakeError(f"{exc}; or use CPU / Auto") from None
    import cupy
    return cupy


# --------------------------------------------------------------------------- paths

def resolve_out_dir(path):
    """Blender's ``//`` (relative to the .blend) resolved to an absolute folder."""
    import bpy
    path = bpy.path.abspath(str(path)) if str(path).startswith("//") else str(path)
    return os.path.abspath(os.path.expanduser(path))


def exr_sequence(path, frames):
    """``{frame: file}`` for an EXR sequence: ``path`` is a pattern with # (frame number,
    zero-padded to the count of #) or a folder whose .exr files end in frame numbers."""
    import bpy
    path = bpy.path.abspath(path) if path.startswith("//") else path
    if not path:
        raise BakeError("source 'exr' needs an EXR sequence (a folder or a path with #)")
    files = {}
    if "#" in os.path.basename(path):
        run = re.search(r"#+", os.path.basename(path)).group(0)
        for f in frames:
            files[f] = path.replace(run, f"{f:0{len(run)}d}")
    elif os.path.isdir(path):
        for name in os.listdir(path):
            m = re.search(r"(-?\d+)\.exr$", name, re.IGNORECASE)
            if m:
                files.setdefault(int(m.group(1)), os.path.join(path, name))
    else:
        raise BakeError(f"EXR sequence {path!r}: not a folder and no # in the file name")
    missing = [f for f in frames if f not in files or not os.path.isfile(files[f])]
    if missing:
        raise BakeError(f"EXR sequence {path!r} has no file for frame(s) "
                        f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
    return {f: files[f] for f in frames}


# --------------------------------------------------------------------------- positions

class ScenePositions:
    """Lazy sequence for ``bake_flow_sequence``: item t is frame ``start + t + 1``'s
    backward positions (NaN where disoccluded). ``main(fn)`` runs ``fn`` where Blender
    may be called (the main thread); ``before(frame)`` is called before each frame
    (progress, cancel)."""

    def __init__(self, scene, settings, renderer=None, files=None, main=None, before=None,
                 after=None):
        self.scene = scene
        self.s = settings
        self.renderer = renderer
        self.files = files
        self.main = main or (lambda fn: fn())
        self.before = before
        self.after = after
        self.shape = None
        self._cache = {}

    def __len__(self):
        return self.s.frame_end - self.s.frame_start

    def passes(self, frame):
        if frame not in self._cache:
            if self.renderer is not None:
                path, cam = self.main(lambda: self.renderer.render(frame))
            else:
                path = self.files[frame]
                cam = self.main(lambda: _camera_at(self.scene, frame, self.shape))
            vec, depth = V.read_vector_exr(path)
            if self.shape is not None and vec.shape[:2] != tuple(self.shape):
                raise BakeError(f"frame {frame}: the Vector pass is "
                                f"{vec.shape[1]}x{vec.shape[0]}, the bake is "
                                f"{self.shape[1]}x{self.shape[0]}")
            self._cache = {k: v for k, v in self._cache.items() if k >= frame - 1}
            self._cache[frame] = (vec, depth, cam)
        return self._cache[frame]

    def __getitem__(self, t):
        if not 0 <= t < len(self):
            raise IndexError(t)
        frame = self.s.frame_start + t + 1
        if self.before is not None:
            self.before(frame)
        vec, depth, cam = self.passes(frame)
        vec_p, depth_p, cam_p = self.passes(frame - 1)
        pos = V.backward_positions(vec, depth, vec_p, depth_p, background=self.s.background,
                                   cam_now=cam, cam_prev=cam_p)
        if self.after is not None:
            self.after(frame - 1)
        return pos


def _camera_at(scene, frame, shape):
    if scene is None or scene.camera is None or shape is None:
        return None
    scene.frame_set(frame)
    return V.camera_matrices(scene, scene.camera, shape[1], shape[0])


# --------------------------------------------------------------------------- EXR noise

def write_noise_exr(path, noise):
    """``noise`` (H, W, C) as a float32 EXR, atomically: channels R, G, B, A for C <= 4
    (Blender shows them), else ``noise.00``, ``noise.01``, ..."""
    import OpenEXR  # the bundled wheel
    from cupy_core.bake import files as cio

    c = noise.shape[2]
    names = "RGBA"[:c] if c <= 4 else [f"noise.{i:02d}" for i in range(c)]
    channels = {n: np.ascontiguousarray(noise[..., i], dtype=np.float32)
                for i, n in enumerate(names)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with cio.atomic_path(path) as tmp, OpenEXR.File(header, channels) as f:
        f.write(tmp)


def _exr_for(out_dir, frame):
    from cupy_core.bake import files as cio
    npy = os.path.join(out_dir, cio.frame_name("noise", frame, "npy"))
    exr = os.path.join(out_dir, cio.frame_name("noise", frame, "exr"))
    if os.path.isfile(npy) and not os.path.isfile(exr):
        write_noise_exr(exr, np.load(npy, allow_pickle=False))


# --------------------------------------------------------------------------- the bake

def fill_frames(scene, settings):
    if settings.frame_start is None:
        settings.frame_start = scene.frame_start
    if settings.frame_end is None:
        settings.frame_end = scene.frame_end
    return settings


def run_bake(scene, settings, view_layer=None, *, progress=None, cancelled=None,
             main=None, log=print):
    """Bake; return cupy_core's ``BakeResult``. ``progress(done, total, frame)`` is
    called as frames start; ``cancelled()`` returning True stops the bake between frames
    (``BakeCancelled``); ``main(fn)`` runs Blender calls on the main thread."""
    from cupy_core.bake import files as cio
    from cupy_core.bake.loop import bake_flow_sequence

    s = fill_frames(scene, settings)
    s.check()
    if s.source == "volume":
        from .volume_bake import run_volume_bake
        return run_volume_bake(scene, s.volume_settings(), progress=progress,
                               cancelled=cancelled, main=main, log=log)
    out_dir = resolve_out_dir(s.out_dir)
    try:
        cio.check_output_dir(out_dir)
    except cio.OutputError as exc:
        raise BakeError(str(exc)) from None
    if s.exr:
        try:
            import OpenEXR  # noqa: F401
        except ImportError:
            raise BakeError("EXR output needs the OpenEXR module (bundled with the "
                            "installed add-on; pip install OpenEXR otherwise)") from None
    xp = array_module(s.device)
    view_layer = view_layer or scene.view_layers[0]
    total = s.frame_end - s.frame_start + 1

    def before(frame):
        if cancelled is not None and cancelled():
            raise BakeCancelled(f"bake cancelled at frame {frame}; rerun to resume")
        if progress is not None:
            progress(frame - s.frame_start, total, frame)

    def after(prev_frame):
        if s.exr:
            _exr_for(out_dir, prev_frame)

    frames = range(s.frame_start, s.frame_end + 1)
    if s.source in ("surface", "geometry"):
        try:
            return _mesh_bake(scene, s, out_dir, xp, before, after, progress, main)
        except cio.OutputError as exc:
            raise BakeError(str(exc)) from None
    if s.source == "vectors":
        check_scene(scene)
        shape = render_size(scene)
        source = {"kind": "blender vectors", "scene": scene.name,
                  "camera": scene.camera.name, "background": s.background}
    else:
        if scene.render.use_motion_blur:
            raise BakeError("motion blur is on (Render properties > Motion Blur): the "
                            "Vector pass of renders made with it is empty")
        files = exr_sequence(s.exr_path, frames)
        vec, _ = V.read_vector_exr(files[s.frame_start])
        shape = vec.shape[:2]
        source = {"kind": "blender exr", "path": s.exr_path, "background": s.background}
    tmp = tempfile.mkdtemp(prefix="cupy_noise_render_")
    try:
        if s.source == "vectors":
            renderer = VectorRenderer(scene, view_layer, tmp)
            ctx = renderer
        else:
            renderer, ctx = None, _KeepFrame(scene)   # cameras are read frame by frame
        call = main or (lambda fn: fn())
        call(ctx.__enter__)          # Blender settings change on the main thread only
        try:
            positions = ScenePositions(scene, s, renderer=renderer,
                                       files=None if renderer else files,
                                       main=main, before=before, after=after)
            positions.shape = shape
            if progress is not None:
                progress(0, total, s.frame_start)
            result = bake_flow_sequence(
                positions, out_dir, method=s.method, seed=int(s.seed),
                channels=int(s.channels), latent_factor=int(s.latent_factor),
                at="centers", shape=shape, first_frame=s.frame_start, source=source,
                progress=False, preview=s.preview, resume=s.resume, xp=xp)
        finally:
            call(lambda: ctx.__exit__(None, None, None))
        return _finished(result, out_dir, s, progress, total)
    except cio.OutputError as exc:
        raise BakeError(str(exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _KeepFrame:
    """Puts the scene back on its current frame afterwards."""

    def __init__(self, scene):
        self.scene = scene

    def __enter__(self):
        self.frame = self.scene.frame_current
        return self

    def __exit__(self, *exc):
        if self.scene.frame_current != self.frame:
            self.scene.frame_set(self.frame)
        return False


def load_preview(out_dir, first_frame, name="Warped noise preview"):
    """Load ``preview_XXXX.png`` as an image sequence (scrub it in the Image editor)."""
    import bpy
    from cupy_core.bake import files as cio

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


# --------------------------------------------------------------------------- meshes

# The add-on's background setting for the mesh sources: "camera" (At Infinity) and
# "fresh" keep their meaning; "vectors" (As Rendered) means the noise stays on the
# screen. A surface bake has no camera rule: off-surface pixels get fresh noise unless
# "vectors" asks for static screen noise.
_SURFACE_BACKGROUND = {"camera": "fresh", "fresh": "fresh", "vectors": "static"}
_GEOMETRY_BACKGROUND = {"camera": "camera", "fresh": "fresh", "vectors": "screen"}


def _mesh_bake(scene, s, out_dir, xp, before, after, progress, main):
    """Sources "surface" (noise in the meshes' UV textures, carried to the screen each
    frame) and "geometry" (screen noise chained by the meshes' exact motion at pixel
    corners): evaluated meshes and camera matrices, no render."""
    from cupy_core.surface.bake import bake_geometry_sequence, bake_surface_sequence
    from cupy_core.surface.maps import geometry_positions, uv_positions

    from .readers.geometry import render_objects, scene_camera, scene_mesh

    if scene.camera is None:
        raise BakeError(f"scene {scene.name!r} has no camera: set Scene > Camera")
    call = main or (lambda fn: fn())
    shape = render_size(scene)
    total = s.frame_end - s.frame_start + 1
    old_frame = scene.frame_current

    def objects():
        import bpy
        try:
            call(lambda: scene.frame_set(s.frame_start))
            return call(lambda: render_objects(scene, bpy.context.evaluated_depsgraph_get()))
        except BaseException:      # the bake's own try restores the frame after this
            call(lambda: scene.frame_set(old_frame))
            raise

    obs = objects()
    cache = {}

    def at(frame):
        if frame not in cache:
            def grab():
                mesh, _ = scene_mesh(scene, frame, obs)
                return mesh, scene_camera(scene, shape[1], shape[0])
            cache.clear() if len(cache) > 2 else None
            cache[frame] = call(grab)
        return cache[frame]

    source = {"kind": f"blender {s.source}", "scene": scene.name,
              "camera": scene.camera.name, "objects": [ob.name for ob in obs],
              "background": s.background}
    common = dict(shape=shape, method=s.method, seed=int(s.seed), channels=int(s.channels),
                  latent_factor=int(s.latent_factor), first_frame=s.frame_start,
                  source=source, progress=False, preview=s.preview, resume=s.resume, xp=xp)
    if progress is not None:
        progress(0, total, s.frame_start)
    try:
        if s.source == "surface":
            class Maps:
                def __getitem__(self, i):
                    frame = s.frame_start + i
                    if i > 0:
                        before(frame)
                        after(frame - 1)
                    mesh, cam = at(frame)
                    if mesh.uv is None or not np.isfinite(mesh.uv).any():
                        raise BakeError("the surface source needs meshes with a UV map")
                    return uv_positions(mesh, cam, int(s.texture_size))

            result = bake_surface_sequence(
                Maps(), out_dir, frame_count=total, texture_size=int(s.texture_size),
                tiles=max(1, len(obs)), background=_SURFACE_BACKGROUND[s.background],
                **common)
        else:
            class Positions:
                def __len__(self):
                    return total - 1

                def __getitem__(self, t):
                    if not 0 <= t < total - 1:
                        raise IndexError(t)
                    frame = s.frame_start + t + 1
                    before(frame)
                    prev_mesh, prev_cam = at(frame - 1)
                    mesh, cam = at(frame)
                    pos = geometry_positions(mesh, prev_mesh, cam, prev_cam,
                                             background=_GEOMETRY_BACKGROUND[s.background])
                    after(frame - 1)
                    return pos

            result = bake_geometry_sequence(Positions(), out_dir, **common)
    finally:
        call(lambda: scene.frame_set(old_frame))
    return _finished(result, out_dir, s, progress, total)


def _finished(result, out_dir, s, progress, total):
    """A bake's last step: the EXR copies asked for, and 100 % progress."""
    if s.exr:
        for f in result.frames:
            _exr_for(out_dir, f)
    if progress is not None:
        progress(total, total, s.frame_end)
    return result
