"""The files a model takes as is, and the entry points the bake calls.

* ``model_latents.npy``: the latents exactly as the target's diffusers pipeline takes
  them in ``latents=`` (batch axis included), float32.
* ``model_latents.latent``: what ComfyUI's core LoadLatent reads: safetensors with
  ``latent_tensor`` (ComfyUI's layout, float32) and the empty
  ``latent_format_version_0`` entry, without which LoadLatent multiplies by 1/0.18215.
  Written here with the standard library and NumPy (``write_safetensors``).
* ``noises.npy`` (``gwtf``): (F, H/8, W/8, 16) float16, one entry per *video* frame,
  as Go-with-the-Flow's ``make_warped_noise.py`` writes it.

``plan`` validates a bake's settings before any work and returns the shapes;
``write_target_outputs`` writes the files after all frames exist and returns the dict
to store in bake.json under ``BAKE_JSON_KEY``.
"""
import json
import struct
from pathlib import Path

import numpy as np

from ..bake.files import atomic_path, save_npy_atomic
from .latents import LatentFrames, check_degradation, check_temporal
from .profiles import (check_channels, check_frame_count, check_latent_factor,
                       check_render_size, frame_rule, get_profile, latent_frame_count)



__all__ = ["BAKE_JSON_KEY", "DIFFUSERS_NAME", "COMFYUI_NAME", "GWTF_NAME", "plan",
           "target_settings", "output_names",
           "write_target_outputs", "to_layout", "from_layout", "write_safetensors",
           "read_safetensors", "layout_shape"]

BAKE_JSON_KEY = "target"
DIFFUSERS_NAME = "model_latents.npy"
COMFYUI_NAME = "model_latents.latent"
GWTF_NAME = "noises.npy"
COMFYUI_MARKER = "latent_format_version_0"


# --------------------------------------------------------------------------- layouts

def to_layout(latents, layout):
    """(F, h, w, C) latents in a named layout (profiles.py), as a C-contiguous array."""
    x = np.asarray(latents)
    if x.ndim != 4:
        raise ValueError(f"latents must be (F, h, w, C), got shape {x.shape}")
    F, h, w, C = x.shape
    if layout == "BCFHW":
        out = x.transpose(3, 0, 1, 2)[None]
    elif layout == "BFCHW":
        out = x.transpose(0, 3, 1, 2)[None]
    elif layout == "packed":   # LTX _pack_latents, patch 1: token (f*h + y)*w + x
        out = x.reshape(1, F * h * w, C)
    elif layout == "FCHW":
        out = x.transpose(0, 3, 1, 2)
    elif layout == "FHWC":
        out = x
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return np.ascontiguousarray(out)


def from_layout(array, layout, frames_hw=None):
    """Inverse of ``to_layout`` (``packed`` needs ``frames_hw`` = (F, h, w))."""
    x = np.asarray(array)
    if layout == "BCFHW":
        return x[0].transpose(1, 2, 3, 0)
    if layout == "BFCHW":
        return x[0].transpose(0, 2, 3, 1)
    if layout == "packed":
        F, h, w = frames_hw
        return x[0].reshape(F, h, w, x.shape[-1])
    if layout == "FCHW":
        return x.transpose(0, 2, 3, 1)
    if layout == "FHWC":
        return x
    raise ValueError(f"unknown layout {layout!r}")


def layout_shape(layout, F, h, w, C):
    return {"BCFHW": [1, C, F, h, w], "BFCHW": [1, F, C, h, w], "packed": [1, F * h * w, C],
            "FCHW": [F, C, h, w], "FHWC": [F, h, w, C]}[layout]


# --------------------------------------------------------------------------- safetensors

_ST_DTYPES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16",
              np.dtype("float64"): "F64", np.dtype("int64"): "I64", np.dtype("int32"): "I32",
              np.dtype("uint8"): "U8"}


def _safetensors_bytes(tensors, metadata=None):
    """Header and data of a safetensors file: 8-byte little-endian header length, the
    JSON header (padded with spaces to a multiple of 8), then the raw little-endian
    data of each tensor in the order given, contiguous."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        a = np.asarray(arr)
        if a.dtype not in _ST_DTYPES:
            raise ValueError(f"safetensors: dtype {a.dtype} of {name!r} is not supported here")
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, chunks


def write_safetensors(path, tensors, metadata=None):
    """Write ``tensors`` (name -> NumPy array) as a safetensors file, atomically."""
    head, chunks = _safetensors_bytes(tensors, metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(head)
        for c in chunks:
            f.write(c)
    return Path(path)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, with NumPy only (the types above)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    names = {v: k for k, v in _ST_DTYPES.items()}
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + start:base + end],
                                  dtype=names[info["dtype"]].newbyteorder("<")).reshape(
                                      info["shape"]).astype(names[info["dtype"]])
    return out, metadata


# --------------------------------------------------------------------------- plan

def target_settings(target=None, temporal=None, degradation=0.0):
    """A bake's target choice, checked and in the form bake.json records (and a resume
    compares): None for ``none`` (today's outputs only), else ``{"target", "temporal",
    "degradation"}``."""
    p = get_profile(target if target is not None else "none")
    temporal = check_temporal(temporal)
    degradation = check_degradation(degradation)
    if not p.is_output:
        if degradation:
            raise ValueError("degradation applies to a target's latents: choose a target "
                             "(--target) or leave degradation at 0")
        return None
    return {"target": p.name, "temporal": temporal, "degradation": degradation}


def output_names():
    """Every file a target may write (for removing an earlier bake's)."""
    return (DIFFUSERS_NAME, COMFYUI_NAME, GWTF_NAME)



def plan(target, frame_count, height, width, channels=None, latent_factor=None, *,
         temporal=None, degradation=0.0):
    """Validate a bake for ``target`` before any work and return its shapes: a dict with
    ``channels`` and ``latent_factor`` (what the bake must use), ``video_frames``,
    ``latent_frames``, ``latent_size`` [h, w], the ``files`` and their shapes, and the
    panel's ``rule`` text. Raises ValueError in the user's terms (frame count, size,
    --channels, --latent-factor, temporal mode, degradation)."""
    p = get_profile(target)
    temporal = check_temporal(temporal)
    degradation = check_degradation(degradation)
    if not p.is_output:
        return {"target": p.name, "channels": channels, "latent_factor": latent_factor,
                "files": {}, "rule": frame_rule(p)}
    C = check_channels(p, channels)
    f = check_latent_factor(p, latent_factor)
    F = check_frame_count(p, frame_count)
    width, height = check_render_size(p, width, height)
    if p.name == "gwtf" and degradation:
        raise ValueError("Go-with-the-Flow degrades the noise itself (its inference "
                         "script's degradation setting): leave degradation at 0 for "
                         "--target gwtf")
    h, w = height // f, width // f
    n = latent_frame_count(p, F)
    files = {}
    if p.name == "gwtf":
        files[GWTF_NAME] = {"layout": "FHWC", "shape": [F, h, w, C], "dtype": "float16"}
    else:
        files[DIFFUSERS_NAME] = {"layout": p.diffusers_layout,
                                 "shape": layout_shape(p.diffusers_layout, n, h, w, C),
                                 "dtype": "float32"}
        files[COMFYUI_NAME] = {"layout": p.comfyui_layout,
                               "shape": layout_shape(p.comfyui_layout, n, h, w, C),
                               "dtype": "float32"}
    return {"target": p.name, "label": p.label, "channels": C, "latent_factor": f,
            "temporal_stride": p.temporal, "video_frames": F, "latent_frames": n,
            "padded_frames": n - ((F - 1) // p.temporal + 1) if p.pad_even else 0,
            "render_size": [width, height], "latent_size": [h, w],
            "temporal": temporal if p.temporal > 1 and p.name != "gwtf" else "none",
            "degradation": degradation, "model_dtype": p.model_dtype,
            "pipeline_casts": p.pipeline_casts, "files": files, "rule": frame_rule(p)}


# --------------------------------------------------------------------------- write

def write_target_outputs(out_dir, frames, read_noise, *, target, temporal=None,
                         degradation=0.0, seed=0, latent_factor=None):
    """Write the target's files into ``out_dir`` from the bake's ``frames`` (frame
    numbers, in order), reading each full-resolution frame once with
    ``read_noise(frame) -> (H, W, C) float32`` (only latent-size arrays are kept).
    Returns the dict for bake.json's ``BAKE_JSON_KEY`` ({} for target ``none``)."""
    p = get_profile(target)
    if not p.is_output:
        return {}
    frames = [int(f) for f in frames]
    out_dir = Path(out_dir)
    first = np.asarray(read_noise(frames[0]))
    if first.ndim != 3:
        raise ValueError(f"target {p.name} needs 2-D noise frames (H, W, C), got shape "
                         f"{first.shape}")
    H, W, C = first.shape
    info = plan(p, len(frames), H, W, C, latent_factor, temporal=temporal,
                degradation=degradation)
    cache = {frames[0]: first}

    def read(frame):   # the first frame was read above: do not read it twice
        return cache.pop(frame) if frame in cache else read_noise(frame)

    maker = LatentFrames(p, frames, temporal=info["temporal"] if info["temporal"] != "none"
                         else None, degradation=info["degradation"], seed=seed,
                         latent_factor=info["latent_factor"])
    lat = maker.compute(read)
    cache.clear()
    F_lat, h, w, _ = lat.shape
    assert [h, w] == info["latent_size"] and F_lat == (info["video_frames"] if p.name == "gwtf"
                                                       else info["latent_frames"])
    files = {}
    if p.name == "gwtf":
        save_npy_atomic(out_dir / GWTF_NAME, lat.astype(np.float16))
        files[GWTF_NAME] = info["files"][GWTF_NAME]
    else:
        model = to_layout(lat, p.diffusers_layout).astype(np.float32)
        save_npy_atomic(out_dir / DIFFUSERS_NAME, model)
        comfy = to_layout(lat, p.comfyui_layout).astype(np.float32)
        meta = {"format": "cupy_core.target", "target": p.name,
                "layout": p.comfyui_layout, "video_frames": info["video_frames"],
                "width": W, "height": H, "seed": int(seed)}
        write_safetensors(out_dir / COMFYUI_NAME,
                          {"latent_tensor": comfy,
                           COMFYUI_MARKER: np.zeros((0,), np.float32)}, meta)
        files[DIFFUSERS_NAME] = info["files"][DIFFUSERS_NAME]
        files[COMFYUI_NAME] = info["files"][COMFYUI_NAME]
    return {"target": p.name, "label": p.label, "layout": p.diffusers_layout or "FHWC",
            "comfyui_layout": p.comfyui_layout or None,
            "shape": files[next(iter(files))]["shape"],
            "dtype": files[next(iter(files))]["dtype"], "model_dtype": p.model_dtype,
            "pipeline_casts": p.pipeline_casts, "temporal": info["temporal"],
            "degradation": info["degradation"],
            "degradation_seed": "sha256('cupy_core.targets:degradation:<seed>')[:8]"
            if info["degradation"] else None,
            "video_frames": info["video_frames"], "latent_frames": int(F_lat),
            "padded_frames": info["padded_frames"], "channels": int(C),
            "latent_factor": info["latent_factor"], "temporal_stride": p.temporal,
            "render_size": [int(W), int(H)], "latent_size": [int(h), int(w)],
            "files": files}
