"""What each video-diffusion model takes as noise: one table, one entry per family.

A profile says how a bake at render size H x W with F video frames becomes the
latent noise a model samples from: channels C, spatial factor f (h = H / f), temporal
stride s (F = s*k + 1 video frames -> k + 1 latent frames; s = 1: one latent frame per
video frame), the tensor layouts of its diffusers pipeline (``latents=``) and of
ComfyUI, and the dtype its transformer runs in. Adding a family is one entry in
``PROFILES``. Facts: shared/DIFFUSION_FACTS.md 1-3, and the diffusers 0.42 sources.

Layout names (B batch, C channels, F latent frames, H, W latent rows and columns):
``BCFHW`` [B, C, F, h, w]; ``BFCHW`` [B, F, C, h, w] (CogVideoX); ``packed``
[B, F*h*w, C], tokens in (F, h, w) order (LTX-Video, patch size 1); ``FCHW``
[F, C, h, w] (ComfyUI's image models: AnimateDiff takes its frames as the batch);
``FHWC`` (F, h, w, C) (Go-with-the-Flow's noises.npy, one entry per *video* frame).
"""
from dataclasses import dataclass, field

__all__ = ["TargetProfile", "PROFILES", "TARGETS", "DEFAULT_TARGET", "get_profile",
           "latent_frame_count", "check_frame_count", "check_render_size",
           "check_channels", "check_latent_factor", "frame_rule", "format_targets",
           "valid_frame_counts", "valid_sizes"]


@dataclass(frozen=True)
class TargetProfile:
    name: str                 # what --target takes
    label: str                # the model family in words
    channels: int             # latent channels C
    spatial: int              # VAE spatial factor f: h = H / f
    temporal: int             # VAE temporal stride s (1: none)
    size_multiple: int        # render sizes must divide by this (f x the transformer's patch)
    diffusers_layout: str     # layout of the pipeline's latents=, or "" when none
    comfyui_layout: str       # layout of ComfyUI's LATENT, or "" when none
    model_dtype: str          # the dtype the published transformer runs in
    pipeline_casts: bool      # the pipeline takes float32 latents= and casts them itself
    pad_even: bool = False    # latent frames padded to even (CogVideoX 1.5, patch_t 2)
    example_frames: int = 81  # a frame count the model was trained on
    example_size: tuple = (1280, 720)   # (width, height) the model was trained at
    pipelines: tuple = ()     # diffusers pipeline classes that take these latents
    note: str = ""
    files: tuple = field(default=("model_latents.npy", "model_latents.latent"))

    @property
    def is_output(self):
        """False for ``none`` (today's outputs only)."""
        return self.name != "none"


_VIDEO = ("model_latents.npy", "model_latents.latent")

PROFILES = {p.name: p for p in [
    TargetProfile("none", "no model (noise_XXXX.npy and latents.npy only)", 0, 0, 1, 1,
                  "", "", "float32", True, example_frames=0, example_size=(0, 0), files=()),
    TargetProfile("wan", "Wan 2.1, Wan 2.2 14B", 16, 8, 4, 16, "BCFHW", "BCFHW",
                  "bfloat16", True, pipelines=("WanPipeline", "WanImageToVideoPipeline"),
                  files=_VIDEO),
    TargetProfile("wan2.2-5b", "Wan 2.2 TI2V 5B", 48, 16, 4, 32, "BCFHW", "BCFHW",
                  "bfloat16", True, example_frames=121, example_size=(1280, 704),
                  pipelines=("WanPipeline",), files=_VIDEO),
    TargetProfile("hunyuan", "HunyuanVideo", 16, 8, 4, 16, "BCFHW", "BCFHW", "bfloat16",
                  True, example_frames=129, pipelines=("HunyuanVideoPipeline",),
                  files=_VIDEO),
    TargetProfile("cogvideox", "CogVideoX 1.0 (2B, 5B)", 16, 8, 4, 16, "BFCHW", "BCFHW",
                  "bfloat16", False, example_frames=49, example_size=(720, 480),
                  pipelines=("CogVideoXPipeline", "CogVideoXImageToVideoPipeline"),
                  note="the 2B model runs in float16", files=_VIDEO),
    TargetProfile("cogvideox1.5", "CogVideoX 1.5", 16, 8, 4, 16, "BFCHW", "BCFHW",
                  "bfloat16", False, pad_even=True, example_size=(1360, 768),
                  pipelines=("CogVideoXPipeline", "CogVideoXImageToVideoPipeline"),
                  note="an odd latent frame count gets one leading fresh frame, which the "
                       "pipeline drops after denoising", files=_VIDEO),
    TargetProfile("ltx", "LTX-Video", 128, 32, 8, 32, "packed", "BCFHW", "bfloat16", True,
                  example_frames=161, example_size=(1216, 704), pipelines=("LTXPipeline",),
                  files=_VIDEO),
    TargetProfile("cosmos", "Cosmos 1.0", 16, 8, 8, 16, "BCFHW", "BCFHW", "bfloat16", True,
                  example_frames=121, pipelines=("CosmosTextToWorldPipeline",),
                  note="its pipeline multiplies latents= by sigma_max; not run in the tests",
                  files=_VIDEO),
    TargetProfile("mochi", "Mochi 1", 12, 8, 6, 16, "BCFHW", "BCFHW", "bfloat16", True,
                  example_frames=85, example_size=(848, 480), pipelines=("MochiPipeline",),
                  note="not run in the tests", files=_VIDEO),
    TargetProfile("animatediff", "AnimateDiff (SD 1.5)", 4, 8, 1, 8, "BCFHW", "FCHW",
                  "float16", False, example_frames=16, example_size=(512, 512),
                  pipelines=("AnimateDiffPipeline",),
                  note="no temporal compression; ComfyUI takes the frames as the batch",
                  files=_VIDEO),
    TargetProfile("gwtf", "Go-with-the-Flow (CogVideoX 5B)", 16, 8, 4, 16, "", "",
                  "bfloat16", False, example_frames=49, example_size=(720, 480),
                  note="noises.npy per video frame; its inference script makes the latent "
                       "frames and the degradation itself", files=("noises.npy",)),
]}

TARGETS = tuple(PROFILES)
DEFAULT_TARGET = "none"


def get_profile(target):
    """The profile named ``target`` (a name or a ``TargetProfile``); ValueError listing
    the names otherwise."""
    if isinstance(target, TargetProfile):
        return target
    if target is None:
        target = DEFAULT_TARGET
    key = str(target).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    return PROFILES[key]


# --------------------------------------------------------------------------- frames

def latent_frame_count(target, frame_count):
    """Latent frames for ``frame_count`` video frames: (F - 1) // s + 1 (CogVideoX 1.5:
    rounded up to even); AnimateDiff: F. Go-with-the-Flow: F (per video frame)."""
    p = get_profile(target)
    f = int(frame_count)
    if p.name == "gwtf" or p.temporal == 1:
        return f
    n = (f - 1) // p.temporal + 1
    return n + (n % 2) if p.pad_even else n


def valid_frame_counts(target, frame_count):
    """The valid frame counts nearest ``frame_count``: (below, above), None where none."""
    p = get_profile(target)
    s = p.temporal
    if s == 1:
        return (max(int(frame_count), 1), max(int(frame_count), 1))
    k = (int(frame_count) - 1) // s
    below = s * k + 1 if k >= 0 else None
    return (below if below and below >= 1 else None, s * (k + 1) + 1)


def frame_rule(target):
    """A short rule for the add-on panel: ``"Wan 2.1, Wan 2.2 14B: 4k+1 frames, e.g. 81"``."""
    p = get_profile(target)
    if not p.is_output:
        return "no model: any frame count and size"
    frames = (f"{p.temporal}k+1 frames, e.g. {p.example_frames}" if p.temporal > 1
              else f"any frame count, e.g. {p.example_frames}")
    w, h = p.example_size
    return (f"{p.label}: {frames}; size divisible by {p.size_multiple}, e.g. {w}x{h}")


def check_frame_count(target, frame_count):
    """ValueError unless the target's VAE takes ``frame_count`` video frames."""
    p = get_profile(target)
    if isinstance(frame_count, bool) or int(frame_count) != frame_count or frame_count < 1:
        raise ValueError(f"frame count must be an integer >= 1, got {frame_count!r}")
    f = int(frame_count)
    if p.temporal > 1 and (f - 1) % p.temporal:
        below, above = valid_frame_counts(p, f)
        near = f"{below} or {above}" if below else f"{above}"
        raise ValueError(
            f"{p.label} takes {p.temporal}k+1 frames (its VAE keeps the first frame and "
            f"packs each {p.temporal} after it into one latent frame); {f} frames cannot "
            f"be encoded: render {near} frames (frame_end = frame_start + {(below or above) - 1}"
            f"{'' if not below else f' or + {above - 1}'})")
    return f


def valid_sizes(multiple, size):
    """The multiples of ``multiple`` nearest ``size``: (below or None, above)."""
    below = size // multiple * multiple
    return (below if below >= multiple else None, below + multiple)


def check_render_size(target, width, height):
    """ValueError unless width and height divide by the target's size step (its VAE's
    spatial factor times its transformer's patch), naming the nearest valid sizes."""
    p = get_profile(target)
    m = p.size_multiple
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"render {name} must be an integer >= 1, got {v!r}")
    width, height = int(width), int(height)
    bad = [(n, v) for n, v in (("width", width), ("height", height)) if v % m]
    if not p.is_output or not bad:
        return width, height
    why = (f"its VAE's factor {p.spatial}" if m == p.spatial else
           f"its VAE's factor {p.spatial} x its transformer's patch {m // p.spatial}")
    fixes = []
    for n, v in bad:
        below, above = valid_sizes(m, v)
        fixes.append(f"{n} {v} -> " + (f"{below} or {above}" if below else f"{above}"))
    w_ok = [x for x in valid_sizes(m, width) if x] if width % m else [width]
    h_ok = [x for x in valid_sizes(m, height) if x] if height % m else [height]
    sizes = ", ".join(f"{w}x{h}" for w in w_ok for h in h_ok)
    raise ValueError(f"{p.label} needs a render size divisible by {m} ({why}); "
                     f"{width}x{height} is not: {'; '.join(fixes)} (e.g. {sizes})")


def check_channels(target, channels):
    """The target's channel count; ValueError when an explicit ``channels`` differs."""
    p = get_profile(target)
    if not p.is_output:
        return channels
    if channels is not None and int(channels) != p.channels:
        raise ValueError(f"--channels {channels} contradicts --target {p.name}: {p.label} "
                         f"latents have {p.channels} channels (leave --channels out, or "
                         f"give {p.channels})")
    return p.channels


def check_latent_factor(target, latent_factor):
    """The target's spatial factor; ValueError when an explicit factor differs."""
    p = get_profile(target)
    if not p.is_output:
        return latent_factor
    if latent_factor is not None and int(latent_factor) != p.spatial:
        raise ValueError(f"--latent-factor {latent_factor} contradicts --target {p.name}: "
                         f"{p.label}'s VAE downsamples by {p.spatial} (leave "
                         f"--latent-factor out, or give {p.spatial})")
    return p.spatial


# --------------------------------------------------------------------------- table

def format_targets():
    """The table ``--list-targets`` prints."""
    head = ("target", "model", "C", "f", "frames", "size", "diffusers", "ComfyUI", "dtype")
    rows = []
    for p in PROFILES.values():
        if not p.is_output:
            rows.append((p.name, "none: noise_XXXX.npy + latents.npy only (default)",
                         "any", "any", "any", "any", "-", "-", "float32"))
            continue
        frames = f"{p.temporal}k+1" if p.temporal > 1 else "any"
        if p.pad_even:
            frames += " (F_lat even)"
        layouts = {"BCFHW": "[B,C,F,h,w]", "BFCHW": "[B,F,C,h,w]", "packed": "[B,F*h*w,C]",
                   "FCHW": "[F,C,h,w]", "": "-"}
        diff = layouts[p.diffusers_layout] if p.name != "gwtf" else "noises.npy (F,h,w,C) f16"
        rows.append((p.name, p.label, str(p.channels), f"/{p.spatial}", frames,
                     f"/{p.size_multiple}", diff, layouts[p.comfyui_layout], p.model_dtype))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    out = [line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    out.append("C channels, f spatial factor, frames: video frames the VAE takes, size: "
               "render width and height divide by it")
    return "\n".join(out)
