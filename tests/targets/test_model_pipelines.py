"""Real diffusers pipelines take the baked latents as is (issue 14).

Tiny random-initialised CogVideoX (bf16), Wan, HunyuanVideo, LTX-Video (packed) and
AnimateDiff on the CPU with no download (HF_HUB_OFFLINE=1, no tokenizers or text
encoders, random prompt embeddings; DIFFUSION_FACTS 4). Each test bakes a pan for its
target, loads it with ``cupy_core.load_latents(folder, pipe)``, and a forward hook shows
that the transformer (or unet) first receives exactly that tensor (times
``init_noise_sigma`` and the scheduler's input scaling where the pipeline applies
them); each runs to a decoded video. The models have the real families' latent
channels and VAE factors, so the loader's checks are the real ones.
"""
import json
import os
import time

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

try:
    import torch
    import diffusers  # noqa: F401  (the skip needs it importable)
except Exception as exc:   # plain pytest, or the NumPy 1.26 venv: no models extra
    print(f"test_model_pipelines: skipped, torch/diffusers not importable ({exc})")
    pytest.skip(f"torch and diffusers are not installed (the models extra; "
                f"`python build.py test` installs them into .venv): {exc}",
                allow_module_level=True)

import cupy_core
from cupy_core.targets import get_profile, write_target_outputs
from cupy_core.targets.load import pipeline_kwargs

torch.set_num_threads(min(4, os.cpu_count() or 1))


def bake(folder, target, frames, height, width, **kwargs):
    """A pan (1 px per frame to the right) of ``frames`` frames for ``target``, with its
    files and bake.json in ``folder``."""
    p = get_profile(target)
    yy, xx = np.mgrid[0:height + 1, 0:width + 1].astype(np.float64)
    warper = cupy_core.NoiseWarper((height, width), p.channels, seed=13, device="cpu")
    noise = {0: warper.noise.copy()}
    for i in range(1, frames):
        noise[i] = warper.step(np.stack([xx - 1.0, yy], -1)).copy()
    rec = write_target_outputs(folder, range(frames), noise.__getitem__, target=target,
                               seed=13, **kwargs)
    (folder / "bake.json").write_text(json.dumps({"status": "complete", "target": rec}))
    return rec


class FirstInput:
    """Forward pre-hook keeping the first latent input of a module."""

    def __init__(self, module, name):
        self.name, self.value = name, None
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if self.value is None:
            x = kwargs.get(self.name, args[0] if args else None)
            self.value = x.detach().clone()

    def remove(self):
        self.handle.remove()


def run(pipe, model, lat, input_name="hidden_states", **call):
    hook = FirstInput(model, input_name)
    started = time.monotonic()
    try:
        with torch.no_grad():
            out = pipe(latents=lat, num_inference_steps=2, output_type="pt", **call)
    finally:
        hook.remove()
    print(f"{type(pipe).__name__}: {time.monotonic() - started:.2f} s")
    return hook.value, out.frames


def embeds(*shape, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g).to(dtype)


# --------------------------------------------------------------------------- CogVideoX

def cogvideox_pipe(dtype=torch.bfloat16):
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=16, out_channels=16,
        time_embed_dim=4, text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=8)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        latent_channels=16, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4)
    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae,
                             transformer=transformer, scheduler=CogVideoXDDIMScheduler())
    return pipe.to(dtype)


def test_cogvideox_bf16_takes_the_latents_as_is(tmp_path):
    rec = bake(tmp_path, "cogvideox", 9, 16, 16)
    pipe = cogvideox_pipe()
    lat = cupy_core.load_latents(tmp_path, pipe)
    assert lat.dtype == torch.bfloat16 and tuple(lat.shape) == (1, 3, 16, 2, 2)
    np.testing.assert_array_equal(
        lat.float().numpy(),
        torch.from_numpy(np.load(tmp_path / "model_latents.npy")).to(torch.bfloat16).float())
    sigma = pipe.scheduler.init_noise_sigma
    got, video = run(pipe, pipe.transformer, lat, guidance_scale=1.0,
                     prompt_embeds=embeds(1, 8, 32, dtype=torch.bfloat16),
                     **pipeline_kwargs(tmp_path))
    assert got.dtype == torch.bfloat16 and torch.equal(got, lat * sigma)
    assert tuple(video.shape[:2]) == (1, 9) and torch.isfinite(video.float()).all()
    # float32 latents are what fails with "mat1 and mat2 must have the same dtype"
    with pytest.raises(RuntimeError, match="dtype"):
        with torch.no_grad():
            pipe(latents=lat.float(), num_inference_steps=1, guidance_scale=1.0,
                 prompt_embeds=embeds(1, 8, 32, dtype=torch.bfloat16), output_type="latent",
                 **pipeline_kwargs(tmp_path))
    assert rec["model_dtype"] == "bfloat16"


# --------------------------------------------------------------------------- Wan

def wan_pipe():
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline,
                           WanTransformer3DModel)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=1,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    return WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))


def test_wan_takes_the_latents_as_is(tmp_path):
    bake(tmp_path, "wan", 9, 16, 16)
    pipe = wan_pipe()
    lat = cupy_core.load_latents(tmp_path, pipe)
    assert lat.dtype == torch.float32 and tuple(lat.shape) == (1, 16, 3, 2, 2)
    np.testing.assert_array_equal(lat.numpy(), np.load(tmp_path / "model_latents.npy"))
    got, video = run(pipe, pipe.transformer, lat, guidance_scale=1.0,
                     prompt_embeds=embeds(1, 8, 32), **pipeline_kwargs(tmp_path))
    assert torch.equal(got, lat)
    assert tuple(video.shape[:2]) == (1, 9) and torch.isfinite(video).all()


def test_loader_refuses_what_does_not_fit(tmp_path):
    (tmp_path / "cog").mkdir()
    (tmp_path / "ani").mkdir()
    bake(tmp_path / "cog", "cogvideox", 9, 16, 16)
    bake(tmp_path / "ani", "animatediff", 4, 16, 16)
    wan = wan_pipe()
    # CogVideoX's [B, F, C, h, w] has the same numbers as Wan's but another layout: the
    # record says which target it is, and the loader returns that target's layout.
    lat = cupy_core.load_latents(tmp_path / "cog")
    assert tuple(lat.shape) == (1, 3, 16, 2, 2)
    with pytest.raises(ValueError, match=r"do not fit WanPipeline: its transformer takes "
                                         r"16-channel latents, the bake has 4"):
        cupy_core.load_latents(tmp_path / "ani", wan)
    with pytest.raises(ValueError, match=r"its VAE packs 4 frames per latent frame, the "
                                         r"bake's target 1"):
        cupy_core.load_latents(tmp_path / "ani", wan)
    # a bake whose record and file disagree
    rec = json.loads((tmp_path / "cog" / "bake.json").read_text())
    rec["target"]["shape"] = [1, 5, 16, 2, 2]
    (tmp_path / "cog" / "bake.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="parts of two bakes"):
        cupy_core.load_latents(tmp_path / "cog")
    (tmp_path / "cog" / "bake.json").write_text(json.dumps({"status": "complete"}))
    with pytest.raises(ValueError, match="names no model target"):
        cupy_core.load_latents(tmp_path / "cog")
    (tmp_path / "gwtf").mkdir()
    bake(tmp_path / "gwtf", "gwtf", 9, 16, 16)
    noises = cupy_core.load_latents(tmp_path / "gwtf")
    assert noises.dtype == torch.float16 and tuple(noises.shape) == (9, 2, 2, 16)
    with pytest.raises(ValueError, match="bake with --target cogvideox for WanPipeline"):
        cupy_core.load_latents(tmp_path / "gwtf", wan)
    with pytest.raises(ValueError, match="has no bake.json"):
        cupy_core.load_latents(tmp_path)


# --------------------------------------------------------------------------- HunyuanVideo

def test_hunyuan_takes_the_latents_as_is(tmp_path):
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler,
                           HunyuanVideoPipeline, HunyuanVideoTransformer3DModel)
    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=10,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=2,
        patch_size_t=1, guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4))
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
        spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True)
    pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=transformer,
                                vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=None, tokenizer_2=None)
    bake(tmp_path, "hunyuan", 9, 16, 16)
    lat = cupy_core.load_latents(tmp_path, pipe)
    assert lat.dtype == torch.float32 and tuple(lat.shape) == (1, 16, 3, 2, 2)
    got, video = run(pipe, pipe.transformer, lat, prompt_embeds=embeds(1, 8, 16),
                     pooled_prompt_embeds=embeds(1, 8),
                     prompt_attention_mask=torch.ones(1, 8, dtype=torch.bool),
                     **pipeline_kwargs(tmp_path))
    assert torch.equal(got, lat)
    assert tuple(video.shape[:2]) == (1, 9) and torch.isfinite(video).all()


# --------------------------------------------------------------------------- LTX-Video

def test_ltx_takes_the_packed_latents_as_is(tmp_path):
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler,
                           LTXPipeline, LTXVideoTransformer3DModel)
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=128, out_channels=128, patch_size=1, patch_size_t=1,
        num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, num_layers=1,
        caption_channels=16)
    vae = AutoencoderKLLTXVideo(   # the real factors: /32 (patch 4 x 2^3), 8 frames
        in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=4, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                       text_encoder=None, tokenizer=None, transformer=transformer)
    assert (pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio) == (32, 8)
    bake(tmp_path, "ltx", 9, 32, 32)
    lat = cupy_core.load_latents(tmp_path, pipe)
    assert tuple(lat.shape) == (1, 2 * 1 * 1, 128) and lat.dtype == torch.float32
    # the packing is LTX's own: unpack with the pipeline's function
    unpacked = pipe._unpack_latents(lat, 2, 1, 1, 1, 1)
    comfy = np.asarray(__import__("safetensors.numpy", fromlist=["load_file"]).load_file(
        str(tmp_path / "model_latents.latent"))["latent_tensor"])
    np.testing.assert_array_equal(unpacked.numpy(), comfy)
    np.testing.assert_array_equal(pipe._pack_latents(torch.from_numpy(comfy)).numpy(),
                                  lat.numpy())
    got, video = run(pipe, pipe.transformer, lat, guidance_scale=1.0,
                     prompt_embeds=embeds(1, 8, 16),
                     prompt_attention_mask=torch.ones(1, 8, dtype=torch.long),
                     **pipeline_kwargs(tmp_path))
    assert torch.equal(got, lat)
    assert tuple(video.shape[:2]) == (1, 9) and torch.isfinite(video).all()


# --------------------------------------------------------------------------- AnimateDiff

def test_animatediff_takes_the_latents_times_init_noise_sigma(tmp_path):
    from diffusers import (AnimateDiffPipeline, AutoencoderKL, EulerDiscreteScheduler,
                           MotionAdapter, UNet2DConditionModel)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=[8, 8, 8, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4,
                        norm_num_groups=2)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1,
                            motion_norm_num_groups=2, motion_num_attention_heads=2)
    scheduler = EulerDiscreteScheduler(beta_schedule="linear", beta_start=0.00085,
                                       beta_end=0.012, steps_offset=1)
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                               motion_adapter=adapter, scheduler=scheduler,
                               feature_extractor=None, image_encoder=None)
    bake(tmp_path, "animatediff", 4, 16, 16)
    lat = cupy_core.load_latents(tmp_path, pipe)
    assert lat.dtype == torch.float32 and tuple(lat.shape) == (1, 4, 4, 2, 2)
    # what Euler's first step feeds the unet: x * init_noise_sigma / sqrt(sigma_0^2 + 1)
    import copy
    sched = copy.deepcopy(pipe.scheduler)
    sched.set_timesteps(2)
    sigma = sched.init_noise_sigma
    assert sigma > 1
    expected = sched.scale_model_input(lat * sigma, sched.timesteps[0])
    got, video = run(pipe, pipe.unet, lat, input_name="sample", guidance_scale=1.0,
                     prompt_embeds=embeds(1, 8, 8), **pipeline_kwargs(tmp_path))
    assert torch.equal(got, expected)
    assert tuple(video.shape[:2]) == (1, 4) and torch.isfinite(video).all()
    # ComfyUI takes these frames as the batch: [F, C, h, w]
    comfy = __import__("safetensors.numpy", fromlist=["load_file"]).load_file(
        str(tmp_path / "model_latents.latent"))["latent_tensor"]
    np.testing.assert_array_equal(comfy, lat[0].permute(1, 0, 2, 3).numpy())
