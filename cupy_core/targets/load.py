"""``load_latents``: a baked folder's model latents as a torch tensor (torch only here).

Install with the ``models`` extra (``pip install cupy_core[models]``).
"""
import json
from pathlib import Path

import numpy as np

from .files import BAKE_JSON_KEY, DIFFUSERS_NAME, GWTF_NAME
from .profiles import get_profile

__all__ = ["load_latents", "read_target_record", "pipeline_kwargs"]


def read_target_record(folder):
    """The target dict that ``write_target_outputs`` returned, from the folder's
    bake.json (``bake.json[BAKE_JSON_KEY]``). ValueError when there is none."""
    folder = Path(folder)
    path = folder / "bake.json"
    if not path.is_file():
        raise ValueError(f"{str(folder)!r} has no bake.json: is it a bake's output folder?")
    record = json.loads(path.read_text())
    target = record.get(BAKE_JSON_KEY)
    if not isinstance(target, dict) or not target.get("target"):
        raise ValueError(f"{str(path)!r} names no model target: bake again with "
                         "--target (wan, hunyuan, cogvideox, ltx, ...)")
    return target


def pipeline_kwargs(folder):
    """``num_frames``, ``height``, ``width`` to pass to the pipeline with the latents."""
    rec = read_target_record(folder)
    w, h = rec["render_size"]
    return {"num_frames": int(rec["video_frames"]), "height": int(h), "width": int(w)}


def _model(pipeline):
    for name in ("transformer", "unet", "transformer_2"):
        m = getattr(pipeline, name, None)
        if m is not None:
            return name, m
    raise ValueError(f"{type(pipeline).__name__} has no transformer or unet to check the "
                     "latents against")


def _vae_factors(pipeline):
    """(spatial, temporal) of the pipeline's VAE, None where it does not say."""
    spatial = temporal = None
    for name in ("vae_scale_factor_spatial", "vae_spatial_compression_ratio",
                 "vae_spatial_scale_factor", "vae_scale_factor"):
        if getattr(pipeline, name, None) is not None:
            spatial = int(getattr(pipeline, name))
            break
    for name in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio",
                 "vae_temporal_scale_factor"):
        if getattr(pipeline, name, None) is not None:
            temporal = int(getattr(pipeline, name))
            break
    if temporal is None and hasattr(pipeline, "unet"):
        temporal = 1   # AnimateDiff: no temporal compression
    return spatial, temporal


def _vae_channels(pipeline):
    cfg = getattr(getattr(pipeline, "vae", None), "config", None)
    for key in ("latent_channels", "z_dim"):
        v = getattr(cfg, key, None) if cfg is not None else None
        if v is not None:
            return int(v)
    return None


def _check_pipeline(pipeline, rec, profile):
    kind = type(pipeline).__name__
    name, model = _model(pipeline)
    problems = []
    C = int(rec["channels"])
    in_ch = int(model.config.in_channels)
    vae_ch = _vae_channels(pipeline)
    i2v = "ImageToVideo" in kind or "I2V" in kind or "Image2Video" in kind
    expected = vae_ch if vae_ch is not None else (in_ch // 2 if i2v else in_ch)
    if expected != C or (in_ch != C and not (i2v and in_ch > C)):
        takes = expected if expected != C else in_ch
        problems.append(f"its {name} takes {takes}-channel latents"
                        f"{' (plus the image condition)' if i2v else ''}, the bake has {C} "
                        f"(--target {profile.name}); a {takes}-channel model needs the "
                        f"target whose latents have {takes} channels")
    spatial, temporal = _vae_factors(pipeline)
    if spatial is not None and spatial != int(rec["latent_factor"]):
        problems.append(f"its VAE downsamples by {spatial}, the bake by "
                        f"{rec['latent_factor']}")
    if temporal is not None and temporal != int(rec["temporal_stride"]):
        problems.append(f"its VAE packs {temporal} frames per latent frame, the bake's "
                        f"target {rec['temporal_stride']}")
    elif temporal is not None:
        F = int(rec["video_frames"])
        n = (F - 1) // temporal + 1 if temporal > 1 else F
        pt = getattr(model.config, "patch_size_t", None) if hasattr(model, "config") else None
        if pt and n % int(pt):
            n += int(pt) - n % int(pt)
        if n != int(rec["latent_frames"]):
            problems.append(f"{F} video frames make {n} latent frames in this pipeline, "
                            f"the bake has {rec['latent_frames']}")
    if problems:
        raise ValueError(f"the latents baked for {profile.label} (--target {profile.name}) "
                         f"do not fit {kind}: " + "; ".join(problems))
    return model


def load_latents(folder, pipeline=None, *, dtype=None, device=None):
    """The folder's model latents as a torch tensor, in the layout of the target named
    in its bake.json (``model_latents.npy``; ``gwtf``: ``noises.npy`` as stored).

    Given a diffusers ``pipeline``, first checks that it fits: the transformer's (or
    unet's) input channels (image-to-video pipelines take the latent channels plus the
    image condition), the VAE's spatial and temporal factors and the latent frame count;
    a mismatch raises ValueError naming what does not fit. Then the dtype: the
    transformer's for pipelines that use ``latents=`` as given (CogVideoX, AnimateDiff),
    float32 for those that cast themselves (Wan, HunyuanVideo, LTX, Cosmos, Mochi: they
    keep the scheduler's state in float32 and cast at the transformer's input); the
    device: the pipeline's. ``dtype`` and ``device`` override. Pass the pipeline
    ``num_frames``, ``height``, ``width`` from ``pipeline_kwargs(folder)``.
    """
    import torch

    folder = Path(folder)
    rec = read_target_record(folder)
    profile = get_profile(rec["target"])
    path = folder / (GWTF_NAME if profile.name == "gwtf" else DIFFUSERS_NAME)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is missing: bake.json names target "
                         f"{profile.name}, whose file it is")
    array = np.load(path, allow_pickle=False)
    if list(array.shape) != list(rec["shape"]):
        raise ValueError(f"{str(path)!r} has shape {list(array.shape)}, bake.json says "
                         f"{rec['shape']}: the folder holds parts of two bakes")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    want_dtype, want_device = None, None
    if pipeline is not None:
        if profile.name == "gwtf":
            raise ValueError(f"{str(path)!r} holds Go-with-the-Flow's per-video-frame noise "
                             "for its own inference script, not a pipeline's latents=: "
                             f"bake with --target cogvideox for {type(pipeline).__name__}")
        model = _check_pipeline(pipeline, rec, profile)
        want_dtype = torch.float32 if profile.pipeline_casts else model.dtype
        want_device = getattr(pipeline, "_execution_device", None) or getattr(
            pipeline, "device", None)
    if dtype is not None:
        want_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device is not None:
        want_device = device
    if want_dtype is not None or want_device is not None:
        tensor = tensor.to(device=want_device, dtype=want_dtype)
    return tensor
