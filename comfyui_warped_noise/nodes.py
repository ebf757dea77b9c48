"""Load Warped Noise: a cupy_core bake's ``model_latents.latent`` as a NOISE (for
SamplerCustomAdvanced) and a LATENT.

The NOISE returns the stored tensor as is (unit variance, unscaled): ComfyUI scales it
per model itself, so full and partial denoise both work. Needs only torch and
safetensors, which ComfyUI has.
"""
import os

LATENT_NAME = "model_latents.latent"
MARKER = "latent_format_version_0"


def _input_directory():
    try:   # inside ComfyUI
        import folder_paths
        return folder_paths.get_input_directory()
    except Exception:
        return None


def resolve_path(path):
    """A bake folder (its model_latents.latent) or a .latent file; relative paths are
    looked up in ComfyUI's input folder first, then the working directory."""
    path = os.path.expanduser(str(path).strip().strip('"'))
    if not path:
        raise ValueError("Load Warped Noise: give the bake's output folder or its "
                         f"{LATENT_NAME} file")
    candidates = [path]
    base = _input_directory()
    if base and not os.path.isabs(path):
        candidates.insert(0, os.path.join(base, path))
    for c in candidates:
        if os.path.isdir(c):
            c = os.path.join(c, LATENT_NAME)
        if os.path.isfile(c):
            return c
    raise ValueError(f"Load Warped Noise: no {LATENT_NAME} at {path!r} (bake with a "
                     "--target such as wan, hunyuan, ltx or animatediff to make one)")


def read_latent(path):
    """(tensor, metadata) as ComfyUI's core LoadLatent reads a .latent: float32, and
    multiplied by 1/0.18215 when the format marker is missing (old SD files)."""
    import safetensors
    import safetensors.torch
    tensors = safetensors.torch.load_file(path, device="cpu")
    if "latent_tensor" not in tensors:
        raise ValueError(f"Load Warped Noise: {path!r} has no latent_tensor")
    multiplier = 1.0 if MARKER in tensors else 1.0 / 0.18215
    with safetensors.safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    return tensors["latent_tensor"].float() * multiplier, metadata


def _describe(metadata):
    if not metadata.get("target"):
        return ""
    return (f" (baked for --target {metadata['target']}: {metadata.get('video_frames')} "
            f"frames of {metadata.get('width')}x{metadata.get('height')})")


class WarpedNoise:
    """ComfyUI's NOISE protocol: ``seed`` and ``generate_noise(latent)``."""

    def __init__(self, samples, seed=0, metadata=None):
        self.samples = samples
        self.seed = int(seed)
        self.metadata = dict(metadata or {})

    def generate_noise(self, input_latent):
        target = input_latent["samples"]
        want, have = tuple(target.shape), tuple(self.samples.shape)
        if want != have:
            raise ValueError(
                f"Load Warped Noise: the warped noise is {list(have)}{_describe(self.metadata)} "
                f"but the latent being sampled is {list(want)}: make the empty latent the "
                f"bake's size, length and batch 1 (or bake again at the latent's size)")
        return self.samples.detach().clone().to(device="cpu")


class LoadWarpedNoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {
            "default": "", "multiline": False,
            "tooltip": "the bake's output folder (with model_latents.latent) or the "
                       ".latent file; relative to ComfyUI's input folder"})}}

    RETURN_TYPES = ("NOISE", "LATENT")
    RETURN_NAMES = ("noise", "latent")
    FUNCTION = "load"
    CATEGORY = "sampling/custom_sampling/noise"
    DESCRIPTION = ("Warped noise baked by cupy_core (--target): NOISE for "
                   "SamplerCustomAdvanced and the same tensor as a LATENT.")

    def load(self, path):
        file = resolve_path(path)
        samples, metadata = read_latent(file)
        seed = int(metadata.get("seed", 0) or 0)
        return (WarpedNoise(samples, seed, metadata), {"samples": samples})

    @classmethod
    def IS_CHANGED(cls, path):
        try:
            st = os.stat(resolve_path(path))
            return f"{st.st_mtime_ns}:{st.st_size}"
        except (OSError, ValueError):
            return float("nan")   # never equal: ComfyUI runs the node and shows the error


NODE_CLASS_MAPPINGS = {"LoadWarpedNoise": LoadWarpedNoise}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadWarpedNoise": "Load Warped Noise"}
