"""The bake: one road from the scene to the files, for the operator (modal or blocking)
and headless.py alike: ``run_bake(scene, settings)``.

1. ``settings.BakeSettings.for_scene``: the frame range and defaults filled in, every
   setting checked (``BakeError`` naming the first that cannot work);
2. ``context.BakeContext.start``: the frames, the render size and the target checked,
   the array module (``cupy_core.device``: NumPy, or CuPy on the GPU), progress,
   cancel, stop signals (``stops``: SIGINT and SIGTERM recorded, acted on at the next
   safe point) and the main-thread caller; nothing is written yet: each source checks
   its input, then ``BakeContext.open_output`` makes the output folder;
3. the source's module (``vectors``: "vectors" and "exr"; ``meshes``: "surface" and
   "geometry"; ``volume``) reads the scene through ``readers`` and changes it only
   through ``scene_changes`` (renders, frames, probes: all undone on the way out),
   and hands cupy_core's frame loop a lazy sequence of per-frame inputs
   (``cupy_core.bake.loop.LazyFrames``: computed when the loop asks, so a resumed bake
   computes nothing it has);
4. the loop writes ``noise_XXXX.npy`` (+ previews), ``latents.npy`` and ``bake.json``
   atomically, and calls ``BakeContext.on_frame`` for every frame on disk: the extra
   outputs (``outputs``: EXR, VDB, from the noise in hand), progress, cancel;
   Temporary folders (``scratch``) are locked while in use and removed however the
   bake ends; those of killed bakes are removed by the next bake;
5. with the preview on, ``outputs.PreviewRecorder`` has kept the backward maps and
   renders of the frames; ``cupy_core.preview`` writes the animated side-by-side
   (scene, warped, fixed, fresh), the slice picture and the flicker figures;
6. the results are loaded into the .blend (the preview image sequence, the VDB
   volume) and the loop's ``BakeResult`` is returned (``image``, ``volume`` added).
"""
from cupy_core.bake.files import OutputError
from cupy_core.volume import VolumeInputError

from ..errors import BakeCancelled, BakeError, BakeInterrupted, DiskFullError, disk_full
from ..settings import BakeSettings
from . import meshes, scratch, vectors, volume
from .context import BakeContext
from .stops import StopSignals
from .outputs import PreviewRecorder, load_preview, load_volume_sequence

__all__ = ["run_bake", "BakeSettings", "BakeError", "BakeCancelled", "BakeInterrupted",
           "DiskFullError"]

SOURCE_BAKES = {"vectors": vectors.bake, "exr": vectors.bake, "surface": meshes.bake,
                "geometry": meshes.bake, "volume": volume.bake}


def run_bake(scene, settings, *, progress=None, cancelled=None, main=None, log=print):
    """Bake ``scene`` with ``settings`` (a ``BakeSettings``); return cupy_core's
    ``BakeResult``. ``progress(done, total, frame)`` is called before the first frame
    and as each frame is on disk; ``cancelled()`` returning True stops the bake after
    that frame (``BakeCancelled``; every file is whole, a rerun resumes); ``main(fn)``
    runs Blender calls on the main thread (the modal operator's worker); ``log`` prints
    notes. Bad input is a ``BakeError`` naming it; a full disk a ``DiskFullError``
    naming the folder; SIGINT or SIGTERM (on the main thread) stop the bake at the
    next safe point with ``BakeInterrupted`` (every file whole, a rerun resumes)."""
    with StopSignals() as stops:
        return _run_bake(scene, settings, progress, cancelled, main, log, stops)


def _run_bake(scene, settings, progress, cancelled, main, log, stops):
    ctx = BakeContext.start(scene, settings, progress=progress, cancelled=cancelled,
                            main=main, log=log, stops=stops)
    s = ctx.settings
    scratch.remove_leftovers(log=log)
    try:
        if s.preview and s.source != "volume":
            ctx.recorder = PreviewRecorder(s.frame_start, ctx.total)
        result = SOURCE_BAKES[s.source](ctx)
        ctx.check_stop()
        if ctx.recorder is not None:     # the animated side-by-side and the flicker figures
            ctx.recorder.write(ctx.out_dir, log)
    except (BakeError, BakeCancelled, DiskFullError):
        raise
    except (OutputError, VolumeInputError, ValueError, OSError) as exc:
        full = disk_full(exc, "output folder", ctx.out_dir)
        if full is not None:
            raise full from None
        if isinstance(exc, OSError):
            raise
        raise BakeError(str(exc)) from None                # the core's input checks
    finally:
        if ctx.recorder is not None:
            ctx.recorder.close()
    ctx.check_stop()
    first, count = result.frames[0], len(result.frames)
    result.image = ctx.call(lambda: load_preview(ctx.out_dir, first)) \
        if s.preview and s.source != "volume" else None
    result.volume = ctx.call(lambda: load_volume_sequence(ctx.out_dir, first, count, scene)) \
        if getattr(result, "vdb", False) else None
    ctx.report(ctx.total, s.frame_end)
    return result
