"""comfyui_warped_noise without ComfyUI: the node classes called as ComfyUI calls them
(INPUT_TYPES, FUNCTION, RETURN_TYPES), the .latent read as core LoadLatent reads it."""
import json
import sys
from pathlib import Path

import pytest

import cupy_core
from cupy_core.targets import write_target_outputs

try:
    import safetensors.torch  # noqa: F401
    import torch
except ImportError as exc:   # plain pytest without the models extra
    print(f"test_comfyui_nodes: skipped, torch/safetensors not importable ({exc})")
    pytest.skip(f"torch and safetensors are not installed (the models extra): {exc}",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import comfyui_warped_noise  # noqa: E402
from comfyui_warped_noise import nodes  # noqa: E402


def bake(tmp_path, target, frames, height, width, channels, seed=9):
    noise = {i: cupy_core.white_noise((height, width), channels, seed=seed, frame=i)
             for i in range(frames)}
    rec = write_target_outputs(tmp_path, range(frames), noise.__getitem__, target=target,
                               seed=seed)
    (tmp_path / "bake.json").write_text(json.dumps({"target": rec}))
    return rec


def run_node(cls, **inputs):
    """As ComfyUI's executor does: check the inputs against INPUT_TYPES, call FUNCTION,
    check the outputs against RETURN_TYPES."""
    spec = cls.INPUT_TYPES()
    assert set(inputs) == set(spec["required"])
    for name, value in inputs.items():
        kind = spec["required"][name][0]
        assert kind == "STRING" and isinstance(value, str)
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES)
    return out


def core_load_latent(path):
    """ComfyUI's LoadLatent.load, verbatim in effect."""
    latent = safetensors.torch.load_file(str(path), device="cpu")
    multiplier = 1.0
    if "latent_format_version_0" not in latent:
        multiplier = 1.0 / 0.18215
    return {"samples": latent["latent_tensor"].float() * multiplier}


def test_mappings():
    assert comfyui_warped_noise.NODE_CLASS_MAPPINGS == {"LoadWarpedNoise":
                                                        nodes.LoadWarpedNoise}
    assert comfyui_warped_noise.NODE_DISPLAY_NAME_MAPPINGS["LoadWarpedNoise"] == \
        "Load Warped Noise"
    cls = nodes.LoadWarpedNoise
    assert cls.RETURN_TYPES == ("NOISE", "LATENT") and cls.FUNCTION == "load"
    assert isinstance(cls.CATEGORY, str)


@pytest.mark.parametrize("target, frames, size, channels, shape", [
    ("wan", 9, (32, 48), 16, (1, 16, 3, 4, 6)),
    ("ltx", 9, (64, 64), 128, (1, 128, 2, 2, 2)),
    ("animatediff", 4, (16, 24), 4, (4, 4, 2, 3))])
def test_latent_file_is_what_core_loadlatent_reads(tmp_path, target, frames, size,
                                                   channels, shape):
    bake(tmp_path, target, frames, *size, channels)
    path = tmp_path / "model_latents.latent"
    core = core_load_latent(path)["samples"]
    assert tuple(core.shape) == shape and core.dtype == torch.float32
    raw = safetensors.torch.load_file(str(path))
    assert "latent_format_version_0" in raw          # so nothing is rescaled
    noise, latent = run_node(nodes.LoadWarpedNoise, path=str(tmp_path))
    assert torch.equal(latent["samples"], core)
    assert noise.seed == 9
    out = noise.generate_noise({"samples": torch.zeros(shape)})
    assert out.device.type == "cpu" and out.dtype == torch.float32
    assert torch.equal(out, core)
    # unit variance, unscaled
    assert abs(float(out.double().var()) - 1) < 6 * (2 / out.numel()) ** 0.5
    # the file itself works too
    noise2, _ = run_node(nodes.LoadWarpedNoise, path=str(path))
    assert torch.equal(noise2.generate_noise({"samples": torch.zeros(shape)}), core)


def test_noise_refuses_a_latent_of_another_shape(tmp_path):
    bake(tmp_path, "wan", 9, 32, 48, 16)
    noise, _ = run_node(nodes.LoadWarpedNoise, path=str(tmp_path))
    for wrong in [(1, 16, 5, 4, 6), (1, 16, 3, 8, 12), (2, 16, 3, 4, 6), (1, 4, 3, 4, 6)]:
        with pytest.raises(ValueError) as err:
            noise.generate_noise({"samples": torch.zeros(wrong)})
        text = str(err.value)
        assert "[1, 16, 3, 4, 6]" in text and str(list(wrong)) in text
        assert "--target wan: 9 frames of 48x32" in text


def test_missing_and_old_files(tmp_path):
    with pytest.raises(ValueError, match="give the bake's output folder"):
        run_node(nodes.LoadWarpedNoise, path="")
    with pytest.raises(ValueError, match="no model_latents.latent at"):
        run_node(nodes.LoadWarpedNoise, path=str(tmp_path))
    assert nodes.LoadWarpedNoise.IS_CHANGED(str(tmp_path)) != \
        nodes.LoadWarpedNoise.IS_CHANGED(str(tmp_path))          # NaN: always re-run
    # a .latent without the marker (older SD files) is scaled as core LoadLatent does
    x = torch.ones((1, 4, 2, 2))
    safetensors.torch.save_file({"latent_tensor": x}, str(tmp_path / "old.latent"))
    _, latent = run_node(nodes.LoadWarpedNoise, path=str(tmp_path / "old.latent"))
    assert torch.allclose(latent["samples"], x / 0.18215)
    bake(tmp_path, "wan", 9, 32, 48, 16)
    first = nodes.LoadWarpedNoise.IS_CHANGED(str(tmp_path))
    assert first == nodes.LoadWarpedNoise.IS_CHANGED(str(tmp_path))


def test_relative_paths_use_comfyuis_input_folder(tmp_path, monkeypatch):
    (tmp_path / "shot1").mkdir()
    bake(tmp_path / "shot1", "wan", 9, 32, 48, 16)
    monkeypatch.setattr(nodes, "_input_directory", lambda: str(tmp_path))
    noise, latent = run_node(nodes.LoadWarpedNoise, path="shot1")
    assert tuple(latent["samples"].shape) == (1, 16, 3, 4, 6)
