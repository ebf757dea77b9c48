"""What every source's bake shares: ``BakeContext`` (the scene, the checked settings,
the output folder, the array module, progress, cancel, the main-thread caller) and
its ``on_frame`` hook for cupy_core's frame loop."""
import contextlib
import os
import dataclasses

from cupy_core.bake import files as cio
from cupy_core.device import GpuUnavailableError, array_module

from ..errors import BakeCancelled, BakeError
from ..paths import abs_folder
from .stops import StopSignals

# Blender's frame limits (MINAFRAME, MAXFRAME)
MIN_FRAME, MAX_FRAME = -1048574, 1048574
SCREEN_SOURCES = ("vectors", "surface", "geometry")


@dataclasses.dataclass
class BakeContext:
    """One bake. ``progress(done, total, frame)`` is called before the first frame and
    as each frame is on disk; ``cancelled()`` returning True stops the bake after the
    frame on disk (``BakeCancelled``); ``main(fn)`` runs ``fn`` on Blender's main
    thread (the modal operator's worker hands Blender calls over; None: call here);
    ``log(text)`` prints notes."""
    scene: object
    settings: object                 # settings.BakeSettings, checked, frames filled in
    out_dir: str = None              # the absolute output folder
    xp: object = None                # numpy or cupy
    progress: object = None
    cancelled: object = None
    main: object = None
    log: object = print
    recorder: object = None          # outputs.PreviewRecorder with the preview on
    stops: object = None             # stops.StopSignals (SIGINT, SIGTERM)
    last_done: int = None            # the last frame on disk (for the messages)

    @classmethod
    def start(cls, scene, settings, **hooks):
        """Check the settings against the scene; nothing is written (the output folder
        is made by ``open_output``, after the source's own checks)."""
        s = settings.for_scene(scene)
        check_frames(scene, s, hooks.get("log") or print)
        if s.source in SCREEN_SOURCES:
            check_render_size(scene)
        check_target(scene, s)
        out_dir = abs_folder(s.out_dir)
        try:
            xp = array_module(s.device)
        except GpuUnavailableError as exc:
            raise BakeError(f"{exc}; or use CPU / Auto") from None
        hooks.setdefault("stops", StopSignals())
        return cls(scene, s, out_dir, xp, **hooks)

    def open_output(self):
        """The output folder, created and checked writable: call it after every check
        of the input, just before the core loop (a refused bake writes nothing)."""
        self.check_stop()
        try:
            cio.check_output_dir(self.out_dir)
        except cio.OutputError as exc:
            raise BakeError(str(exc)) from None

    def check_stop(self, esc=False):
        """A safe point: raise ``BakeInterrupted`` if SIGINT or SIGTERM arrived (and,
        with ``esc``, ``BakeCancelled`` if the UI's Esc was pressed)."""
        if self.stops is not None and self.stops.requested:
            self.stops.check(self._stopped_words())
        if esc and self.cancelled is not None and self.cancelled():
            raise BakeCancelled(self._stopped_words("bake cancelled"))

    def _stopped_words(self, head="stopped"):
        done = (f"after frame {self.last_done}" if self.last_done is not None
                else "before the first frame")
        return (f"{head} {done}; every file in {self.out_dir} is whole: rerun the same "
                "bake to resume")

    @property
    def frames(self):
        return range(self.settings.frame_start, self.settings.frame_end + 1)

    @property
    def total(self):
        return len(self.frames)

    def call(self, fn):
        """``fn()`` on the main thread."""
        return fn() if self.main is None else self.main(fn)

    @contextlib.contextmanager
    def scene_change(self, change):
        """Enter and exit the context manager ``change`` (``scene_changes``) on the main
        thread; what it changed is undone on the way out, however the bake ends."""
        value = self.call(change.__enter__)
        try:
            yield value
        except BaseException as exc:
            if not self.call(lambda: change.__exit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.call(lambda: change.__exit__(None, None, None))

    def inputs(self, **more):
        """What decides this bake's noise, for bake.json (a resume whose inputs changed
        is refused, naming what): the saved .blend's content, the scene's evaluated
        motion at every frame (``readers.geometry.motion_signature``: unsaved edits
        count too), and ``more`` (files the source reads)."""
        import bpy

        from cupy_core.bake.fingerprint import hash_file

        from ..readers.geometry import motion_signature
        from .scene_changes import kept_frame

        def motion():
            with kept_frame(self.scene) as goto:
                signatures = {}
                for frame in self.frames:
                    goto(frame)
                    signatures[str(frame)] = motion_signature(
                        self.scene, bpy.context.evaluated_depsgraph_get())
                    self.check_stop()
                return signatures

        blend = bpy.data.filepath
        found = {"blend": hash_file(blend) if blend and os.path.isfile(blend) else None,
                 "motion": self.call(motion)}
        found.update(more)
        return found

    def report(self, done, frame):
        if self.progress is not None:
            self.progress(done, self.total, frame)

    def on_frame(self, *outputs):
        """The loop's ``on_frame(frame, noise)``: ``outputs`` (extra files of the frame,
        each ``output(frame, noise)``), then progress, then the cancel check (not after
        the last frame: that bake is complete)."""
        first, last = self.frames[0], self.frames[-1]

        def hook(frame, noise):
            for output in outputs:
                output(frame, noise)
            self.last_done = frame
            self.report(frame - first + 1, frame)
            self.check_stop(esc=frame < last)

        return hook


def check_frames(scene, s, log):
    """Frames Blender cannot set are refused; frames outside the scene's range are
    baked as asked, with a note."""
    for f in (s.frame_start, s.frame_end):
        if not MIN_FRAME <= f <= MAX_FRAME:
            raise BakeError(f"frame {f} is outside Blender's frames ({MIN_FRAME} to "
                            f"{MAX_FRAME})")
    if s.frame_start < scene.frame_start or s.frame_end > scene.frame_end:
        log(f"[noise] note: the frames {s.frame_start}-{s.frame_end} reach outside the "
            f"scene's range {scene.frame_start}-{scene.frame_end} (Output properties > "
            "Frame Range); baking them as asked")


def check_render_size(scene):
    from ..readers.vectors import render_size
    h, w = render_size(scene)
    for n, what in ((w, "wide"), (h, "high")):
        if n < 1:
            raise BakeError(f"the render is 0 pixels {what} (Output properties > "
                            "Resolution: its size times its %)")


def check_target(scene, s):
    """The target model's rules (frame count, render size), before anything is read,
    rendered or written. The EXR source's size is known only from its files: the core
    loop checks it before its first write."""
    if s.target == "none" or s.source == "exr":
        return
    from cupy_core.targets import plan

    from ..readers.vectors import render_size
    h, w = render_size(scene)
    try:
        plan(s.target, s.frame_end - s.frame_start + 1, h, w, s.channels, s.latent_factor,
             temporal=s.temporal, degradation=s.degradation)
    except ValueError as exc:
        raise BakeError(str(exc)) from None


def check_camera(scene):
    if scene.camera is None:
        raise BakeError(f"scene {scene.name!r} has no camera: set Scene > Camera")


def check_motion_blur(scene):
    if scene.render.use_motion_blur:
        raise BakeError("motion blur is on (Render properties > Motion Blur): the Vector "
                        "pass is empty with motion blur, turn it off for the bake")
