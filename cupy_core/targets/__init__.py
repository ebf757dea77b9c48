"""Noise that video-diffusion models take as is (issue 14).

``profiles``: one table of model families (``--target``); ``latents``: latent frames
from the warped chain (``nearest``, ``blend_norm``) and degradation; ``files``: the
files (``model_latents.npy``, ``model_latents.latent``, ``noises.npy``), ``plan`` and
``write_target_outputs``; ``load``: ``load_latents`` (torch, imported only there).
"""
from .files import BAKE_JSON_KEY, plan, target_settings, write_target_outputs
from .latents import DEFAULT_TEMPORAL, TEMPORAL_MODES, degradation_correlation
from .profiles import (DEFAULT_TARGET, PROFILES, TARGETS, format_targets, frame_rule,
                       get_profile, latent_frame_count)

__all__ = ["BAKE_JSON_KEY", "plan", "target_settings", "write_target_outputs", "TEMPORAL_MODES",
           "DEFAULT_TEMPORAL", "degradation_correlation", "DEFAULT_TARGET", "PROFILES",
           "TARGETS", "format_targets", "frame_rule", "get_profile", "latent_frame_count",
           "load_latents"]


def load_latents(folder, pipeline=None, *, dtype=None, device=None):
    """See ``cupy_core.targets.load.load_latents`` (imports torch)."""
    from .load import load_latents as _load
    return _load(folder, pipeline, dtype=dtype, device=device)
