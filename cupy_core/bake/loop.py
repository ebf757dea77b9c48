"""The frame loop of a bake (docs/DESIGN.md 9), shared by the command line and the Blender
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
import os
import warnings
from pathlib import Path

import numpy as np

from . import files, memory
from .fingerprint import describe_changes
from ..conventions import check_cell_count
from ..targets.files import output_names, plan, target_settings, write_target_outputs
from .progress import Progress
from ..methods.rng import GENERATOR_VERSION
from ..warp import warp_chained

__all__ = ["bake_flow_sequence", "bake_chain", "bake_frames", "flow_positions", "LazyFrames",
           "BakeResult", "BakeMismatchError", "LatentCropWarning", "STATUS_IN_PROGRESS",
           "STATUS_COMPLETE", "SIDECAR_KINDS", "bake_file_names", "record_written"]

STATUS_IN_PROGRESS = "in progress"
STATUS_COMPLETE = "complete"
NOISE_PREFIX = "noise"
PREVIEW_PREFIX = "preview"
# Sidecars every bake knows (``noise_XXXX.exr``, ``noise_XXXX.vdb``: the add-on's);
# a bake may declare others (``sidecars=``).
SIDECAR_KINDS = ("exr", "vdb")


class LatentCropWarning(UserWarning):
    """The latent factor does not divide the frame: latents.npy leaves out the last
    rows/columns (the message says which); recorded in bake.json as ``latents_note``."""


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
        raise files.OutputError(f"cannot read {str(path)!r}: {exc}; rerun with "
                                "--no-resume (resume=False) to start afresh") from None
    if not isinstance(record, dict) or record.get("format") != files.BAKE_FORMAT:
        raise files.OutputError(f"{str(path)!r} is not a cupy_core bake.json; rerun with "
                                "--no-resume (resume=False) to replace it")
    return record


def _frames_on_disk(out_dir, prefix, ext):
    found = set()
    for entry in out_dir.iterdir():
        frame = files.parse_frame_name(prefix, entry.name, ext)
        if frame is not None and entry.is_file():
            found.add(frame)
    return found


def _frame_kinds(sidecars=()):
    """``{kind: (prefix, ext)}`` of the per-frame files a bake may write: its noise,
    previews and sidecars (``noise_XXXX.exr``, ``noise_XXXX.vdb`` and any other
    declared kind)."""
    kinds = {"noise": (NOISE_PREFIX, "npy"), "preview": (PREVIEW_PREFIX, "png")}
    for kind in tuple(SIDECAR_KINDS) + tuple(sidecars):
        kinds[kind] = (NOISE_PREFIX, kind)
    return kinds


def bake_file_names():
    """The names of the files a bake (and its previews) writes once per bake, besides
    bake.json: latents, the targets' files, the animated previews."""
    return (files.LATENTS_NAME, *output_names(), files.GIF_NAME, files.SLICES_NAME,
            files.FLICKER_NAME)


def _check_sidecars(sidecars):
    if isinstance(sidecars, str):
        sidecars = (sidecars,)
    out = []
    for kind in sidecars or ():
        if not isinstance(kind, str) or not kind.isalnum() or kind.lower() == "npy":
            raise ValueError(f"sidecar kinds are file extensions such as 'exr' or 'vdb' "
                             f"(not 'npy'), got {kind!r}")
        if kind.lower() not in out:
            out.append(kind.lower())
    return tuple(out)


def _ranges(frames):
    """``[[first, last], ...]`` runs of consecutive frame numbers."""
    out = []
    for f in sorted(set(int(f) for f in frames)):
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def _from_ranges(ranges):
    out = set()
    try:
        for a, b in ranges or ():
            out.update(range(int(a), int(b) + 1))
    except (TypeError, ValueError):
        return set()
    return out


def _frames_text(frames):
    frames = sorted(frames)
    if not frames:
        return "no frames"
    return (f"frame {frames[0]}" if len(frames) == 1 else
            f"frames {frames[0]}-{frames[-1]}")


def _damaged(path, noise_shape):
    """Why ``path`` is not a whole float32 ``noise_shape`` frame, or None (header and
    size only: cheap for every frame of a long bake)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
            offset = f.tell()
        size = os.path.getsize(path)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        return f"cannot read its header: {exc}"
    if tuple(shape) != tuple(noise_shape) or dtype != np.float32:
        return (f"it is {dtype} {tuple(shape)}, the bake's frames are float32 "
                f"{tuple(noise_shape)}")
    need = offset + int(np.prod(shape)) * 4
    if size != need:
        return (f"cannot reshape: the file has {size - offset} bytes of data, a frame of "
                f"{tuple(noise_shape)} needs {need - offset}")
    return None


def record_written(out_dir, names):
    """Add ``names`` (files written into a bake folder after its bake, such as
    ``preview_bake``'s comparison.gif) to bake.json's record of the files the bake
    wrote, so that a later ``--no-resume`` or replacing bake removes them too."""
    out_dir = Path(out_dir)
    path = out_dir / files.BAKE_JSON_NAME
    record = _read_bake_json(path)
    written = dict(record.get("written") or {})
    have = list(written.get("files") or [])
    for name in names:
        name = Path(name).name
        if name not in have:
            have.append(name)
    written["files"] = have
    record["written"] = written
    files.write_json_atomic(path, record)
    return record


def _remove(path):
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _replace_earlier_bake(out_dir, old, sidecars, stub):
    """Remove every file of an earlier bake in ``out_dir`` (resume=False, or a stub
    replaced): its frames, previews, sidecars, latents, targets' files, animated
    previews and the files its bake.json lists. A stub bake.json ``stub`` (this bake's,
    "replacing") is written first, so that an interrupted replacement leaves a folder
    that any later bake replaces again instead of resuming the old frames."""
    recorded = []
    if isinstance(old, dict):
        recorded = list((old.get("written") or {}).get("files") or [])
        sidecars = tuple(sidecars) + tuple(k for k in old.get("sidecars") or ()
                                           if isinstance(k, str) and k.isalnum())
    kinds = _frame_kinds(sidecars)
    per_frame = [(out_dir / files.frame_name(prefix, frame, ext))
                 for prefix, ext in set(kinds.values())
                 for frame in _frames_on_disk(out_dir, prefix, ext)]
    once = [out_dir / n for n in dict.fromkeys(list(bake_file_names()) + recorded)
            if n and "/" not in n and "\\" not in n and n != files.BAKE_JSON_NAME]
    once = [p for p in once if p.is_file()]
    bake_path = out_dir / files.BAKE_JSON_NAME
    if not per_frame and not once and not bake_path.exists():
        return
    files.write_json_atomic(bake_path, stub)
    for path in once:
        _remove(path)
    for path in sorted(per_frame, reverse=True):
        _remove(path)

def bake_flow_sequence(positions, out_dir, *, method="grid", seed=0, channels=4,
                       latent_factor=1, at="centers", shape=None, first_frame=0,
                       source=None, progress=True, preview=False, resume=True,
                       xp=None, warp_options=None, on_frame=None, target=None,
                       inputs=None, sidecars=(), max_memory=None):
    """Bake a warped-noise sequence into ``out_dir`` and return a ``BakeResult``.

    ``positions`` gives, for each transition t -> t + 1, the backward positions of
    frame t + 1 in frame t's pixel coordinates (docs/DESIGN.md 3): a ``(T, H, W, 2)`` array
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

    ``inputs``: a JSON-able fingerprint of what decides the noise
    (``cupy_core.bake.fingerprint``: ``{"flows": hash_file(path)}``), recorded in
    bake.json; a resume whose fingerprint differs is refused naming what changed.
    ``sidecars``: the extensions of the extra per-frame files ``on_frame`` writes
    (``("exr",)`` for ``noise_XXXX.exr``): recorded, removed with the bake, and
    vouched for frame by frame (see ``_run_bake``). ``max_memory``: bytes or "8G";
    the estimated peak (``cupy_core.bake.memory``) must fit it and the free memory,
    else the bake is refused before anything is written.
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
    shape = _frame_shape(shape, latent_factor)

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
                      progress=progress, xp=xp, on_frame=on_frame, target=target,
                      inputs=inputs, sidecars=sidecars, max_memory=max_memory)


def bake_chain(step, out_dir, *, params, frame_count, first_frame, noise_shape,
               latent_factor=1, progress=True, preview=False, resume=True, xp=None,
               on_frame=None, target=None, inputs=None, sidecars=(), max_memory=None):
    """The loop for chained frames, 2-D or 3-D: ``step(i, previous)`` makes frame
    ``first_frame + i`` from frame i - 1's noise (``previous`` is None for i = 0);
    ``frame_count`` frames, or None to go until ``step`` raises StopIteration or
    IndexError. ``params``: JSON-able parameters recorded in bake.json and compared
    on resume; ``noise_shape``: ``(..., C)`` of one frame. ``on_frame(frame, noise)``
    is called for every frame, resumed ones included, once its ``.npy`` is on disk
    (extra outputs: EXR, VDB...). Files, resume, bake.json, ``target``, ``inputs``,
    ``sidecars`` and ``max_memory`` as ``bake_flow_sequence``."""
    return _run_bake(out_dir, params, frame_count, first_frame, tuple(noise_shape),
                     latent_factor, step, chained=True, preview=preview, resume=resume,
                     progress=progress, xp=xp, on_frame=on_frame, target=target,
                     inputs=inputs, sidecars=sidecars, max_memory=max_memory)


def bake_frames(make_frame, out_dir, *, frame_count, shape, channels=4,
                latent_factor=1, first_frame=0, source=None, params=None,
                progress=True, preview=False, resume=True, xp=None, on_frame=None,
                target=None, inputs=None, sidecars=(), max_memory=None):
    """Bake a sequence whose frames are made independently (not chained): frame
    ``first_frame + i`` is ``make_frame(i)``, an ``(H, W, C)`` NumPy or CuPy array, for
    i = 0 .. ``frame_count`` - 1. The same outputs, atomic files, bake.json and resume
    as ``bake_flow_sequence`` (a resumed bake calls ``make_frame`` only for the frames
    still missing). ``params`` are extra JSON-able parameters recorded in bake.json
    and compared on resume (method, seed, texture size...); ``on_frame``, ``inputs``,
    ``sidecars`` and ``max_memory`` as in ``bake_chain``."""
    channels = _check_int("channels", channels, 1)
    latent_factor = _check_int("latent factor", latent_factor, 1)
    first_frame = _check_int("first frame", first_frame)
    frame_count = _check_int("frame count", frame_count, 1)
    shape = _frame_shape(shape, latent_factor)
    record = {"source": source, "channels": channels, "shape": list(shape),
              "first_frame": first_frame, "frame_count": frame_count,
              "latent_factor": latent_factor}
    record.update(params or {})
    return _run_bake(out_dir, record, frame_count, first_frame, shape + (channels,),
                     latent_factor, lambda i, previous: make_frame(i), chained=False,
                     preview=preview, resume=resume, progress=progress, xp=xp,
                     on_frame=on_frame, target=target, inputs=inputs, sidecars=sidecars,
                     max_memory=max_memory)


def _frame_shape(shape, latent_factor):
    """A 2-D bake's ``(H, W)``, checked: whole numbers, not empty, not smaller than the
    latent factor."""
    shape = tuple(_check_int("frame height and width", n) for n in shape)
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape}")
    shape = _check_shape(shape)
    if latent_factor > min(shape):
        raise ValueError(f"latent factor {latent_factor} is larger than the frame {shape}")
    return shape


def _check_shape(shape):
    """The frame (volume) shape, in the user's terms when it is empty."""
    shape = tuple(shape)
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"the frame size must be whole numbers, got {shape}")
    if len(shape) == 2 and min(shape) < 1:
        side = "wide" if shape[1] < 1 else "high"
        raise ValueError(f"the render is {min(shape)} pixels {side} ({shape[1]}x{shape[0]}):"
                         " set the output resolution (or give frames with pixels)")
    if len(shape) == 3 and min(shape) < 1:
        raise ValueError(f"the volume is {'x'.join(map(str, shape))} voxels: the domain "
                         "object has no size: use a mesh box with a size as the domain")
    check_cell_count(shape)
    return tuple(int(n) for n in shape)


def _latent_crop_note(shape, factor):
    """None when ``factor`` divides the frame, else what latents.npy leaves out."""
    rest = [n % factor for n in shape]
    if not any(rest) or factor == 1:
        return None
    size = "x".join(str(n) for n in (shape[::-1] if len(shape) == 2 else shape))
    kept = "x".join(str(n // factor * factor)
                    for n in (shape[::-1] if len(shape) == 2 else shape))
    return (f"latent factor {factor} does not divide the {size} frames: latents.npy "
            f"covers the first {kept} of them (the rest is dropped, as a VAE's encoder "
            f"does); use a factor that divides the frame size to keep every pixel")


def _run_bake(out_dir, params, total, first_frame, noise_shape, latent_factor, produce, *,
              chained, preview, resume, progress, xp, on_frame=None, target=None,
              inputs=None, sidecars=(), max_memory=None):
    """The loop shared by every bake (2-D frames and 3-D volumes): ``produce(i,
    previous)`` makes frame ``first_frame + i`` (``previous`` is frame i - 1's noise
    when ``chained``, else None); ``total`` frames, or None to go until ``produce``
    raises StopIteration or IndexError.

    ``on_frame(frame, noise)`` (optional) is called for every frame of the bake,
    resumed ones included, once its ``.npy`` (and preview) is on disk. When it is
    called, a sidecar ``noise_XXXX.<kind>`` of that frame (``sidecars``, and the known
    kinds exr and vdb) exists only if this bake wrote it from this very noise: the hook
    writes the sidecar when it is missing. bake.json records the sidecars found after
    the hook, frame by frame.

    ``inputs``: a JSON-able fingerprint of the inputs (``cupy_core.bake.fingerprint``);
    a resume whose fingerprint differs is refused naming what changed.
    ``max_memory``: bytes (or "8G"); the bake is refused before anything is written
    when its estimated peak (``memory.estimate_for_bake``) exceeds it or the free
    memory."""
    import cupy_core

    xp = np if xp is None else xp
    shape = _check_shape(noise_shape[:-1])
    noise_shape = shape + (int(noise_shape[-1]),)
    count = None if total is None else total - 1
    sidecars = _check_sidecars(sidecars)
    target = target_settings(**target) if isinstance(target, dict) else target_settings(target)
    latent_values = 0
    if target is not None:
        # The model's rules, before anything is written (a refused bake writes nothing).
        if len(shape) != 2:
            raise ValueError(f"target {target['target']} needs 2-D frames, not {shape}")
        if total is not None:
            info = plan(target["target"], total, shape[0], shape[1], noise_shape[-1],
                        latent_factor, temporal=target["temporal"],
                        degradation=target["degradation"])
            latent_values = (info["video_frames"] * int(np.prod(info["latent_size"]))
                             * noise_shape[-1])
        params = dict(params, target=target)
    if latent_factor > min(shape):
        raise ValueError(f"latent factor {latent_factor} is larger than the frame {shape}")
    crop_note = _latent_crop_note(shape, latent_factor)
    if crop_note:
        warnings.warn(crop_note, LatentCropWarning, stacklevel=3)
    params = files.json_roundtrip(params)
    inputs = None if inputs is None else files.json_roundtrip(inputs)
    # Memory before it is spent; every check above and here before anything is written.
    estimate = memory.check_memory(memory.estimate_for_bake(
        noise_shape, params, xp, latent_values=latent_values), max_memory)

    out_dir = files.check_output_dir(out_dir)
    files.remove_stale_temporaries(out_dir)
    bake_path = out_dir / files.BAKE_JSON_NAME
    kinds = _frame_kinds(sidecars)

    def stub(replacing):
        record = files.bake_json(params, status=STATUS_IN_PROGRESS, frames=[])
        record.update(inputs=inputs, sidecars=list(sidecars),
                      written={"noise": [], "files": []})
        if replacing:
            record["replacing"] = True
        return record

    # --- what is already there
    old = None
    if bake_path.exists():
        try:
            old = _read_bake_json(bake_path)
        except files.OutputError:
            if resume:
                raise
    on_disk = _frames_on_disk(out_dir, NOISE_PREFIX, "npy")
    replace = not resume
    if resume and old is None:
        if on_disk:
            raise files.OutputError(
                f"output folder {str(out_dir)!r} has noise frames but no bake.json, so "
                "they cannot be resumed safely; use another folder, or resume=False "
                "(--no-resume) to overwrite them")
        replace = True     # at most leftovers (previews, sidecars) of no bake: cleared
    elif resume and old.get("status") != STATUS_COMPLETE and (old.get("replacing")
                                                            or not on_disk):
        replace = True     # a stub (no frame on disk) is not a bake to fight
    elif resume:
        differ = [k for k in params if files.json_roundtrip(old.get(k)) != params[k]]
        if differ:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {params[k]!r} now" for k in differ)
            raise BakeMismatchError(
                f"output folder {str(out_dir)!r} holds a bake with other parameters "
                f"({detail}); use another folder, or resume=False (--no-resume) to "
                "discard it")
        changes = describe_changes(old.get("inputs"), inputs)
        if changes:
            raise BakeMismatchError(
                f"{'; '.join(changes)} since {_frames_text(on_disk)} "
                f"{'was' if len(on_disk) == 1 else 'were'} baked in "
                f"{str(out_dir)!r}: resuming would splice two inputs; rerun with "
                "--no-resume (resume=False) to start afresh, or use another folder")
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
    if replace:
        _replace_earlier_bake(out_dir, old, sidecars, stub(True))
        old, on_disk = None, set()

    def path_of(kind, frame):
        prefix, ext = kinds[kind]
        return out_dir / files.frame_name(prefix, frame, ext)

    def noise_path(frame):
        return path_of("noise", frame)

    done = []          # frames kept from an earlier run
    frame = first_frame
    last = None if count is None else first_frame + count
    while frame in on_disk and (last is None or frame <= last):
        why = _damaged(noise_path(frame), noise_shape)
        if why:
            raise files.OutputError(
                f"{noise_path(frame).name} is damaged ({why}): rerun with --no-resume "
                "(resume=False) to bake afresh")
        done.append(frame)
        frame += 1

    # What this bake wrote: per kind, the frames whose file it vouches for.
    old_written = (old or {}).get("written")
    written = {kind: set() for kind in kinds}
    written["noise"] = set(done)
    if isinstance(old_written, dict):
        for kind in kinds:
            if kind != "noise":
                written[kind] = _from_ranges(old_written.get(kind)) & set(done)
    elif old is not None:   # a bake from before the record: its previews are its own
        written["preview"] = {f for f in done if path_of("preview", f).is_file()}
    once_written = [n for n in ((old_written or {}).get("files") or [])
                    if isinstance(n, str)] if isinstance(old_written, dict) else []

    already_complete = (old is not None and old.get("status") == STATUS_COMPLETE
                        and count is not None and len(done) == count + 1)
    if not already_complete:
        # Files once per bake cannot be this (unfinished) bake's: an earlier one's.
        for name in bake_file_names():
            _remove(out_dir / name)
        once_written = []

    def record(status, frames, extra=None):
        rec = files.bake_json(params, status=status, frames=frames, extra=extra)
        rec["inputs"] = inputs
        rec["sidecars"] = list(sidecars)
        rec["written"] = dict({kind: _ranges(fs) for kind, fs in written.items() if fs},
                              files=list(once_written))
        return rec

    state = {"dirty": False}

    def note_sidecars(frame):
        for kind in kinds:
            if kind in ("noise", "preview"):
                continue
            if path_of(kind, frame).is_file():
                if frame not in written[kind]:
                    written[kind].add(frame)
                    state["dirty"] = True
            elif frame in written[kind]:
                written[kind].discard(frame)
                state["dirty"] = True

    # Files of the frames kept that this bake cannot vouch for are removed (the hook
    # writes the sidecars again); frames past the kept ones are overwritten as made.
    for kind in kinds:
        if kind == "noise":
            continue
        for f in done:
            if f not in written[kind] and _remove(path_of(kind, f)):
                state["dirty"] = True

    def write_frame(frame, noise_np):
        files.save_npy_atomic(noise_path(frame), noise_np)
        written["noise"].add(frame)
        if preview:
            files.write_png_atomic(path_of("preview", frame), files.noise_to_preview(noise_np))
            written["preview"].add(frame)
        else:
            _remove(path_of("preview", frame))
            written["preview"].discard(frame)
        for kind in kinds:
            if kind not in ("noise", "preview"):
                _remove(path_of(kind, frame))   # the hook writes this frame's anew
                written[kind].discard(frame)
        if on_frame is not None:
            on_frame(frame, noise_np)
        note_sidecars(frame)
        files.write_json_atomic(bake_path, record(STATUS_IN_PROGRESS, sorted(written["noise"])))
        state["dirty"] = False

    if not already_complete:
        files.write_json_atomic(bake_path, record(STATUS_IN_PROGRESS, done))
        state["dirty"] = False

    # --- the frame loop
    frames = list(done)
    total = None if count is None else count + 1
    with Progress(total, initial=len(done), enabled=progress) as bar:
        if done:
            noise_np = np.load(noise_path(done[-1]), allow_pickle=False)
            if not np.isfinite(noise_np).all():   # the chain goes on from it unchecked
                raise files.OutputError(f"{str(noise_path(done[-1]))!r} has non-finite "
                                        "values: not a frame of this bake; rerun with "
                                        "--no-resume (resume=False)")
            for frame in done:
                need_preview = preview and frame not in written["preview"]
                if need_preview or on_frame is not None:
                    noise_f = noise_np if frame == done[-1] else np.load(
                        noise_path(frame), allow_pickle=False)
                if need_preview:  # an earlier run may have had previews off
                    files.write_png_atomic(path_of("preview", frame),
                                           files.noise_to_preview(noise_f))
                    written["preview"].add(frame)
                    state["dirty"] = True
                if on_frame is not None:
                    on_frame(frame, noise_f)
                    note_sidecars(frame)
                if state["dirty"]:
                    files.write_json_atomic(bake_path, record(
                        old.get("status") if already_complete else STATUS_IN_PROGRESS,
                        done, extra={k: old[k] for k in ("noise_shape", "latents_shape",
                                                          "files", "target", "latents_note",
                                                          "memory") if k in old}
                        if already_complete else None))
                    state["dirty"] = False
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
        return BakeResult(out_dir=out_dir, frames=frames, noise_shape=noise_shape,
                          latents_path=latents_path, latents_shape=latents_shape,
                          resumed_frames=len(done), record=_read_bake_json(bake_path))
    # Frames of another length (an iterator that ended sooner) are no frames of this bake.
    keep = set(frames)
    for kind, (prefix, ext) in kinds.items():
        for f in _frames_on_disk(out_dir, prefix, ext) - keep:
            _remove(out_dir / files.frame_name(prefix, f, ext))
            written[kind].discard(f)
    files.assemble_latents(out_dir, frames, latent_factor)
    once_written = [files.LATENTS_NAME]
    target_record = None
    if target is not None:
        target_record = write_target_outputs(
            out_dir, frames, lambda f: np.load(noise_path(f), allow_pickle=False),
            seed=params.get("seed", 0), latent_factor=latent_factor, **target)
        once_written += [n for n in output_names() if (out_dir / n).is_file()]
    extra = {
        "noise_shape": list(noise_shape), "latents_shape": list(latents_shape),
        "files": {"noise": NOISE_PREFIX + "_{frame:04d}.npy",
                  "preview": (PREVIEW_PREFIX + "_{frame:04d}.png") if preview else None,
                  "sidecars": {k: NOISE_PREFIX + "_{frame:04d}." + k for k in sidecars},
                  "latents": files.LATENTS_NAME},
        "target": target_record,
        "latents_note": crop_note,
        "memory": estimate.as_json(),
    }
    final = record(STATUS_COMPLETE, frames, extra=extra)
    files.write_json_atomic(bake_path, final)
    return BakeResult(out_dir=out_dir, frames=frames, noise_shape=noise_shape,
                      latents_path=latents_path, latents_shape=latents_shape,
                      resumed_frames=len(done), record=final)
