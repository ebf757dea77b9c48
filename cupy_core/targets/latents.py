"""Latent frames from the warped video frames, exactly (DIFFUSION_FACTS 1-2).

Spatial pooling is ``cupy_core.downsample`` (sum over f x f blocks / f: each latent
pixel stays N(0, 1)). Temporal modes, for a VAE of stride s taking F = s*k + 1 frames:

* ``nearest`` (default): latent frame i is video frame s*i of the warped chain. Each
  latent frame is one whole warped frame, so it is exactly white N(0, 1), and frame i+1
  is frame i carried by the scene's motion over s video frames.
* ``blend_norm``: Go-with-the-Flow's blend-and-normalise, for its LoRAs trained that way
  (``..._blendnorm_...``): the video frames are split into F_lat groups at
  int(i * F / F_lat), each latent frame is the plain mean of its group, divided by its
  standard deviation over the rows axis per (channel, column) (torch's ``x.std(1)``,
  ddof 1). Approximate: the result has about, not exactly, unit variance and is no
  longer exactly Gaussian per pixel.

Degradation A in [0, 1], after the temporal step:
``(fresh * A + warped * (1 - A)) / sqrt(A^2 + (1 - A)^2)``, so that the result is
N(0, 1) again and correlates with the undegraded noise by
``(1 - A) / sqrt(A^2 + (1 - A)^2)``. ``fresh`` is ``cupy_core.white_noise`` of the
latent shape with seed ``derived_seed(seed, "degradation")`` and frame = the latent
frame's index: a key the bake never uses for its own frames, and the same seed gives
the same bits.
"""
import hashlib

import numpy as np

from .. import downsample, white_noise
from .profiles import get_profile, latent_frame_count

__all__ = ["TEMPORAL_MODES", "DEFAULT_TEMPORAL", "derived_seed", "latent_frame_indices",
           "blend_groups", "blend_norm", "degrade", "degradation_correlation",
           "check_temporal", "check_degradation", "padding_frame", "LatentFrames"]

TEMPORAL_MODES = ("nearest", "blend_norm")
DEFAULT_TEMPORAL = "nearest"


def derived_seed(seed, purpose):
    """A 64-bit seed for a secondary noise stream, derived from the bake's ``seed`` and
    a ``purpose`` word: the first 8 bytes (little-endian) of
    SHA-256("cupy_core.targets:<purpose>:<seed>"). Deterministic, and with ~2^-64
    chance equal to any bake seed."""
    digest = hashlib.sha256(f"cupy_core.targets:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def check_temporal(temporal):
    t = DEFAULT_TEMPORAL if temporal is None else str(temporal).strip().lower()
    if t == "blend-norm":
        t = "blend_norm"
    if t not in TEMPORAL_MODES:
        raise ValueError(f"temporal mode must be one of {', '.join(TEMPORAL_MODES)}, "
                         f"got {temporal!r}")
    return t


def check_degradation(degradation):
    try:
        a = float(0.0 if degradation is None else degradation)
    except (TypeError, ValueError):
        raise ValueError(f"degradation must be a number in [0, 1], got {degradation!r}") from None
    if not 0.0 <= a <= 1.0:   # NaN fails too
        raise ValueError(f"degradation must be in [0, 1] (0 off, 1 all fresh noise), got "
                         f"{degradation!r}")
    return a


def latent_frame_indices(frame_count, stride):
    """Positions in the video (0-based) of the ``nearest`` latent frames: 0, s, 2s, ..."""
    n = (int(frame_count) - 1) // int(stride) + 1
    return [int(stride) * i for i in range(n)]


def blend_groups(frame_count, latent_count):
    """Go-with-the-Flow's groups: video positions [int(i*F/n), int((i+1)*F/n))."""
    F, n = int(frame_count), int(latent_count)
    edges = [int(i * F / n) for i in range(n + 1)]
    return [list(range(edges[i], edges[i + 1])) for i in range(n)]


def blend_norm(frames_hwc):
    """One ``blend_norm`` latent frame from its group's pooled frames (h, w, C): their
    mean, divided by its standard deviation over rows (axis 0) per (column, channel),
    ddof 1 as torch's ``std``."""
    mean = np.mean(np.stack([np.asarray(f, np.float64) for f in frames_hwc]), axis=0)
    std = mean.std(axis=0, ddof=1, keepdims=True) if mean.shape[0] > 1 else np.ones_like(mean[:1])
    return (mean / std).astype(np.float32)


def degradation_correlation(degradation):
    """The correlation of degraded with undegraded noise: (1-A)/sqrt(A^2+(1-A)^2)."""
    a = check_degradation(degradation)
    return (1.0 - a) / np.sqrt(a * a + (1.0 - a) ** 2)


def degrade(latent, degradation, *, seed, index):
    """Latent frame (h, w, C) degraded by A = ``degradation``: fresh noise keyed by
    (``derived_seed(seed, "degradation")``, ``index``), mixed and renormalised.
    A = 0 returns ``latent`` unchanged (float32)."""
    a = check_degradation(degradation)
    latent = np.asarray(latent, dtype=np.float32)
    if a == 0.0:
        return latent
    h, w, c = latent.shape
    fresh = white_noise((h, w), c, seed=derived_seed(seed, "degradation"), frame=int(index))
    mixed = (fresh.astype(np.float64) * a + latent.astype(np.float64) * (1.0 - a))
    return (mixed / np.sqrt(a * a + (1.0 - a) ** 2)).astype(np.float32)


def padding_frame(shape_hwc, *, seed):
    """CogVideoX 1.5's leading padding latent frame (dropped by its pipeline after
    denoising): fresh white noise with seed ``derived_seed(seed, "padding")``."""
    h, w, c = shape_hwc
    return white_noise((h, w), c, seed=derived_seed(seed, "padding"), frame=0)


class LatentFrames:
    """The target's latent frames, (F_lat, h, w, C) float32, from full-resolution frames
    read one at a time (``read_noise(frame) -> (H, W, C)``); only latent-size arrays are
    kept. For ``gwtf`` the result is per video frame (no temporal step, no
    degradation: its inference script does both)."""

    def __init__(self, target, frames, *, temporal=None, degradation=0.0, seed=0,
                 latent_factor=None):
        self.profile = p = get_profile(target)
        if not p.is_output:
            raise ValueError("target 'none' has no model latents")
        self.frames = [int(f) for f in frames]
        if not self.frames:
            raise ValueError("no frames to make latents from")
        self.temporal = check_temporal(temporal)
        self.degradation = check_degradation(degradation)
        if p.name == "gwtf" and self.degradation:
            raise ValueError("Go-with-the-Flow degrades the noise itself (its inference "
                             "script's degradation setting): leave degradation at 0 for "
                             "--target gwtf")
        self.seed = int(seed)
        self.factor = p.spatial if latent_factor is None else int(latent_factor)
        F = len(self.frames)
        self.video_frames = F
        if p.name == "gwtf" or p.temporal == 1:
            self.groups = [[i] for i in range(F)]
        elif self.temporal == "nearest":
            self.groups = [[i] for i in latent_frame_indices(F, p.temporal)]
        else:
            self.groups = blend_groups(F, (F - 1) // p.temporal + 1)
        self.padded = latent_frame_count(p, F) - len(self.groups) if p.name != "gwtf" else 0

    def compute(self, read_noise):
        """(F_lat, h, w, C) float32, reading each needed frame once, in order."""
        need = sorted({i for g in self.groups for i in g})
        pooled = {}
        latents = []
        remaining = {i: sum(i in g for g in self.groups) for i in need}
        for gi, group in enumerate(self.groups):
            for i in group:
                if i not in pooled:
                    noise = np.asarray(read_noise(self.frames[i]), dtype=np.float32)
                    if noise.ndim != 3:
                        raise ValueError(f"frame {self.frames[i]}: noise must be (H, W, C), "
                                         f"got shape {noise.shape}")
                    pooled[i] = np.asarray(downsample(noise, self.factor), np.float32)
            if self.temporal == "blend_norm" and len(group) >= 1 and self.profile.temporal > 1 \
                    and self.profile.name != "gwtf":
                lat = blend_norm([pooled[i] for i in group])
            else:
                lat = pooled[group[0]]
            for i in group:
                remaining[i] -= 1
                if not remaining[i]:
                    del pooled[i]
            latents.append(lat)
        out = np.stack(latents).astype(np.float32)
        if self.padded:
            pad = padding_frame(out.shape[1:], seed=self.seed)[None]
            out = np.concatenate([pad, out])
        if self.degradation:
            out = np.stack([degrade(out[i], self.degradation, seed=self.seed, index=i)
                            for i in range(out.shape[0])])
        return out
