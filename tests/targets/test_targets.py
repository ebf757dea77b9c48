"""cupy_core.targets: the profile table and its refusals, exact latent frames, the
degradation, the files in each layout (issue 14). NumPy only, plus SciPy's KS test and
the real safetensors reader where installed."""
import json
import math
import os

import numpy as np
import pytest

import cupy_core
from cupy_core.targets import files as tfiles
from cupy_core.targets import latents as tlat
from cupy_core.targets import profiles as tprof
from cupy_core.targets import (TARGETS, format_targets, frame_rule, latent_frame_count,
                               plan, write_target_outputs)

# --------------------------------------------------------------------------- helpers


def pan_frames(shape, channels, count, velocity, *, seed=7):
    """A pan to the right by ``velocity`` pixels per frame, warped by NoiseWarper on the
    CPU: frames 0 .. count-1 as a list of (H, W, C) float32."""
    H, W = shape
    yy, xx = np.mgrid[0:H + 1, 0:W + 1].astype(np.float64)
    positions = np.stack([xx - velocity, yy], axis=-1)   # backward map: content moves right
    warper = cupy_core.NoiseWarper(shape, channels, seed=seed, device="cpu")
    frames = [warper.noise.copy()]
    for _ in range(count - 1):
        frames.append(warper.step(positions).copy())
    return frames


def white_frames(shape, channels, count, *, seed=11):
    return [cupy_core.white_noise(shape, channels, seed=seed, frame=i) for i in range(count)]


class Reader:
    """read_noise over in-memory frames numbered from ``first``; counts the reads."""

    def __init__(self, frames, first=1):
        self.frames = {first + i: f for i, f in enumerate(frames)}
        self.reads = []

    def __call__(self, frame):
        self.reads.append(frame)
        return self.frames[frame]

    @property
    def numbers(self):
        return sorted(self.frames)


def assert_white(x, label=""):
    """Mean, variance, KS against N(0, 1) and neighbour correlations of a (.., h, w, C)
    sample, with tolerances of 5 standard errors of its size."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    assert abs(x.mean()) < 5 / math.sqrt(n), (label, x.mean())
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n), (label, x.var())
    from scipy import stats
    assert stats.kstest(x.ravel(), "norm").pvalue > 1e-4, label
    for axis in (-3, -2, -1):   # rows, columns, channels
        a = np.moveaxis(x, axis, 0)
        r = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
        assert abs(r) < 5 / math.sqrt(a[1:].size), (label, axis, r)


def write_bake(tmp_path, target, frames, **kwargs):
    reader = Reader(frames)
    record = write_target_outputs(tmp_path, reader.numbers, reader, target=target, **kwargs)
    (tmp_path / "bake.json").write_text(json.dumps({"status": "complete", "target": record}))
    return record, reader


# --------------------------------------------------------------------------- the table

def test_table_lists_every_target_and_its_rule():
    text = format_targets()
    for name in TARGETS:
        assert f"\n{name} " in text
    assert "wan" in TARGETS and TARGETS[0] == "none" and tprof.DEFAULT_TARGET == "none"
    assert frame_rule("wan").startswith("Wan 2.1, Wan 2.2 14B: 4k+1 frames, e.g. 81")
    assert "any frame count" in frame_rule("animatediff")
    assert "8k+1" in frame_rule("ltx") and "divisible by 32" in frame_rule("ltx")


@pytest.mark.parametrize("target, frames, expected", [
    ("wan", 81, 21), ("wan2.2-5b", 121, 31), ("hunyuan", 129, 33), ("cogvideox", 49, 13),
    ("cogvideox1.5", 81, 22), ("cogvideox1.5", 85, 22), ("cogvideox1.5", 161, 42),
    ("ltx", 161, 21), ("cosmos", 121, 16), ("mochi", 163, 28), ("animatediff", 16, 16),
    ("gwtf", 49, 49)])
def test_latent_frame_count(target, frames, expected):
    assert latent_frame_count(target, frames) == expected


def test_plan_shapes_1280x720_81_frames():
    p = plan("wan", 81, 720, 1280)
    assert (p["channels"], p["latent_factor"], p["latent_frames"]) == (16, 8, 21)
    assert p["files"]["model_latents.npy"]["shape"] == [1, 16, 21, 90, 160]
    assert plan("cogvideox", 81, 720, 1280)["files"]["model_latents.npy"]["shape"] == \
        [1, 21, 16, 90, 160]
    a = plan("animatediff", 81, 720, 1280)["files"]
    assert a["model_latents.latent"]["shape"] == [81, 4, 90, 160]
    assert a["model_latents.npy"]["shape"] == [1, 4, 81, 90, 160]
    assert plan("gwtf", 49, 480, 720)["files"]["noises.npy"] == {
        "layout": "FHWC", "shape": [49, 60, 90, 16], "dtype": "float16"}
    assert plan("ltx", 161, 704, 1216)["files"]["model_latents.npy"]["shape"] == \
        [1, 21 * 22 * 38, 128]
    assert plan("none", 16, 719, 1001, channels=4, latent_factor=8)["files"] == {}


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("target, frames, words", [
    ("wan", 16, "13 or 17"), ("wan", 80, "77 or 81"), ("hunyuan", 2, "1 or 5"),
    ("ltx", 160, "153 or 161"), ("mochi", 81, "79 or 85"), ("gwtf", 48, "45 or 49")])
def test_refuses_frame_counts_the_vae_cannot_take(target, frames, words):
    with pytest.raises(ValueError, match="cannot be encoded") as err:
        plan(target, frames, 720 if target != "ltx" else 704, 1280)
    assert words in str(err.value)
    assert f"{tprof.get_profile(target).temporal}k+1 frames" in str(err.value)


def test_refuses_render_sizes_naming_the_nearest():
    with pytest.raises(ValueError) as err:
        plan("wan", 81, 719, 1280)
    assert "divisible by 16" in str(err.value) and "height 719 -> 704 or 720" in str(err.value)
    assert "1280x720" in str(err.value)
    with pytest.raises(ValueError, match=r"height 720 -> 704 or 736 .*1280x704") as err:
        plan("ltx", 161, 720, 1280)
    with pytest.raises(ValueError, match=r"factor 16 x its transformer's patch 2"):
        plan("wan2.2-5b", 121, 720, 1280)
    with pytest.raises(ValueError, match=r"width 1001 -> 992 or 1008"):
        plan("cogvideox", 49, 480, 1001)
    with pytest.raises(ValueError, match=r"width 4 -> 16"):
        plan("wan", 81, 480, 4)


def test_refuses_contradicting_channels_and_latent_factor():
    with pytest.raises(ValueError, match=r"--channels 4 contradicts --target wan: .* 16 "
                                         r"channels"):
        plan("wan", 81, 720, 1280, channels=4)
    with pytest.raises(ValueError, match=r"--latent-factor 16 contradicts --target "
                                         r"hunyuan: .* downsamples by 8"):
        plan("hunyuan", 81, 720, 1280, latent_factor=16)
    # the same values as the target's are fine
    assert plan("ltx", 9, 64, 64, channels=128, latent_factor=32)["channels"] == 128


def test_refuses_unknown_names_and_bad_settings():
    with pytest.raises(ValueError, match=r"unknown target 'wan3': choose one of none, wan"):
        plan("wan3", 81, 720, 1280)
    with pytest.raises(ValueError, match="temporal mode must be one of nearest, blend_norm"):
        plan("wan", 81, 720, 1280, temporal="blend")
    for bad in (1.5, -0.1, float("nan"), "lots"):
        with pytest.raises(ValueError, match="degradation must be"):
            plan("wan", 81, 720, 1280, degradation=bad)
    with pytest.raises(ValueError, match="Go-with-the-Flow degrades the noise itself"):
        plan("gwtf", 49, 480, 720, degradation=0.5)
    with pytest.raises(ValueError, match="frame count must be an integer"):
        plan("wan", 0, 720, 1280)


def test_write_refuses_volume_frames(tmp_path):
    with pytest.raises(ValueError, match=r"2-D noise frames \(H, W, C\)"):
        write_target_outputs(tmp_path, [0], lambda f: np.zeros((4, 16, 16, 16), np.float32),
                             target="wan")
    assert write_target_outputs(tmp_path, [0], lambda f: 1 / 0, target="none") == {}
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- latent frames

def test_nearest_latent_frames_are_whole_warped_frames_and_white(tmp_path):
    frames = pan_frames((128, 128), 16, 17, 0.5)          # sub-pixel pan
    record, reader = write_bake(tmp_path, "wan", frames)
    assert sorted(reader.reads) == [1, 5, 9, 13, 17]       # only the frames it takes
    model = np.load(tmp_path / "model_latents.npy")
    assert model.shape == (1, 16, 5, 16, 16) and model.dtype == np.float32
    lat = model[0].transpose(1, 2, 3, 0)
    for i in range(5):
        np.testing.assert_array_equal(lat[i], cupy_core.downsample(frames[4 * i], 8))
        assert_white(lat[i], f"latent frame {i}")
    assert_white(lat, "all")
    assert record["temporal"] == "nearest" and record["latent_frames"] == 5


@pytest.mark.parametrize("velocity, expected", [(2.0, 0.0), (0.5, 0.75), (1.0, 0.5)])
def test_pan_correlates_consecutive_latent_frames_as_the_motion_predicts(velocity, expected):
    # s = 4 video frames per latent frame: the content moves 4 v pixels, v/2 latent pixels
    # at f = 8; a latent pixel overlaps its earlier self by 1 - 4 v / 8 of its area.
    frames = pan_frames((128, 128), 16, 9, velocity, seed=21)
    maker = tlat.LatentFrames("wan", range(9))
    lat = maker.compute(lambda i: frames[i]).astype(np.float64)
    shift = int(4 * velocity // 8)                    # whole latent pixels moved
    a, b = lat[:-1, :, 1:-1 - shift], lat[1:, :, 1 + shift:-1]   # interior: no fresh edge
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    if velocity == 2.0:   # exactly one latent pixel: a copy
        np.testing.assert_allclose(lat[1:, :, 1:], lat[:-1, :, :-1], rtol=0, atol=1e-6)
        assert r > 0.999999
    else:
        n = a.size
        assert abs(r - expected) < 5 * (1 - expected ** 2) / math.sqrt(n), (r, expected)
    # and the unshifted comparison of a one-pixel move is uncorrelated
    if velocity == 2.0:
        r0 = np.corrcoef(lat[:-1, :, 1:-1].ravel(), lat[1:, :, 1:-1].ravel())[0, 1]
        assert abs(r0) < 5 / math.sqrt(lat[1:, :, 1:-1].size)


def test_blend_norm_follows_go_with_the_flow():
    assert [len(g) for g in tlat.blend_groups(49, 13)] == [3, 4, 4, 4, 3, 4, 4, 4, 3, 4, 4,
                                                            4, 4]
    assert tlat.blend_groups(49, 13)[0] == [0, 1, 2]
    frames = white_frames((64, 64), 16, 49)
    maker = tlat.LatentFrames("cogvideox", range(49), temporal="blend_norm")
    lat = maker.compute(lambda i: frames[i])
    assert lat.shape == (13, 8, 8, 16)
    # an independent rendering of its recipe: int(i*F/n) edges, mean, / std over rows
    edges = [int(i * 49 / 13) for i in range(14)]
    pooled = np.stack([cupy_core.downsample(f, 8) for f in frames]).astype(np.float64)
    for i in range(13):
        mean = pooled[edges[i]:edges[i + 1]].mean(axis=0)
        expect = mean / mean.std(axis=0, ddof=1, keepdims=True)
        np.testing.assert_allclose(lat[i], expect, rtol=1e-5, atol=1e-5)
        # per (column, channel) unit sample variance over the rows, by construction
        np.testing.assert_allclose(lat[i].astype(np.float64).std(axis=0, ddof=1), 1, 1e-5)
    x = lat.astype(np.float64)
    assert abs(x.var() - 1) < 0.15   # approximately unit (8 rows here), as documented


def test_cogvideox15_pads_a_leading_fresh_frame(tmp_path):
    frames = pan_frames((32, 32), 16, 9, 1.0)
    record, _ = write_bake(tmp_path, "cogvideox1.5", frames, seed=5)
    model = np.load(tmp_path / "model_latents.npy")
    assert model.shape == (1, 4, 16, 4, 4) and record["padded_frames"] == 1
    lat = model[0].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(lat[0], tlat.padding_frame((4, 4, 16), seed=5))
    for i in range(3):
        np.testing.assert_array_equal(lat[1 + i], cupy_core.downsample(frames[4 * i], 8))


# --------------------------------------------------------------------------- degradation

@pytest.mark.parametrize("a", [0.3, 0.5, 0.8])
def test_degradation_correlation_is_as_documented(a):
    frames = pan_frames((128, 128), 16, 17, 0.5)
    clean = tlat.LatentFrames("wan", range(17)).compute(lambda i: frames[i])
    dirty = tlat.LatentFrames("wan", range(17), degradation=a, seed=7).compute(
        lambda i: frames[i])
    expected = (1 - a) / math.sqrt(a * a + (1 - a) ** 2)
    assert tlat.degradation_correlation(a) == pytest.approx(expected)
    r = np.corrcoef(clean.ravel(), dirty.ravel())[0, 1]
    assert abs(r - expected) < 5 * (1 - expected ** 2) / math.sqrt(clean.size) + 1e-9, (r, expected)
    for i in range(dirty.shape[0]):
        assert_white(dirty[i], f"degraded latent frame {i}")
    again = tlat.LatentFrames("wan", range(17), degradation=a, seed=7).compute(
        lambda i: frames[i])
    np.testing.assert_array_equal(again, dirty)      # same seed, same bits
    other = tlat.LatentFrames("wan", range(17), degradation=a, seed=8).compute(
        lambda i: frames[i])
    assert not np.array_equal(other, dirty)


def test_degradation_keys_and_ends():
    x = cupy_core.white_noise((16, 16), 16, seed=7, frame=3)
    assert tlat.degrade(x, 0.0, seed=7, index=3) is not None
    np.testing.assert_array_equal(tlat.degrade(x, 0.0, seed=7, index=3), x)
    fresh = tlat.degrade(x, 1.0, seed=7, index=3)
    key = tlat.derived_seed(7, "degradation")
    np.testing.assert_array_equal(fresh, cupy_core.white_noise((16, 16), 16, seed=key, frame=3))
    assert key == tlat.derived_seed(7, "degradation") != tlat.derived_seed(8, "degradation")
    assert key != 7 and 0 <= key < 2 ** 64
    # never the bake's own frame noise
    for frame in range(5):
        assert not np.array_equal(fresh, cupy_core.white_noise((16, 16), 16, seed=7,
                                                               frame=frame))


# --------------------------------------------------------------------------- files & layouts

TINY = {   # target: (frames, height, width)
    "wan": (9, 32, 48), "wan2.2-5b": (9, 64, 96), "hunyuan": (9, 32, 48),
    "cogvideox": (9, 32, 48), "cogvideox1.5": (9, 32, 48), "ltx": (17, 64, 96),
    "cosmos": (17, 32, 48), "mochi": (13, 32, 48), "animatediff": (5, 16, 24),
    "gwtf": (9, 32, 48)}


def canonical(target, frames):
    """(F_lat, h, w, C) computed here from the recipe: frames s*i, pooled."""
    p = tprof.get_profile(target)
    if target == "gwtf" or p.temporal == 1:
        picks = range(len(frames))
    else:
        picks = range(0, len(frames), p.temporal)
    return np.stack([cupy_core.downsample(frames[i], p.spatial) for i in picks])


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "none"])
def test_each_target_file_holds_the_same_values_in_its_layout(tmp_path, target):
    p = tprof.get_profile(target)
    F, H, W = TINY[target]
    frames = white_frames((H, W), p.channels, F, seed=3)
    record, reader = write_bake(tmp_path, target, frames, seed=3)
    assert len(reader.reads) == len(set(reader.reads))          # each frame read once
    lat = canonical(target, frames)
    if p.pad_even and lat.shape[0] % 2:
        lat = np.concatenate([tlat.padding_frame(lat.shape[1:], seed=3)[None], lat])
    n, h, w, C = lat.shape
    names = sorted(x.name for x in tmp_path.iterdir())
    if target == "gwtf":
        assert names == ["bake.json", "noises.npy"]
        arr = np.load(tmp_path / "noises.npy")
        assert arr.dtype == np.float16 and arr.shape == (F, H // 8, W // 8, 16)
        np.testing.assert_array_equal(arr, lat.astype(np.float16))
        return
    assert names == ["bake.json", "model_latents.latent", "model_latents.npy"]
    model = np.load(tmp_path / "model_latents.npy")
    assert model.dtype == np.float32 and list(model.shape) == record["shape"]
    rng = np.random.default_rng(0)
    for _ in range(50):   # element by element, with the layout's own index formula
        f, y, x, c = (int(rng.integers(k)) for k in (n, h, w, C))
        v = lat[f, y, x, c]
        got = {"BCFHW": lambda: model[0, c, f, y, x], "BFCHW": lambda: model[0, f, c, y, x],
               "packed": lambda: model[0, (f * h + y) * w + x, c]}[p.diffusers_layout]()
        assert got == v
    tensors, meta = tfiles.read_safetensors(tmp_path / "model_latents.latent")
    comfy = tensors["latent_tensor"]
    assert tensors["latent_format_version_0"].shape == (0,)
    assert meta["target"] == target and int(meta["video_frames"]) == F
    if p.comfyui_layout == "FCHW":
        np.testing.assert_array_equal(comfy, lat.transpose(0, 3, 1, 2))
    else:
        np.testing.assert_array_equal(comfy, lat.transpose(3, 0, 1, 2)[None])
    # the inverse of each layout gives the canonical frames back
    np.testing.assert_array_equal(
        tfiles.from_layout(model, p.diffusers_layout, (n, h, w)), lat)
    assert record["latent_frames"] == n and record["video_frames"] == F
    assert record["channels"] == C and record["render_size"] == [W, H]


def test_bake_json_record(tmp_path):
    frames = white_frames((32, 32), 16, 9)
    record, _ = write_bake(tmp_path, "cogvideox", frames, temporal="blend_norm",
                           degradation=0.25, seed=4)
    assert json.loads(json.dumps(record)) == record
    for key, value in {"target": "cogvideox", "layout": "BFCHW", "comfyui_layout": "BCFHW",
                       "shape": [1, 3, 16, 4, 4], "dtype": "float32",
                       "model_dtype": "bfloat16", "temporal": "blend_norm",
                       "degradation": 0.25, "video_frames": 9, "latent_frames": 3,
                       "latent_factor": 8, "temporal_stride": 4}.items():
        assert record[key] == value, key
    assert set(record["files"]) == {"model_latents.npy", "model_latents.latent"}


def test_latent_file_reads_back_with_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed "
                             "(the models extra): the .latent is checked by our own reader")
    from safetensors import safe_open
    frames = white_frames((32, 48), 16, 9)
    write_bake(tmp_path, "wan", frames)
    loaded = st.load_file(str(tmp_path / "model_latents.latent"))
    ours, meta = tfiles.read_safetensors(tmp_path / "model_latents.latent")
    assert set(loaded) == {"latent_tensor", "latent_format_version_0"}
    np.testing.assert_array_equal(loaded["latent_tensor"], ours["latent_tensor"])
    assert loaded["latent_format_version_0"].size == 0
    with safe_open(str(tmp_path / "model_latents.latent"), "np") as f:
        assert f.metadata()["target"] == "wan"
    # odd shapes and dtypes too
    odd = {"a": np.arange(7, dtype=np.float16), "b": np.ones((3, 1, 2), np.float32),
           "c": np.zeros((0,), np.float32)}
    tfiles.write_safetensors(tmp_path / "odd.safetensors", odd, {"k": 1})
    back = st.load_file(str(tmp_path / "odd.safetensors"))
    for k, v in odd.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path, monkeypatch):
    frames = white_frames((32, 48), 16, 9)
    write_bake(tmp_path, "wan", frames)
    before = (tmp_path / "model_latents.npy").read_bytes()

    def broken(frame):
        if frame == 9:
            raise KeyboardInterrupt
        return frames[frame - 1]
    with pytest.raises(KeyboardInterrupt):
        write_target_outputs(tmp_path, range(1, 10), broken, target="wan", degradation=0.5)
    assert (tmp_path / "model_latents.npy").read_bytes() == before
    assert not [x for x in os.listdir(tmp_path) if x.endswith(".tmp")]


def test_import_cupy_core_leaves_torch_alone():
    import subprocess
    import sys
    code = ("import sys, cupy_core, cupy_core.targets, cupy_core.targets.files; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert callable(cupy_core.load_latents)")
    subprocess.run([sys.executable, "-c", code], check=True)
