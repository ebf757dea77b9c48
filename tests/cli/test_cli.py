"""The command line, ``python -m cupy_core FLOWS.npy --out DIR``, run as users run it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maps import smooth_flows
import cupy_core

ROOT = Path(__file__).resolve().parents[2]
T, H, W, C = 3, 16, 16, 4


def cli(*args, cwd):
    """Run the command line in a subprocess; the repository goes first on the path so
    the tests exercise this checkout even where the package is not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "cupy_core", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)




def frame_files(folder):
    return sorted(p.name for p in folder.glob("noise_*.npy"))


def assert_clean_error(result, *words):
    """Exit code 2, one 'error: ...' line naming the problem, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_outputs_have_the_right_shapes(tmp_path, flows_file):
    out = tmp_path / "out"
    r = cli(flows_file, "--out", out, "--preview", "--seed", 5, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert frame_files(out) == [f"noise_{t:04d}.npy" for t in range(T + 1)]
    for t in range(T + 1):
        a = np.load(out / f"noise_{t:04d}.npy")
        assert a.shape == (H, W, C) and a.dtype == np.float32 and np.isfinite(a).all()
        assert (out / f"preview_{t:04d}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lat = np.load(out / "latents.npy")
    assert lat.shape == (T + 1, H, W, C) and lat.dtype == np.float32
    for t in range(T + 1):
        assert np.array_equal(lat[t], np.load(out / f"noise_{t:04d}.npy"))
    frame0 = cupy_core.white_noise((H, W), C, seed=5, frame=0)
    assert np.array_equal(np.load(out / "noise_0000.npy"), frame0)
    bake = json.loads((out / "bake.json").read_text())
    assert bake["status"] == "complete"
    assert (bake["method"], bake["seed"], bake["channels"]) == ("grid", 5, C)
    assert bake["shape"] == [H, W] and bake["frame_count"] == T + 1
    assert bake["frames"] == {"first": 0, "last": T, "count": T + 1}
    assert bake["source"]["flows"] == str(flows_file.resolve())
    assert bake["versions"]["cupy_core"] == cupy_core.__version__
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_frames_follow_the_warp(tmp_path, flows_file):
    """Each frame is exactly the core's warp of the one before."""
    out = tmp_path / "out"
    r = cli(flows_file, "--out", out, "--method", "particle", "--channels", 2,
            "--seed", 9, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    flows = np.load(flows_file)
    prev = np.load(out / "noise_0000.npy")
    for t in range(T):
        y, x = np.mgrid[0:H, 0:W] + 0.5
        pos = np.stack([x + flows[t, ..., 0], y + flows[t, ..., 1]], axis=-1)
        expect = cupy_core.warp(prev, pos, method="particle", seed=9, frame=t + 1,
                                at="centers")
        got = np.load(out / f"noise_{t + 1:04d}.npy")
        assert got.shape == (H, W, 2)
        assert np.array_equal(got, expect)
        prev = got


def test_latent_factor(tmp_path, flows_file):
    out = tmp_path / "out"
    r = cli(flows_file, "--out", out, "--latent-factor", 4, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    lat = np.load(out / "latents.npy")
    assert lat.shape == (T + 1, H // 4, W // 4, C) and lat.dtype == np.float32
    for t in range(T + 1):
        frame = np.load(out / f"noise_{t:04d}.npy")
        assert np.array_equal(lat[t], np.asarray(cupy_core.downsample(frame, 4)))


def test_zero_flow_keeps_frame_zero(tmp_path):
    np.save(tmp_path / "zero.npy", np.zeros((T, H, W, 2), np.float32))
    out = tmp_path / "out"
    r = cli(tmp_path / "zero.npy", "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    frame0 = np.load(out / "noise_0000.npy")
    for t in range(1, T + 1):
        assert np.array_equal(np.load(out / f"noise_{t:04d}.npy"), frame0)


def test_forward_flow_is_negated(tmp_path, flows_file):
    flows = np.load(flows_file)
    np.save(tmp_path / "forward.npy", -flows)
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(flows_file, "--out", a, cwd=tmp_path).returncode == 0
    r = cli(tmp_path / "forward.npy", "--out", b, "--forward", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for t in range(T + 1):
        name = f"noise_{t:04d}.npy"
        assert np.array_equal(np.load(a / name), np.load(b / name))
    assert json.loads((b / "bake.json").read_text())["source"]["flow"] == "forward (negated)"


def test_no_flows_gives_frame_zero_only(tmp_path):
    np.save(tmp_path / "none.npy", np.zeros((0, H, W, 2), np.float32))
    r = cli(tmp_path / "none.npy", "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert frame_files(tmp_path / "out") == ["noise_0000.npy"]
    assert np.load(tmp_path / "out" / "latents.npy").shape == (1, H, W, C)


def test_nan_flow_is_allowed(tmp_path):
    flows = smooth_flows()
    flows[:, 4:8, 4:8] = np.nan
    np.save(tmp_path / "nan.npy", flows)
    r = cli(tmp_path / "nan.npy", "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.isfinite(np.load(tmp_path / "out" / f"noise_{T:04d}.npy")).all()


# ----------------------------------------------------------------- bad input

@pytest.mark.parametrize("array, words", [
    (np.full((T, H, W, 2), np.inf, np.float32), ["infinite", "flow 0"]),
    (np.zeros((T, H, W, 3), np.float32), ["shape", "(T, H, W, 2)"]),
    (np.zeros((H, W, 2), np.float32), ["shape", "(T, H, W, 2)"]),
    (np.zeros((T, H, W, 2), np.int32), ["dtype", "int32"]),
    (np.zeros((T, 0, W, 2), np.float32), ["empty"]),
])
def test_bad_flows_exit_2(tmp_path, array, words):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    r = cli(path, "--out", tmp_path / "out", cwd=tmp_path)
    assert_clean_error(r, "bad.npy", *words)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_inf_in_a_later_flow(tmp_path):
    flows = smooth_flows()
    flows[2, 3, 4, 1] = -np.inf
    np.save(tmp_path / "f.npy", flows)
    assert_clean_error(cli(tmp_path / "f.npy", "--out", tmp_path / "o", cwd=tmp_path),
                       "infinite", "flow 2")


def test_missing_and_non_npy_files(tmp_path):
    assert_clean_error(cli(tmp_path / "nope.npy", "--out", tmp_path / "o", cwd=tmp_path),
                       "nope.npy", "not found")
    (tmp_path / "text.npy").write_text("hello")
    assert_clean_error(cli(tmp_path / "text.npy", "--out", tmp_path / "o", cwd=tmp_path),
                       "text.npy", "not a .npy")
    np.savez(tmp_path / "arch.npz", flows=smooth_flows())
    assert_clean_error(cli(tmp_path / "arch.npz", "--out", tmp_path / "o", cwd=tmp_path),
                       "arch.npz", ".npz")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    assert_clean_error(cli(tmp_path / "obj.npy", "--out", tmp_path / "o", cwd=tmp_path),
                       "obj.npy")


def test_bad_options(tmp_path, flows_file):
    assert_clean_error(cli(flows_file, "--out", tmp_path / "o", "--channels", 0, cwd=tmp_path),
                       "--channels")
    assert_clean_error(cli(flows_file, "--out", tmp_path / "o", "--latent-factor", 32,
                           cwd=tmp_path), "--latent-factor", "larger")
    r = cli(flows_file, "--out", tmp_path / "o", "--method", "magic", cwd=tmp_path)
    assert r.returncode == 2 and "magic" in r.stderr


def test_unwritable_output_folder(tmp_path, flows_file):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    assert_clean_error(cli(flows_file, "--out", blocker, cwd=tmp_path), str(blocker))
    assert_clean_error(cli(flows_file, "--out", blocker / "sub", cwd=tmp_path),
                       str(blocker / "sub"))
    assert blocker.read_text() == "in the way"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_read_only_output_folder(tmp_path, flows_file):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_clean_error(cli(flows_file, "--out", ro, cwd=tmp_path), str(ro), "writable")
    finally:
        ro.chmod(0o755)


# ----------------------------------------------------------------- resume

def test_resume_after_interruption_is_bit_identical(tmp_path, flows_file):
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli(flows_file, "--out", full, "--preview", cwd=tmp_path).returncode == 0
    assert cli(flows_file, "--out", part, "--preview", cwd=tmp_path).returncode == 0

    # What an interrupted bake leaves: the first frames, bake.json "in progress".
    for t in (2, 3):
        (part / f"noise_{t:04d}.npy").unlink()
        (part / f"preview_{t:04d}.png").unlink()
    (part / "latents.npy").unlink()
    bake = json.loads((part / "bake.json").read_text())
    bake["status"] = "in progress"
    (part / "bake.json").write_text(json.dumps(bake))
    kept = [part / "noise_0000.npy", part / "noise_0001.npy", part / "preview_0001.png"]
    for p in kept:  # an old mtime, so any rewrite shows whatever the clock resolution
        os.utime(p, (1_000_000_000, 1_000_000_000))

    r = cli(flows_file, "--out", part, "--preview", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 resumed" in r.stdout
    for p in kept:
        assert p.stat().st_mtime == 1_000_000_000, p.name
    for name in frame_files(full) + ["latents.npy", "preview_0003.png"]:
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    assert frame_files(part) == frame_files(full)
    assert json.loads((part / "bake.json").read_text())["status"] == "complete"


def test_rerun_of_a_complete_bake_changes_nothing(tmp_path, flows_file):
    out = tmp_path / "out"
    assert cli(flows_file, "--out", out, cwd=tmp_path).returncode == 0
    for p in out.iterdir():
        os.utime(p, (1_000_000_000, 1_000_000_000))
    r = cli(flows_file, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all(p.stat().st_mtime == 1_000_000_000 for p in out.iterdir())


def test_resume_with_other_parameters_is_refused(tmp_path, flows_file):
    out = tmp_path / "out"
    assert cli(flows_file, "--out", out, "--seed", 1, cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_clean_error(cli(flows_file, "--out", out, "--seed", 2, cwd=tmp_path),
                       "seed", "--no-resume")
    assert_clean_error(cli(flows_file, "--out", out, "--seed", 1, "--channels", 3,
                           cwd=tmp_path), "channels")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched

    # --no-resume starts again: the result is a fresh bake with the new seed.
    r = cli(flows_file, "--out", out, "--seed", 2, "--no-resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fresh = tmp_path / "fresh"
    assert cli(flows_file, "--out", fresh, "--seed", 2, cwd=tmp_path).returncode == 0
    for name in frame_files(fresh) + ["latents.npy"]:
        assert (out / name).read_bytes() == (fresh / name).read_bytes()


def test_noise_files_without_bake_json_are_not_resumed(tmp_path, flows_file):
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "noise_0000.npy", np.zeros((H, W, C), np.float32))
    assert_clean_error(cli(flows_file, "--out", out, cwd=tmp_path), "bake.json")
    assert np.load(out / "noise_0000.npy").max() == 0  # not overwritten


def test_bake_files_follow_the_umask(tmp_path, flows_file):
    """Every file a bake writes is readable as the user's other files are (umask 022:
    0644), not private to the account that baked it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "cupy_core", str(flows_file), "--out", str(out),
                        "--preview", "-q"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300, preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0, r.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert len(modes) > 5 and set(modes.values()) == {"0o644"}, modes


# ----------------------------------------------------------------- --target (issue 14)

def pan_flows(t, h, w, dx=0.5):
    flows = np.zeros((t, h, w, 2), np.float32)
    flows[..., 0] = -dx          # backward: each pixel came from dx to its left
    return flows


def test_list_targets(tmp_path):
    r = cli("--list-targets", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("wan", "hunyuan", "cogvideox", "ltx", "animatediff", "gwtf", "none"):
        assert name in r.stdout


@pytest.mark.parametrize("args, words", [
    (("--target", "wan"), ("16 frames", "13 or 17")),                 # 16 video frames
    (("--target", "wan", "--channels", "4"), ("channels", "16")),
    (("--target", "wan", "--latent-factor", "7"), ("--latent-factor 7", "8")),
    (("--target", "wan", "--degradation", "1.5"), ("degradation",)),
    (("--degradation", "0.5"), ("degradation", "target")),
])
def test_target_refusals_write_nothing(tmp_path, args, words):
    flows = tmp_path / "flows.npy"
    np.save(flows, pan_flows(15, 32, 32))
    out = tmp_path / "out"
    r = cli(flows, "--out", out, *args, cwd=tmp_path)
    assert_clean_error(r, *words)
    assert not out.exists()


def test_target_wan_writes_model_latents(tmp_path):
    """17 frames of 32 x 32 for Wan: latent frames are video frames 0, 4, 8, 12, 16,
    pooled by 8, in [B, C, F, h, w]; the .latent is ComfyUI's layout, bake.json says
    what was written."""
    flows = tmp_path / "flows.npy"
    np.save(flows, pan_flows(16, 32, 32))
    out = tmp_path / "out"
    r = cli(flows, "--out", out, "--target", "wan", "--seed", 3, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    model = np.load(out / "model_latents.npy")
    assert model.shape == (1, 16, 5, 4, 4) and model.dtype == np.float32
    for i, frame in enumerate((0, 4, 8, 12, 16)):
        noise = np.load(out / f"noise_{frame:04d}.npy")
        assert noise.shape == (32, 32, 16)
        np.testing.assert_array_equal(model[0, :, i], np.moveaxis(
            cupy_core.downsample(noise, 8), -1, 0))
    record = json.loads((out / "bake.json").read_text())
    assert record["target"]["target"] == "wan" and record["target"]["shape"] == [1, 16, 5, 4, 4]
    assert record["target"]["temporal"] == "nearest" and record["target"]["video_frames"] == 17
    assert record["channels"] == 16 and record["latent_factor"] == 8
    assert (out / "model_latents.latent").stat().st_size > model.nbytes
    # --no-resume over it, without a target: no file of the earlier bake stays
    r = cli(flows, "--out", out, "--no-resume", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (out / "model_latents.npy").exists() and not (out / "model_latents.latent").exists()


def test_preview_writes_the_animation_and_flicker(tmp_path):
    """--preview also writes the animated side-by-side, the slice picture and the
    flicker figures, from the bake's own flows: an integer pan scores exactly 0 for the
    warped noise away from the uncovered border, about 2 for fixed and fresh noise."""
    flows = tmp_path / "flows.npy"
    np.save(flows, pan_flows(5, 24, 32, dx=2.0))
    out = tmp_path / "out"
    r = cli(flows, "--out", out, "--preview", "--channels", 3, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "comparison.gif").read_bytes()[:6] == b"GIF89a"
    assert (out / "space_time.png").exists()
    flicker = json.loads((out / "flicker.json").read_text())
    assert "warped" in r.stdout and "fixed" in r.stdout
    kinds = flicker["kinds"]
    n = kinds["warped"]["all"]["values"]
    assert n == 5 * 24 * 30 * 3                     # the 2 uncovered columns left out
    assert kinds["warped"]["all"]["flicker"] == 0.0
    tol = 5 * np.sqrt(8 / n)                        # Var of (a - b)^2 for unit normals: 8
    for kind in ("fixed", "fresh"):
        assert abs(kinds[kind]["all"]["flicker"] - 2) < tol, (kind, kinds[kind])
