"""The chained 3-D bake (DESIGN.md 9 for volumes): frame ``first_frame`` is white
noise ``(D, H, W, C)``, each later frame the warp of the one before by the backward
positions at voxel corners. Files, each written atomically: ``noise_XXXX.npy``
``(D, H, W, C)`` float32 per frame, ``latents.npy`` ``(F, D//f, H//f, W//f, C)``, and
``bake.json`` ("in progress" until the end). A rerun with the same parameters resumes
after the last whole frame; other parameters raise ``BakeMismatchError``. An error in
the positions of a frame (a missing or malformed velocity frame) stops the bake with
every frame written so far kept, whole, for a resume.

``on_frame(frame, noise)`` (optional) is called for every frame of the bake, resumed
ones included, after its ``.npy`` is on disk: the add-on writes its OpenVDB files there.
"""
import os
import tempfile
from pathlib import Path

import numpy as np

from .. import io as _io
from ..sequence import (STATUS_COMPLETE, STATUS_IN_PROGRESS, BakeMismatchError, BakeResult,
                        NOISE_PREFIX, _frames_on_disk, _normalise, _read_bake_json)

__all__ = ["bake_volume_sequence"]


def _stack_latents(out_dir, frames, factor):
    from .. import downsample

    target = Path(out_dir) / _io.LATENTS_NAME
    first = None
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix="." + _io.LATENTS_NAME + ".", suffix=".tmp")
    os.close(fd)
    try:
        mm = None
        for n, frame in enumerate(frames):
            arr = np.load(Path(out_dir) / _io.frame_name(NOISE_PREFIX, frame, "npy"),
                          allow_pickle=False)
            lat = np.asarray(downsample(arr, factor), np.float32)
            if mm is None:
                first = lat.shape
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                               shape=(len(frames),) + first)
            mm[n] = lat
        mm.flush()
        del mm
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target, (len(frames),) + first


def bake_volume_sequence(positions, out_dir, *, shape, method="grid", seed=0, channels=4,
                         latent_factor=1, first_frame=0, source=None, resume=True, xp=None,
                         on_frame=None, warp_options=None):
    """Bake ``len(positions) + 1`` frames; ``positions[t]`` is the ``(D+1, H+1, W+1, 3)``
    backward map (voxel corners, ``(x, y, z)``) making frame ``first_frame + t + 1``,
    asked for only when that frame is baked. ``shape`` is ``(D, H, W)``."""
    import cupy_core

    xp = np if xp is None else xp
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (D, H, W), got {shape}")
    channels, latent_factor, first_frame = int(channels), int(latent_factor), int(first_frame)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if not 1 <= latent_factor <= min(shape):
        raise ValueError(f"latent factor must be in 1..{min(shape)}, got {latent_factor}")
    count = len(positions)
    total = count + 1
    noise_shape = shape + (channels,)
    params = _normalise({
        "source": source, "method": method, "seed": int(seed), "channels": channels,
        "at": "corners", "shape": list(shape), "first_frame": first_frame,
        "frame_count": total, "latent_factor": latent_factor, "dims": 3,
        "warp_options": dict(warp_options or {})})
    out_dir = _io.check_output_dir(out_dir)
    _io.remove_stale_temporaries(out_dir)
    bake_path = out_dir / _io.BAKE_JSON_NAME

    def npy(frame):
        return out_dir / _io.frame_name(NOISE_PREFIX, frame, "npy")

    done, old = [], None
    if not resume:
        for frame in _frames_on_disk(out_dir, NOISE_PREFIX, "npy"):
            npy(frame).unlink()
        for name in (_io.LATENTS_NAME, _io.BAKE_JSON_NAME):
            if (out_dir / name).exists():
                (out_dir / name).unlink()
    elif bake_path.exists():
        old = _read_bake_json(bake_path)
        differ = [k for k in params if _normalise(old.get(k)) != params[k]]
        if differ:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {params[k]!r} now" for k in differ)
            raise BakeMismatchError(f"output folder {str(out_dir)!r} holds a bake with other "
                                    f"parameters ({detail}); use another folder, or do not "
                                    "resume")
        if (old.get("versions") or {}).get("cupy_core") != cupy_core.__version__:
            raise BakeMismatchError(f"output folder {str(out_dir)!r} holds a bake of another "
                                    "cupy_core version; use another folder, or do not resume")
        on_disk = _frames_on_disk(out_dir, NOISE_PREFIX, "npy")
        frame = first_frame
        while frame in on_disk and frame < first_frame + total:
            done.append(frame)
            frame += 1
    elif _frames_on_disk(out_dir, NOISE_PREFIX, "npy"):
        raise _io.OutputError(f"output folder {str(out_dir)!r} has noise frames but no "
                              "bake.json, so they cannot be resumed safely; use another "
                              "folder, or do not resume")
    complete = old is not None and old.get("status") == STATUS_COMPLETE and len(done) == total
    if not complete:
        _io.write_json_atomic(bake_path, _io.bake_json(params, status=STATUS_IN_PROGRESS,
                                                       frames=done))
    resumed = len(done)
    if done:
        noise_np = np.load(npy(done[-1]), allow_pickle=False)
        if noise_np.shape != noise_shape or noise_np.dtype != np.float32:
            raise _io.OutputError(f"{str(npy(done[-1]))!r} is {noise_np.dtype} "
                                  f"{noise_np.shape}, expected float32 {noise_shape}")
        if on_frame is not None:
            for frame in done:
                on_frame(frame, noise_np if frame == done[-1] else
                         np.load(npy(frame), allow_pickle=False))
        noise = xp.asarray(noise_np)
    else:
        noise = cupy_core.white_noise(shape, channels, seed=int(seed), frame=first_frame, xp=xp)
        noise_np = _io._to_numpy(noise)
        _io.save_npy_atomic(npy(first_frame), noise_np)
        if on_frame is not None:
            on_frame(first_frame, noise_np)
        done.append(first_frame)
    frames = list(done)
    for t in range(frames[-1] - first_frame, count):
        frame = first_frame + t + 1
        pos = positions[t]
        pos = np.asarray(pos, np.float64) if xp is np else xp.asarray(pos)
        if tuple(pos.shape) != tuple(n + 1 for n in shape) + (3,):
            raise ValueError(f"positions for frame {frame} have shape {tuple(pos.shape)}; "
                             f"expected {tuple(n + 1 for n in shape) + (3,)}")
        noise = cupy_core.warp(noise, pos, method=method, seed=int(seed), frame=frame,
                               at="corners", **dict(warp_options or {}))
        noise_np = _io._to_numpy(noise)
        _io.save_npy_atomic(npy(frame), noise_np)
        if on_frame is not None:
            on_frame(frame, noise_np)
        frames.append(frame)
    latents_path = out_dir / _io.LATENTS_NAME
    if complete and latents_path.exists():
        record = old
        latents_shape = tuple(np.load(latents_path, mmap_mode="r").shape)
    else:
        latents_path, latents_shape = _stack_latents(out_dir, frames, latent_factor)
        record = _io.bake_json(params, status=STATUS_COMPLETE, frames=frames, extra={
            "noise_shape": list(noise_shape), "latents_shape": list(latents_shape),
            "files": {"noise": NOISE_PREFIX + "_{frame:04d}.npy", "latents": _io.LATENTS_NAME}})
        _io.write_json_atomic(bake_path, record)
    return BakeResult(out_dir=out_dir, frames=frames, noise_shape=noise_shape,
                      latents_path=latents_path, latents_shape=latents_shape,
                      resumed_frames=resumed, record=record)
