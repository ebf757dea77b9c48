"""The frame loop of a bake (DESIGN.md 9), shared by the command line and the Blender
add-on: white noise for the first frame, then each frame warped from the one before,
every frame written to disk as it is made, then ``latents.npy`` and ``bake.json``.

A bake can be interrupted at any point (Ctrl-C, a crash, a killed job) and resumed:
files are written atomically, ``bake.json`` says "in progress" until the end, and a
rerun with the same parameters continues after the last whole frame on disk, without
recomputing it. The warp is deterministic (counter-based random numbers), so a resumed
bake is bit for bit the bake that was never interrupted.
"""
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from . import files
from ..targets.files import output_names, plan, target_settings, write_target_outputs
from .progress import Progress
from ..methods.rng import GENERATOR_VERSION
from ..warp import warp_chained

__all__ = ["bake_flow_sequence", "bake_chain", "bake_frames", "flow_positions", "LazyFrames",
           "BakeResult", "BakeMismatchError", "STATUS_IN_PROGRESS", "STATUS_COMPLETE"]

STATUS_IN_PROGRESS = "in progress"
STATUS_COMPLETE = "complete"
NOISE_PREFIX = "noise"
PREVIEW_PREFIX = "preview"


class BakeMismatchError(files.OutputError):
    """The output folder holds a bake made with other parameters: resuming would mix
    two bakes. The message names the differing parameters."""


@dataclasses.dataclass
class BakeResult:
    out_dir: Path
    frames: list          # frame numbers written, in order
    noise_shape: tuple    # (H, W, C) of each noise_XXXX.npy
    latents_path: Path
    latents_shape: tuple  # (F, H // f, W // f, C)
    resumed_frames: int   # frames found on disk and kept (0 for a fresh bake)
    record: dict          # the final bake.json


class LazyFrames:
    """A lazy sequence of per-frame inputs for the bake loops: ``len`` is ``count`` and
    item t is ``make(t)``, computed only when the loop asks for it (a resumed bake asks
    for nothing it already has; a memory-mapped file is read frame by frame). Index
    errors as for a list (0 <= t < count; no negative indices)."""

    def __init__(self, count, make):
        self.count = int(count)
        self.make = make

    def __len__(self):
        return self.count

    def __getitem__(self, t):
        if not 0 <= t < self.count:
            raise IndexError(t)
        return self.make(t)


def flow_positions(flows, *, forward=False):
    """Backward positions at pixel centres, frame by frame, from a flow array
    ``(T, H, W, 2)`` of displacements ``(dx, dy)`` in pixels at pixel centres.

    Backward flow (``forward=False``): where each pixel of frame t + 1 was in frame t;
    position = centre + flow. Forward flow (``forward=True``) is negated first, the
    usual approximation of video pipelines (exact for uniform translation only).
    Returns a lazy sequence for ``bake_flow_sequence(..., at="centers")``.
    """
    from ..conventions import flow_to_positions, forward_to_backward

    def make(t):
        flow = np.asarray(flows[t], dtype=np.float64)
        return flow_to_positions(forward_to_backward(flow) if forward else flow)

    return LazyFrames(len(flows), make)


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _positions_source(positions, need_first=True):
    """``(count, first_item, get)``: how many transitions (None if unknown), the first
    positions array (None if there is none, or if not ``need_first`` for a sequence:
    a lazy sequence, such as the Blender add-on's, then computes nothing it will not
    bake) and ``get(t)`` for t = 0, 1, 2, ... in order (random access for arrays and
    sequences, sequential for iterators)."""
    if hasattr(positions, "shape") and hasattr(positions, "ndim"):
        if positions.ndim != 4 or positions.shape[-1] != 2:
            raise ValueError("positions must be (T, H, W, 2) (one (H, W, 2) map per "
                             f"transition), got shape {tuple(positions.shape)}")
        count = int(positions.shape[0])
        return count, (positions[0] if count else None), positions.__getitem__
    if hasattr(positions, "__len__") and hasattr(positions, "__getitem__"):
        count = len(positions)
        return count, (positions[0] if count and need_first else None), positions.__getitem__
    iterator = iter(positions)
    try:
        first = next(iterator)
    except StopIteration:
        return 0, None, None
    iterator = itertools.chain([first], iterator)
    state = {"next": 0}

    def get(t):
        # Sequential access only; skip what a resumed bake already has.
        while state["next"] < t:
            next(iterator)
            state["next"] += 1
        state["next"] += 1
        return next(iterator)

    return None, first, get


def _read_bake_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        raise files.OutputError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != files.BAKE_FORMAT:
        raise files.OutputError(f"{str(path)!r} is not a cupy_core bake.json")
    return record


def _frames_on_disk(out_dir, prefix, ext):
    found = set()
    for entry in out_dir.iterdir():
        frame = files.parse_frame_name(prefix, entry.name, ext)
        if frame is not None and entry.is_file():
            found.add(frame)
    return found


def _discard_earlier_bake(out_dir):
    """Remove the files of an earlier bake in ``out_dir`` (resume=False): otherwise an
    interrupted new bake could later be resumed from the old bake's frames."""
    for prefix, ext in ((NOISE_PREFIX, "npy"), (PREVIEW_PREFIX, "png")):
        for frame in _frames_on_disk(out_dir, prefix, ext):
            (out_dir / files.frame_name(prefix, frame, ext)).unlink()
    for name in (files.LATENTS_NAME, files.BAKE_JSON_NAME, *output_names()):
        if (out_dir / name).exists():
            (out_dir / name).unlink()


def bake_flow_sequence(positions, out_dir, *, method="grid", seed=0, channels=4,
                       latent_factor=1, at="centers", shape=None, first_frame=0,
                       source=None, progress=True, preview=False, resume=True,
                       xp=None, warp_options=None, on_frame=None, target=None):
    """Bake a warped-noise sequence into ``out_dir`` and return a ``BakeResult``.

    ``positions`` gives, for each transition t -> t + 1, the backward positions of
    frame t + 1 in frame t's pixel coordinates (DESIGN.md 3): a ``(T, H, W, 2)`` array
    (``(T, H + 1, W + 1, 2)`` with ``at="corners"``), a sequence of ``(H, W, 2)``
    arrays, or an iterator of them. NaN positions give fresh noise.

    Frame ``first_frame`` is ``white_noise((H, W), channels, seed=seed,
    frame=first_frame)``; frame ``first_frame + t + 1`` is ``warp(previous,
    positions[t], method=method, seed=seed, frame=first_frame + t + 1, at=at)``.
    ``shape`` is ``(H, W)``; by default it is read off the first positions.

    Writes, each file atomically: ``noise_XXXX.npy`` per frame (``(H, W, C)`` float32),
    ``preview_XXXX.png`` if ``preview``, then ``latents.npy`` (``(F, H // f, W // f, C)``
    with f = ``latent_factor``) and ``bake.json``, whose status is "in progress" from
    the start and "complete" at the end.

    ``resume=True``: if ``out_dir`` holds a bake with the same parameters (method,
    seed, channels, at, shape, frames, latent factor, ``source``), continue after its
    last whole frame; with other parameters raise ``BakeMismatchError`` instead of
    mixing. ``resume=False`` discards an earlier bake in the folder (its noise,
    preview, latents and bake.json files) and starts again.

    ``source`` is any JSON-able description of the input (a file name, a scene);
    ``xp`` is the array module to compute with (NumPy by default, or CuPy for the
    GPU); ``warp_options`` are extra keyword arguments for ``cupy_core.warp``;
    ``on_frame(frame, noise)`` as in ``bake_chain`` (progress, cancel, extra outputs).
    ``target``: a video model's files too (``cupy_core.targets.target_settings``: a
    name, or ``{"target", "temporal", "degradation"}``); its rules (frame count, size,
    channels, latent factor) are checked before anything is written.
    """
    import cupy_core

    xp = np if xp is None else xp
    seed = _check_int("seed", seed)
    channels = _check_int("channels", channels, 1)
    latent_factor = _check_int("latent factor", latent_factor, 1)
    first_frame = _check_int("first frame", first_frame)
    if at not in ("centers", "corners"):
        raise ValueError(f"at must be 'centers' or 'corners', got {at!r}")
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a method name, got {method!r}")
    warp_options = dict(warp_options or {})

    count, first_positions, get_positions = _positions_source(positions, shape is None)
    if shape is None:
        if first_positions is None:
            raise ValueError("no positions to read the frame shape from: pass shape=(H, W)")
        pshape = tuple(first_positions.shape)
        if len(pshape) != 3 or pshape[-1] != 2:
            raise ValueError(f"positions of one frame must be (H, W, 2), got shape {pshape}")
        shape = pshape[:2] if at == "centers" else (pshape[0] - 1, pshape[1] - 1)
    shape = tuple(_check_int("frame height and width", n, 1) for n in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    if latent_factor > min(shape):
        raise ValueError(f"latent factor {latent_factor} is larger than the frame {shape}")

    params = {
        "source": source, "method": method, "seed": seed, "channels": channels,
        "at": at, "shape": list(shape), "first_frame": first_frame,
        "frame_count": None if count is None else count + 1,
        "latent_factor": latent_factor, "warp_options": warp_options,
    }

    def produce(i, previous):
        if i == 0:
            return cupy_core.white_noise(shape, channels, seed=seed, frame=first_frame,
                                         xp=xp)
        pos = get_positions(i - 1)   # positions[t] makes frame first_frame + t + 1
        return warp_chained(previous, xp.asarray(pos), method=method, seed=seed,
                            frame=first_frame + i, at=at, **warp_options)

    return bake_chain(produce, out_dir, params=params,
                      frame_count=None if count is None else count + 1,
                      first_frame=first_frame, noise_shape=shape + (channels,),
                      latent_factor=latent_factor, preview=preview, resume=resume,
                      progress=progress, xp=xp, on_frame=on_frame, target=target)


def bake_chain(step, out_dir, *, params, frame_count, first_frame, noise_shape,
               latent_factor=1, progress=True, preview=False, resume=True, xp=None,
               on_frame=None, target=None):
    """The loop for chained frames, 2-D or 3-D: ``step(i, previous)`` makes frame
    ``first_frame + i`` from frame i - 1's noise (``previous`` is None for i = 0);
    ``frame_count`` frames, or None to go until ``step`` raises StopIteration or
    IndexError. ``params``: JSON-able parameters recorded in bake.json and compared
    on resume; ``noise_shape``: ``(..., C)`` of one frame. ``on_frame(frame, noise)``
    is called for every frame, resumed ones included, once its ``.npy`` is on disk
    (extra outputs: EXR, VDB...). Files, resume, bake.json and ``target`` as
    ``bake_flow_sequence``."""
    return _run_bake(out_dir, params, frame_count, first_frame, tuple(noise_shape),
                     latent_factor, step, chained=True, preview=preview, resume=resume,
                     progress=progress, xp=xp, on_frame=on_frame, target=target)


def bake_frames(make_frame, out_dir, *, frame_count, shape, channels=4,
                latent_factor=1, first_frame=0, source=None, params=None,
                progress=True, preview=False, resume=True, xp=None, on_frame=None,
                target=None):
    """Bake a sequence whose frames are made independently (not chained): frame
    ``first_frame + i`` is ``make_frame(i)``, an ``(H, W, C)`` NumPy or CuPy array, for
    i = 0 .. ``frame_count`` - 1. The same outputs, atomic files, bake.json and resume
    as ``bake_flow_sequence`` (a resumed bake calls ``make_frame`` only for the frames
    still missing). ``params`` are extra JSON-able parameters recorded in bake.json
    and compared on resume (method, seed, texture size...); ``on_frame`` as in
    ``bake_chain``."""
    channels = _check_int("channels", channels, 1)
    latent_factor = _check_int("latent factor", latent_factor, 1)
    first_frame = _check_int("first frame", first_frame)
    frame_count = _check_int("frame count", frame_count, 1)
    shape = tuple(_check_int("frame height and width", n, 1) for n in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    if latent_factor > min(shape):
        raise ValueError(f"latent factor {latent_factor} is larger than the frame {shape}")
    record = {"source": source, "channels": channels, "shape": list(shape),
              "first_frame": first_frame, "frame_count": frame_count,
              "latent_factor": latent_factor}
    record.update(params or {})
    return _run_bake(out_dir, record, frame_count, first_frame, shape + (channels,),
                     latent_factor, lambda i, previous: make_frame(i), chained=False,
                     preview=preview, resume=resume, progress=progress, xp=xp,
                     on_frame=on_frame, target=target)


def _run_bake(out_dir, params, total, first_frame, noise_shape, latent_factor, produce, *,
              chained, preview, resume, progress, xp, on_frame=None, target=None):
    """The loop shared by every bake (2-D frames and 3-D volumes): ``produce(i,
    previous)`` makes frame ``first_frame + i`` (``previous`` is frame i - 1's noise
    when ``chained``, else None); ``total`` frames, or None to go until ``produce``
    raises StopIteration or IndexError. ``on_frame(frame, noise)`` (optional) is called
    for every frame of the bake, resumed ones included, once its ``.npy`` is on disk."""
    import cupy_core

    xp = np if xp is None else xp
    shape = noise_shape[:-1]
    count = None if total is None else total - 1
    target = target_settings(**target) if isinstance(target, dict) else target_settings(target)
    if target is not None:
        # The model's rules, before anything is written (a refused bake writes nothing).
        if len(shape) != 2:
            raise ValueError(f"target {target['target']} needs 2-D frames, not {shape}")
        if total is not None:
            plan(target["target"], total, shape[0], shape[1], noise_shape[-1],
                 latent_factor, temporal=target["temporal"],
                 degradation=target["degradation"])
        params = dict(params, target=target)
    out_dir = files.check_output_dir(out_dir)
    files.remove_stale_temporaries(out_dir)

    params = files.json_roundtrip(params)
    bake_path = out_dir / files.BAKE_JSON_NAME

    # --- what is already there
    done = []          # frames kept from an earlier run
    old = None
    if not resume:
        _discard_earlier_bake(out_dir)
    elif bake_path.exists():
        old = _read_bake_json(bake_path)
        differ = [k for k in params if files.json_roundtrip(old.get(k)) != params[k]]
        if differ:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {params[k]!r} now" for k in differ)
            raise BakeMismatchError(
                f"output folder {str(out_dir)!r} holds a bake with other parameters "
                f"({detail}); use another folder, or resume=False (--no-resume) to "
                "discard it")
        # Bakes from before the version was recorded used generator 1.
        old_generator = (old.get("versions") or {}).get("noise_generator", 1)
        if old_generator != GENERATOR_VERSION:
            raise BakeMismatchError(
                f"output folder {str(out_dir)!r} holds a bake made with noise generator "
                f"version {old_generator}, this is version {GENERATOR_VERSION}: the same "
                "seed now gives different noise, so resumed frames would not continue "
                "the earlier ones; use another folder, or resume=False (--no-resume) to "
                "start afresh")
        old_version = (old.get("versions") or {}).get("cupy_core")
        if old_version != cupy_core.__version__:
            raise BakeMismatchError(
                f"output folder {str(out_dir)!r} holds a bake made by cupy_core "
                f"{old_version}, this is {cupy_core.__version__}; frames of two versions "
                "must not be mixed: use another folder, or resume=False (--no-resume)")
        on_disk = _frames_on_disk(out_dir, NOISE_PREFIX, "npy")
        frame = first_frame
        last = None if count is None else first_frame + count
        while frame in on_disk and (last is None or frame <= last):
            done.append(frame)
            frame += 1
    elif _frames_on_disk(out_dir, NOISE_PREFIX, "npy"):
        raise files.OutputError(
            f"output folder {str(out_dir)!r} has noise frames but no bake.json, so they "
            "cannot be resumed safely; use another folder, or resume=False "
            "(--no-resume) to overwrite them")

    def noise_path(frame):
        return out_dir / files.frame_name(NOISE_PREFIX, frame, "npy")

    def write_frame(frame, noise_np):
        files.save_npy_atomic(noise_path(frame), noise_np)
        if preview:
            files.write_png_atomic(out_dir / files.frame_name(PREVIEW_PREFIX, frame, "png"),
                                 files.noise_to_preview(noise_np))
        if on_frame is not None:
            on_frame(frame, noise_np)

    already_complete = (old is not None and old.get("status") == STATUS_COMPLETE
                        and count is not None and len(done) == count + 1)
    if not already_complete:
        files.write_json_atomic(bake_path, files.bake_json(params, status=STATUS_IN_PROGRESS,
                                                       frames=done))

    # --- the frame loop
    frames = list(done)
    total = None if count is None else count + 1
    with Progress(total, initial=len(done), enabled=progress) as bar:
        if done:
            noise_np = np.load(noise_path(done[-1]), allow_pickle=False)
            if noise_np.shape != noise_shape or noise_np.dtype != np.float32:
                raise files.OutputError(
                    f"{str(noise_path(done[-1]))!r} is {noise_np.dtype} {noise_np.shape}, "
                    f"expected float32 {noise_shape}: not a frame of this bake")
            if not np.isfinite(noise_np).all():   # the chain goes on from it unchecked
                raise files.OutputError(f"{str(noise_path(done[-1]))!r} has non-finite "
                                      "values: not a frame of this bake")
            if preview:  # an earlier run may have had previews off
                for frame in done:
                    png = out_dir / files.frame_name(PREVIEW_PREFIX, frame, "png")
                    if not png.exists():
                        files.write_png_atomic(png, files.noise_to_preview(
                            np.load(noise_path(frame), allow_pickle=False)))
            if on_frame is not None:
                for frame in done:
                    on_frame(frame, noise_np if frame == done[-1] else
                             np.load(noise_path(frame), allow_pickle=False))
            noise = xp.asarray(noise_np)
        else:
            noise = produce(0, None)
            if tuple(noise.shape) != noise_shape:
                raise ValueError(f"frame {first_frame} has shape {tuple(noise.shape)}, "
                                 f"the bake's is {noise_shape}")
            write_frame(first_frame, files.to_numpy(noise))
            frames.append(first_frame)
            bar.update()

        t = frames[-1] - first_frame  # positions[t] makes frame first_frame + t + 1
        while count is None or t < count:
            frame = first_frame + t + 1
            try:
                noise = produce(t + 1, noise if chained else None)
            except (StopIteration, IndexError):
                if count is None:
                    break
                raise
            if tuple(noise.shape) != noise_shape:
                raise ValueError(f"positions for frame {frame} give a frame of shape "
                                 f"{tuple(noise.shape)}, the bake's is {noise_shape}")
            write_frame(frame, files.to_numpy(noise))
            frames.append(frame)
            bar.update()
            t += 1

    # --- latents and the final record
    latents_path = out_dir / files.LATENTS_NAME
    latents_shape = ((len(frames),) + tuple(n // latent_factor for n in shape)
                     + (noise_shape[-1],))
    if already_complete and latents_path.exists():
        record = old
    else:
        files.assemble_latents(out_dir, frames, latent_factor)
        target_record = None
        if target is not None:
            target_record = write_target_outputs(
                out_dir, frames, lambda f: np.load(noise_path(f), allow_pickle=False),
                seed=params.get("seed", 0), latent_factor=latent_factor, **target)
        extra = {
            "noise_shape": list(noise_shape), "latents_shape": list(latents_shape),
            "files": {"noise": NOISE_PREFIX + "_{frame:04d}.npy",
                      "preview": (PREVIEW_PREFIX + "_{frame:04d}.png") if preview else None,
                      "latents": files.LATENTS_NAME},
            "target": target_record,
        }
        record = files.bake_json(params, status=STATUS_COMPLETE, frames=frames, extra=extra)
        files.write_json_atomic(bake_path, record)
    return BakeResult(out_dir=out_dir, frames=frames, noise_shape=noise_shape,
                      latents_path=latents_path, latents_shape=latents_shape,
                      resumed_frames=len(done), record=record)
