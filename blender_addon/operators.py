"""Operators: Bake (modal from the UI, Esc cancels; blocking when executed from a
script), Refresh Device, and Install / Remove GPU Support."""
import os
import queue
import threading
import traceback

import bpy

from .paths import abspath


def _status(context, text):
    ws = getattr(context, "workspace", None)
    if ws is not None:
        ws.status_text_set(text)


def _show_preview(context, img, first, count):
    screen = getattr(context, "screen", None)
    if img is None or screen is None:
        return
    for area in screen.areas:
        if area.type == "IMAGE_EDITOR":
            space = area.spaces.active
            space.image = img
            space.image_user.frame_start = first
            space.image_user.frame_duration = count
            space.image_user.use_auto_refresh = True


def _outcome(bake):
    """``("ok", result)`` or ``("error", exception)`` of ``bake()`` (reported by
    ``CUPYNOISE_OT_bake._report`` on the main thread)."""
    try:
        return ("ok", bake())
    except BaseException as exc:
        return ("error", exc)


def _progress(wm, done, total, frame):
    wm.progress_update(int(1000 * done / max(1, total)))
    print(f"cupy_noise: frame {frame} ({done}/{total})", flush=True)


def _serve(fn, box, ev):
    """Run a call the worker handed to the main thread; hand back its value or error."""
    try:
        box["value"] = fn()
    except BaseException as exc:
        box["error"] = exc
    ev.set()


class CUPYNOISE_OT_bake(bpy.types.Operator):
    """Bake warped noise for the scene's frame range from the chosen source (rendered
    motion vectors, an EXR sequence, the meshes, or a volume domain)"""
    bl_idname = "cupy_noise.bake"
    bl_label = "Bake Warped Noise"
    bl_options = {"REGISTER"}

    _timer = None

    def execute(self, context):
        """Blocking (from a script): the call headless.py makes, then the report."""
        from .bake import run_bake
        wm = context.window_manager
        wm.progress_begin(0, 1000)
        try:
            self._outcome = _outcome(lambda: run_bake(
                context.scene, context.scene.cupy_noise.to_settings(),
                progress=lambda done, total, frame: _progress(wm, done, total, frame)))
        finally:
            wm.progress_end()
        return self._report(context)

    # --- modal: the bake runs in a worker thread; Blender calls (renders) are handed
    # to the main thread, which runs them from the timer events below.
    def invoke(self, context, event):
        from .bake import run_bake
        scene = context.scene
        settings = scene.cupy_noise.to_settings()
        self._calls = queue.Queue()
        self._cancel = False
        self._state = {"done": 0, "total": 1, "frame": scene.frame_start}
        self._outcome = None

        def main(fn):
            box, ev = {}, threading.Event()
            self._calls.put((fn, box, ev))
            ev.wait()
            if "error" in box:
                raise box["error"]
            return box["value"]

        def progress(done, total, frame):
            self._state.update(done=done, total=total, frame=frame)

        def work():
            self._outcome = _outcome(lambda: run_bake(
                scene, settings, progress=progress, cancelled=lambda: self._cancel,
                main=main))

        wm = context.window_manager
        wm.progress_begin(0, 1000)
        self._timer = wm.event_timer_add(0.05, window=context.window)
        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._cancel = True
            _status(context, "Cancelling the noise bake after this frame...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            call = self._calls.get_nowait()
        except queue.Empty:
            pass
        else:
            _serve(*call)
        st = self._state
        context.window_manager.progress_update(int(1000 * st["done"] / max(1, st["total"])))
        if not self._cancel:
            _status(context, f"Baking warped noise: frame {st['frame']} "
                             f"({st['done']}/{st['total']}), Esc to cancel")
        if self._outcome is None:
            return {"RUNNING_MODAL"}
        return self._end(context)

    def cancel(self, context):
        """Blender ends the operator (a file load, the window closing): stop the worker
        after its frame, still running its Blender calls here, so that the render
        settings and the frame are restored before the operator goes."""
        self._cancel = True
        while self._thread.is_alive():
            try:
                _serve(*self._calls.get(timeout=0.05))
            except queue.Empty:
                pass
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _status(context, None)

    def _end(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _status(context, None)
        return self._report(context)

    def _report(self, context):
        """Report the outcome; show the preview sequence in an Image editor."""
        from .bake import BakeCancelled, BakeError
        kind, value = self._outcome
        if kind == "ok":
            _show_preview(context, value.image, value.frames[0], len(value.frames))
            kept = f", {value.resumed_frames} resumed" if value.resumed_frames else ""
            self.report({"INFO"}, f"Baked {len(value.frames)} frames{kept} to {value.out_dir}")
            return {"FINISHED"}
        if isinstance(value, BakeCancelled):
            self.report({"WARNING"}, str(value))
        elif isinstance(value, (BakeError, ValueError, OSError)):
            self.report({"ERROR"}, str(value))
        else:
            traceback.print_exception(value)
            self.report({"ERROR"}, f"bake failed: {value!r}")
        return {"CANCELLED"}


class CUPYNOISE_OT_refresh_device(bpy.types.Operator):
    """Look for CuPy and a CUDA GPU again"""
    bl_idname = "cupy_noise.refresh_device"
    bl_label = "Check for GPU"

    def execute(self, context):
        from .gpu_support import device_info
        info = device_info(refresh=True)
        self.report({"INFO"}, f"GPU: {info['gpu'] or info['error']}")
        return {"FINISHED"}


# --------------------------------------------------------------------------- GPU support

class GpuJob:
    """One Install GPU support run: pip in a worker thread (``progress``, ``line`` and
    ``lines`` for the UI), then activation and the probe on the main thread (``finish``).
    ``JOB`` holds the latest, for the preferences to draw."""

    def __init__(self, folder, wheels, chosen):
        self.folder, self.wheels, self.chosen = folder, wheels, chosen
        self.progress, self.line, self.lines = 0.0, "starting pip", []
        self.cancel = False
        self.outcome = None           # ("ok", manifest) or ("error", exception)
        self.summary = None           # the probe's summary, once finished
        self.ok = None
        self.thread = threading.Thread(target=self._work, daemon=True)

    def _work(self):
        from . import gpu_support as G

        def progress(fraction, line):
            self.progress, self.line = fraction, line
            self.lines = (self.lines + [line])[-200:]
            print(f"cupy_noise: [gpu] {line}", flush=True)
        try:
            self.outcome = ("ok", G.install(self.folder, self.chosen, wheels=self.wheels,
                                            progress=progress,
                                            cancelled=lambda: self.cancel))
        except BaseException as exc:  # reported on the main thread
            self.outcome = ("error", exc)

    def finish(self):
        """Activate and probe (main thread). Returns (report level, message)."""
        from . import gpu_support as G
        kind, value = self.outcome
        if kind == "error":
            self.ok, self.summary = False, str(value)
            if isinstance(value, G.Cancelled):
                return "WARNING", self.summary
            if not isinstance(value, (G.GpuSupportError, OSError)):
                traceback.print_exception(value)
            return "ERROR", f"Install GPU support failed: {value}"
        act = G.activate(self.folder)
        if act is not None and act.error:
            self.ok, self.summary = False, act.error
            return "ERROR", f"GPU support installed, but {act.error}"
        self.line = "probing the GPU (compiling and launching a kernel)"
        try:
            status = G.probe()
        except Exception as exc:  # cupy_core too old, anything unexpected
            self.ok, self.summary = False, f"the GPU probe failed: {exc!r}"
            return "WARNING", f"GPU support installed; {self.summary}"
        self.progress, self.ok, self.summary = 1.0, bool(status.ok), status.summary()
        self.line = self.summary
        try:
            G.device_info(refresh=True)
        except Exception:
            pass
        if status.ok:
            return "INFO", f"GPU support installed: {self.summary}"
        return "WARNING", f"GPU support installed, but the probe failed: {self.summary}"


JOB = None


def _redraw_preferences(context):
    wm = getattr(context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _gpu_folder():
    from . import gpu_support as G
    return G.folder_for(__package__)


class CUPYNOISE_OT_install_gpu_support(bpy.types.Operator):
    """Install CuPy and the CUDA compiler (NVRTC) wheels it needs, matching Blender's
    NumPy and the NVIDIA driver, into this add-on's own folder (pip; downloads about
    200 MB unless a wheels folder is given)"""
    bl_idname = "cupy_noise.install_gpu_support"
    bl_label = "Install GPU Support"
    bl_options = {"REGISTER"}

    wheels: bpy.props.StringProperty(
        name="Wheels Folder", subtype="DIR_PATH",
        description="Install from this folder of wheels, without network (default: the "
                    "add-on preferences' folder, else download from PyPI)")

    def _start(self, context):
        global JOB
        from . import gpu_support as G
        if JOB is not None and JOB.thread.is_alive():
            self.report({"ERROR"}, "GPU support is being installed already")
            return None
        wheels = abspath(self.wheels) or None
        if wheels is None:
            prefs = context.preferences.addons.get(__package__)
            folder = getattr(getattr(prefs, "preferences", None), "gpu_wheels", "")
            wheels = abspath(folder) or None
        if wheels is None and not getattr(bpy.app, "online_access", True):
            self.report({"ERROR"}, "Blender's online access is off (Preferences > System > "
                                   "Network > Allow Online Access): turn it on, or give a "
                                   "wheels folder")
            return None
        try:
            chosen = G.choose_plan(G.numpy_version(), G.driver_cuda_version())
            folder = _gpu_folder()
        except G.GpuSupportError as exc:
            self.report({"ERROR"}, str(exc))
            return None
        JOB = GpuJob(folder, wheels, chosen)
        JOB.line = chosen.describe()
        JOB.thread.start()
        return JOB

    def _end(self, context, job):
        level, message = job.finish()
        _redraw_preferences(context)
        self.report({level}, message)
        return {"FINISHED"} if level != "ERROR" and job.outcome[0] == "ok" else {"CANCELLED"}

    def execute(self, context):
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        job.thread.join()
        return self._end(context, job)

    def invoke(self, context, event):
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, 1000)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = JOB
        if event.type == "ESC":
            job.cancel = True
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        context.window_manager.progress_update(int(1000 * job.progress))
        _status(context, f"Installing GPU support {100 * job.progress:.0f}%: "
                         f"{job.line[:100]} (Esc to cancel)")
        _redraw_preferences(context)
        if job.thread.is_alive():
            return {"RUNNING_MODAL"}
        self._cleanup(context)
        return self._end(context, job)

    def _cleanup(self, context):
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _status(context, None)

    def cancel(self, context):
        JOB.cancel = True
        JOB.thread.join()
        self._cleanup(context)


class CUPYNOISE_OT_remove_gpu_support(bpy.types.Operator):
    """Delete the GPU support this add-on installed (its folder) and stop using it"""
    bl_idname = "cupy_noise.remove_gpu_support"
    bl_label = "Remove GPU Support"
    bl_options = {"REGISTER"}

    def execute(self, context):
        global JOB
        from . import gpu_support as G
        if JOB is not None and JOB.thread.is_alive():
            self.report({"ERROR"}, "GPU support is being installed: wait or press Esc")
            return {"CANCELLED"}
        folder = _gpu_folder()
        if not os.path.exists(folder) and G.active() is None:
            self.report({"INFO"}, "GPU support is not installed")
            return {"FINISHED"}
        try:
            note = G.remove(folder)
        except G.GpuSupportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        JOB = None
        _redraw_preferences(context)
        self.report({"INFO"}, "GPU support removed" + (f" ({note})" if note else ""))
        return {"FINISHED"}


classes = (CUPYNOISE_OT_bake, CUPYNOISE_OT_refresh_device,
           CUPYNOISE_OT_install_gpu_support, CUPYNOISE_OT_remove_gpu_support)


register, unregister = bpy.utils.register_classes_factory(classes)
