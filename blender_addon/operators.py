"""Operators: Bake (modal from the UI, Esc cancels; blocking when executed from a
script) and Refresh Device."""
import queue
import threading
import traceback

import bpy


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


def _serve(fn, box, ev):
    """Run a call the worker handed to the main thread; hand back its value or error."""
    try:
        box["value"] = fn()
    except BaseException as exc:
        box["error"] = exc
    ev.set()


class CUPYNOISE_OT_bake(bpy.types.Operator):
    """Bake warped noise for the scene's frame range from its motion vectors"""
    bl_idname = "cupy_noise.bake"
    bl_label = "Bake Warped Noise"
    bl_options = {"REGISTER"}

    _timer = None

    def _finish(self, context, result):
        from .bake import load_preview
        img = load_preview(str(result.out_dir), result.frames[0]) if self._settings.preview else None
        _show_preview(context, img, result.frames[0], len(result.frames))
        kept = f", {result.resumed_frames} resumed" if result.resumed_frames else ""
        self.report({"INFO"}, f"Baked {len(result.frames)} frames{kept} to {result.out_dir}")

    def execute(self, context):
        from .bake import BakeCancelled, BakeError, run_bake
        scene = context.scene
        self._settings = scene.cupy_noise.to_settings()
        wm = context.window_manager

        def progress(done, total, frame):
            wm.progress_update(done)
            print(f"cupy_noise: frame {frame} ({done}/{total})", flush=True)

        wm.progress_begin(0, max(1, scene.frame_end - scene.frame_start + 1))
        try:
            result = run_bake(scene, self._settings, context.view_layer, progress=progress)
        except (BakeError, BakeCancelled) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        self._finish(context, result)
        return {"FINISHED"}

    # --- modal: the bake runs in a worker thread; Blender calls (renders) are handed
    # to the main thread, which runs them from the timer events below.
    def invoke(self, context, event):
        from .bake import run_bake
        scene = context.scene
        self._settings = scene.cupy_noise.to_settings()
        self._calls = queue.Queue()
        self._cancel = False
        self._state = {"done": 0, "total": 1, "frame": scene.frame_start}
        self._outcome = None
        view_layer = context.view_layer

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
            try:
                self._outcome = ("ok", run_bake(scene, self._settings, view_layer,
                                                progress=progress,
                                                cancelled=lambda: self._cancel, main=main))
            except BaseException as exc:  # reported on the main thread
                self._outcome = ("error", exc)

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
        from .bake import BakeCancelled, BakeError
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        _status(context, None)
        kind, value = self._outcome
        if kind == "ok":
            self._finish(context, value)
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
        from .bake import device_info
        info = device_info(refresh=True)
        self.report({"INFO"}, f"GPU: {info['gpu'] or info['error']}")
        return {"FINISHED"}


classes = (CUPYNOISE_OT_bake, CUPYNOISE_OT_refresh_device)


register, unregister = bpy.utils.register_classes_factory(classes)
