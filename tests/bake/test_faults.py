"""Fault injection (issue 17): a bake folder holds exactly what its bake.json says,
whatever happened before. Kills (SIGKILL) before and after every atomic write, SIGINT
and SIGTERM at many points, a full disk, damaged frames, --no-resume over every kind of
earlier bake, changed inputs, the memory estimate and its refusal, refused commands
that write nothing. Tiny frames: the whole file runs in seconds.

The bakes that are killed run in a forked child (``os.fork``: no interpreter start per
point); ``cupy_core.bake.files._write_hook`` is called before and after every atomic
write, and the child dies (or signals itself) at write N.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from maps import smooth_flows
from cupy_core.bake import files as bake_files
from cupy_core.bake import memory
from cupy_core.bake.loop import BakeMismatchError, bake_flow_sequence, flow_positions

ROOT = Path(__file__).resolve().parents[2]
H, W, C, T = 8, 8, 2, 3

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")



def snapshot(folder):
    """Every file of a bake folder, bake.json without its time stamp."""
    out = {}
    for p in sorted(Path(folder).iterdir()):
        if p.name == "bake.json":
            record = json.loads(p.read_text())
            record.pop("time", None)
            out[p.name] = record
        else:
            out[p.name] = p.read_bytes()
    return out


def no_temporaries(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]


def in_child(work, *, hook=None, patch=None):
    """Run ``work()`` (returning an exit code) in a forked child with the write hook
    ``hook(when, path)`` (and ``patch()`` called first); returns ``(code, stderr)``,
    code -N when the child died of signal N."""
    err = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fault-{os.getpid()}-{time.time_ns()}")
    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        code = 99
        try:
            fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            sys.stdout = os.fdopen(1, "w")
            bake_files._write_hook = hook
            if patch is not None:
                patch()
            code = work()
            sys.stderr.flush()
        except BaseException as exc:   # noqa: BLE001 - report anything, exit
            try:
                sys.stderr.write(f"child: {type(exc).__name__}: {exc}\n")
                sys.stderr.flush()
            except Exception:
                pass
            code = 98
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = Path(err).read_text() if os.path.exists(err) else ""
    if os.path.exists(err):
        os.remove(err)
    code = os.waitstatus_to_exitcode(status)
    return code, text


class WriteCounter:
    """The hook that dies (or signals itself) at write ``n`` (``when``: before/after)."""

    def __init__(self, n, when, action):
        self.n, self.when, self.action, self.seen = n, when, action, 0

    def __call__(self, when, path):
        if when == "before":
            self.seen += 1
        if self.seen == self.n and when == self.when:
            self.action()


def count_writes(work):
    """How many atomic writes ``work`` makes (run in a child)."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"writes-{os.getpid()}-{time.time_ns()}"

    def hook(when, path):
        if when == "before":
            with open(log, "a") as f:
                f.write(path.name + "\n")

    code, err = in_child(work, hook=hook)
    assert code == 0, err
    names = log.read_text().split()
    log.unlink()
    return names


# ----------------------------------------------------------------- the API bake with sidecars

def write_sidecar(out):
    """An ``on_frame`` writing ``noise_XXXX.exr`` (the noise's bytes) if missing, as the
    add-on's writers do: the loop guarantees that a present one is this bake's."""
    def hook(frame, noise):
        path = Path(out) / bake_files.frame_name("noise", frame, "exr")
        if not path.exists():
            with bake_files.atomic_path(path) as tmp, open(tmp, "wb") as f:
                f.write(np.ascontiguousarray(noise).tobytes())
    return hook


def api_bake(out, flows, resume=True, seed=3):
    def work():
        bake_flow_sequence(flow_positions(flows), out, seed=seed, channels=C,
                           progress=False, preview=True, resume=resume,
                           on_frame=write_sidecar(out), sidecars=("exr",),
                           inputs={"flows": "fingerprint-1"})
        return 0
    return work


def check_consistent(out):
    """After any stop: bake.json (if any) is whole JSON whose recorded frames are on
    disk, and every sidecar it vouches for is there."""
    path = Path(out) / "bake.json"
    if not path.exists():
        return
    record = json.loads(path.read_text())
    assert record["status"] in ("in progress", "complete")
    written = record.get("written") or {}
    for kind, ext, prefix in (("noise", "npy", "noise"), ("preview", "png", "preview"),
                              ("exr", "exr", "noise")):
        for a, b in written.get(kind, []):
            for f in range(a, b + 1):
                assert (Path(out) / bake_files.frame_name(prefix, f, ext)).is_file(), (kind, f)


def test_sigkill_before_and_after_every_write_then_resume_is_bit_identical(tmp_path):
    flows = smooth_flows(T, H, W)
    ref = tmp_path / "ref"
    code, err = in_child(api_bake(ref, flows))
    assert code == 0, err
    reference = snapshot(ref)
    names = count_writes(api_bake(tmp_path / "count", flows))
    # bake.json, then per frame noise, preview, exr, bake.json; latents; bake.json
    assert len(names) == 1 + 4 * (T + 1) + 2, names
    tried = identical = 0
    for n in range(1, len(names) + 1):
        for when in ("before", "after"):
            out = tmp_path / f"kill-{n}-{when}"
            hook = WriteCounter(n, when, lambda: os.kill(os.getpid(), signal.SIGKILL))
            code, err = in_child(api_bake(out, flows), hook=hook)
            assert code == -signal.SIGKILL, (n, when, code, err)
            check_consistent(out)
            code, err = in_child(api_bake(out, flows))
            assert code == 0, (n, when, err)
            assert no_temporaries(out) == []
            assert snapshot(out) == reference, (n, when, names[n - 1])
            tried += 1
            identical += 1
            shutil.rmtree(out)
    print(f"\nSIGKILL points tried: {tried}, bit-identical resumes: {identical}")
    assert tried == identical == 2 * len(names)


def test_a_resume_rewrites_sidecars_it_cannot_vouch_for(tmp_path):
    flows = smooth_flows(T, H, W)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert in_child(api_bake(ref, flows))[0] == 0
    assert in_child(api_bake(out, flows))[0] == 0
    # A stale sidecar of another bake on a frame, and bake.json back to "in progress"
    # with frame 2's sidecar not recorded: the resume rewrites it.
    (out / "noise_0002.exr").write_bytes(b"another bake")
    record = json.loads((out / "bake.json").read_text())
    record["status"] = "in progress"
    record["written"]["exr"] = [[0, 1]]
    (out / "bake.json").write_text(json.dumps(record))
    (out / "latents.npy").unlink()
    assert in_child(api_bake(out, flows))[0] == 0
    assert snapshot(out) == snapshot(ref)


# ----------------------------------------------------------------- SIGINT and SIGTERM

def cli_work(argv):
    def work():
        from cupy_core.cli.flow import main
        return main([str(a) for a in argv])
    return work



@pytest.mark.parametrize("preview", [False, True])
def test_sigint_and_sigterm_at_every_write_stop_cleanly_and_resume(tmp_path, flows_file,
                                                                   preview):
    """Without --preview: at every write, SIGTERM before it, SIGINT after it and SIGTERM
    inside its rename; with --preview (the animated previews after the frames): one of
    these, in turn, at each write after the frames'."""
    more = ["--preview"] if preview else []
    args = lambda out: [flows_file, "--out", out, "-q", "--channels", C, *more]
    ref = tmp_path / "ref"
    assert in_child(cli_work(args(ref)))[0] == 0
    reference = snapshot(ref)
    names = count_writes(cli_work(args(tmp_path / "count")))
    tried = identical = 0
    first = names.index("latents.npy") + 1 if preview else 1
    for n in range(first, len(names) + 1):
        modes = (("before", signal.SIGTERM), ("after", signal.SIGINT),
                 ("rename", signal.SIGTERM))
        for when, sig in (modes[n % 3:n % 3 + 1] if preview else modes):
            out = tmp_path / f"sig-{n}-{when}"
            patch = None
            if when == "rename":   # inside the atomic rename: deferred to its end
                hook = None

                def patch(n=n, sig=sig):
                    real, seen = os.replace, [0]

                    def replace(a, b):
                        seen[0] += 1
                        if seen[0] == n:
                            os.kill(os.getpid(), sig)
                        return real(a, b)
                    os.replace = replace
            else:
                hook = WriteCounter(n, when, lambda sig=sig: os.kill(os.getpid(), sig))
            code, err = in_child(cli_work(args(out)), hook=hook, patch=patch)
            assert code == 128 + sig, (n, when, code, err)
            assert f"stopped by {signal.Signals(sig).name}" in err, err
            assert "rerun the same command to resume" in err
            assert no_temporaries(out) == [], (n, when)
            check_consistent(out)
            code, err = in_child(cli_work(args(out)))
            assert code == 0, (n, when, err)
            assert snapshot(out) == reference, (n, when)
            tried += 1
            identical += 1
            shutil.rmtree(out)
    print(f"\nSIGINT/SIGTERM points tried: {tried}, bit-identical resumes: {identical}")
    assert tried == identical == (1 if preview else 3) * (len(names) - first + 1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_real_signal_to_a_running_command(tmp_path, sig):
    """A signal from outside, to ``python -m cupy_core`` mid-bake."""
    flows = tmp_path / "flows.npy"
    np.save(flows, smooth_flows(60, 48, 48))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "cupy_core", str(flows), "-q", "--out"]
    out, ref = tmp_path / "out", tmp_path / "ref"
    p = subprocess.Popen(cmd + [str(out)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "noise_0004.npy").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.001)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the bake finished before the signal arrived")
    assert p.returncode == 128 + sig, err
    assert f"stopped by {signal.Signals(sig).name}" in err and "Traceback" not in err
    assert no_temporaries(out) == []
    assert json.loads((out / "bake.json").read_text())["status"] == "in progress"
    assert subprocess.run(cmd + [str(out)], env=env).returncode == 0
    assert subprocess.run(cmd + [str(ref)], env=env).returncode == 0
    assert snapshot(out) == snapshot(ref)


# ----------------------------------------------------------------- a full disk

def test_full_disk_is_reported_and_resumes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs: mount needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"mount failed: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        flows = tmp_path / "flows.npy"
        np.save(flows, smooth_flows(24, 32, 32))   # 25 frames of 64 KB: more than 1 MB
        out = disk / "out"
        argv = [flows, "--out", out, "-q", "--channels", 16]
        code, err = in_child(cli_work(argv))
        assert code == 1, err
        assert err.startswith(f"error: disk full writing {out}/"), err
        assert no_temporaries(out) == []
        record = json.loads((out / "bake.json").read_text())
        assert record["status"] == "in progress"
        on_disk = sorted(p.name for p in out.glob("noise_*.npy"))
        assert record["frames"]["count"] in (len(on_disk), len(on_disk) - 1)
        r = subprocess.run(["mount", "-o", "remount,size=8m", str(disk)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert in_child(cli_work(argv))[0] == 0
        ref = tmp_path / "ref"
        assert in_child(cli_work([flows, "--out", ref, "-q", "--channels", 16]))[0] == 0
        assert snapshot(out) == snapshot(ref)
        print(f"\nfull disk: {len(on_disk)} frames fitted, then: {err.strip()}")
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ----------------------------------------------------------------- damaged frames

@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "cannot reshape"),
    (lambda p: p.write_bytes(b"garbage" * 40), "header"),
    (lambda p: np.save(p, np.zeros((H, W, C + 1), np.float32)), "float32"),
])
def test_damaged_frames_on_resume_are_named(tmp_path, flows_file, damage, words):
    out = tmp_path / "out"
    argv = [flows_file, "--out", out, "-q", "--channels", C]
    assert in_child(cli_work(argv))[0] == 0
    record = json.loads((out / "bake.json").read_text())
    record["status"] = "in progress"
    (out / "bake.json").write_text(json.dumps(record))
    (out / "noise_0003.npy").unlink()
    damage(out / "noise_0001.npy")
    code, err = in_child(cli_work(argv))
    assert code == 2, err
    assert err.startswith("error: noise_0001.npy is damaged (") and words in err, err
    assert "--no-resume" in err
    assert in_child(cli_work(argv + ["--no-resume"]))[0] == 0


# ----------------------------------------------------------------- --no-resume replaces all

def test_no_resume_removes_every_file_of_each_earlier_kind_of_bake(tmp_path, flows_file):
    out = tmp_path / "out"
    flows = smooth_flows(T, H, W)
    # An API bake with previews and EXR sidecars, and a foreign VDB sidecar.
    assert in_child(api_bake(out, flows))[0] == 0
    (out / "noise_0001.vdb").write_bytes(b"vdb")
    assert (out / "noise_0002.exr").exists() and (out / "preview_0002.png").exists()
    # Over it, --no-resume: a CLI bake with the animated previews.
    argv = [flows_file, "--out", out, "-q", "--channels", C, "--seed", 9]
    assert in_child(cli_work(argv + ["--no-resume", "--preview"]))[0] == 0
    names = {p.name for p in out.iterdir()}
    assert not any(n.endswith((".exr", ".vdb")) for n in names)
    assert {"comparison.gif", "space_time.png", "flicker.json"} <= names
    assert "comparison.gif" in json.loads((out / "bake.json").read_text())["written"]["files"]
    # Over it, --no-resume with a target: previews gone, the model's files there.
    wide = tmp_path / "wide.npy"
    np.save(wide, smooth_flows(4, 16, 16))
    assert in_child(cli_work([wide, "--out", out, "-q", "--target", "gwtf",
                              "--no-resume"]))[0] == 0
    names = {p.name for p in out.iterdir()}
    assert "noises.npy" in names and not any(n.startswith("preview") for n in names)
    assert not {"comparison.gif", "space_time.png", "flicker.json"} & names
    # And a plain bake over that: exactly its own files.
    assert in_child(cli_work(argv + ["--no-resume"]))[0] == 0
    expected = {f"noise_{t:04d}.npy" for t in range(T + 1)} | {"latents.npy", "bake.json"}
    assert {p.name for p in out.iterdir()} == expected
    fresh = tmp_path / "fresh"
    assert in_child(cli_work([flows_file, "--out", fresh, "-q", "--channels", C,
                              "--seed", 9]))[0] == 0
    assert snapshot(out) == snapshot(fresh)


# ----------------------------------------------------------------- inputs changed

def test_resume_after_the_flow_file_changed_is_refused(tmp_path, flows_file):
    out = tmp_path / "out"
    argv = [flows_file, "--out", out, "-q", "--channels", C]
    stop_after = WriteCounter(4, "after", lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert in_child(cli_work(argv), hook=stop_after)[0] == -signal.SIGKILL
    np.save(flows_file, np.load(flows_file) * 1.5)
    code, err = in_child(cli_work(argv))
    assert code == 2, err
    assert "the flow file changed since frames 0-1 were baked" in err, err
    assert "--no-resume" in err and len(err.strip().splitlines()) == 1
    assert in_child(cli_work(argv + ["--no-resume"]))[0] == 0


def test_resume_after_the_mesh_files_changed_is_refused(tmp_path):
    pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    sys.path.insert(0, str(ROOT / "sample_scenes"))
    import flag_sequence as F
    meshes, cam_file = F.write(str(tmp_path / "scene"), 3, 16, 12)
    out = tmp_path / "out"
    argv = ["surface", meshes, "--camera", cam_file, "--texture-size", "16", "--channels",
            "1", "-q", "--out", str(out)]

    def work():
        from cupy_core.cli.flow import main
        return main(argv)
    stop_after = WriteCounter(3, "after", lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert in_child(work, hook=stop_after)[0] == -signal.SIGKILL
    files = sorted(Path(meshes).parent.iterdir()) if not Path(meshes).is_dir() else sorted(
        Path(meshes).iterdir())
    mesh = [p for p in files if p.suffix in (".obj", ".ply", ".glb", ".gltf")][-1]
    mesh.write_bytes(mesh.read_bytes() + b"\n# changed\n")
    code, err = in_child(work)
    assert code == 2, err
    assert f"the mesh files changed ({mesh.name}) since frame 0 was baked" in err, err
    Path(cam_file).write_text(Path(cam_file).read_text() + " ")
    code, err = in_child(work)
    assert code == 2 and "the camera file changed" in err, err
    assert in_child(lambda: work() if argv.append("--no-resume") is None else 1)[0] == 0


def test_inputs_fingerprint_names_what_changed(tmp_path):
    pos = flow_positions(smooth_flows(T, H, W))
    out = tmp_path / "out"
    kw = dict(channels=C, progress=False)
    bake_flow_sequence(pos, out, inputs={"meshes": {"a.obj": "1", "b.obj": "2"},
                                         "camera": "c"}, **kw)
    with pytest.raises(BakeMismatchError, match=r"the mesh files changed \(b.obj\) since "
                                                r"frames 0-3 were baked"):
        bake_flow_sequence(pos, out, inputs={"meshes": {"a.obj": "1", "b.obj": "3"},
                                             "camera": "c"}, **kw)
    with pytest.raises(BakeMismatchError, match="the camera file changed"):
        bake_flow_sequence(pos, out, inputs={"meshes": {"a.obj": "1", "b.obj": "2"},
                                             "camera": "d"}, **kw)
    res = bake_flow_sequence(pos, out, inputs={"meshes": {"a.obj": "1", "b.obj": "2"},
                                               "camera": "c"}, **kw)
    assert res.resumed_frames == T + 1


# ----------------------------------------------------------------- memory

@pytest.mark.parametrize("source, shape, channels, method, texture", [
    ("flow", (128, 128), 16, "grid", None),
    ("flow", (256, 128), 4, "particle", None),
    ("flow", (64, 64), 128, "grid", None),
    ("surface", (96, 96), 4, "grid", 256),
    ("volume", (16, 16, 16), 4, "grid", None),
    ("volume", (24, 24, 24), 8, "particle", None),
])
def test_memory_estimate_against_measured_peaks(tmp_path, source, shape, channels, method,
                                                texture):
    """The estimate is at least the measured peak (tracemalloc: NumPy's allocations)
    and at most 2.5 times it, for these sizes."""
    from cupy_core.bake.loop import bake_frames
    est = memory.estimate_bake_memory(shape, channels, source=source, method=method,
                                      texture_size=texture)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        if source == "flow":
            y, x = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
            pos = [np.stack([x + 0.3, y - 0.2 + 0.02 * x], -1)]
            bake_flow_sequence(pos, tmp_path, method=method, channels=channels,
                               progress=False)
        elif source == "surface":
            from cupy_core.surface.maps import surface_noise, texture_noise
            h, w = shape
            y, x = np.mgrid[0:h + 1, 0:w + 1].astype(np.float64)
            corners = np.stack([x * (texture / w) * 0.9 + 1, y * (texture / h) * 0.9 + 1], -1)
            valid = np.ones(shape, bool)
            tex = {}

            def make(i):
                if "t" not in tex:
                    tex["t"] = texture_noise(texture, channels)
                return surface_noise(tex["t"], corners, valid, frame=i)
            bake_frames(make, tmp_path, frame_count=2, shape=shape, channels=channels,
                        progress=False, params={"kind": "surface", "texture_size": texture})
        else:
            from cupy_core.volume.bake import bake_volume_sequence
            from cupy_core.volume.grid import corner_points
            pos = corner_points(shape) + np.array([0.3, -0.2, 0.1])
            bake_volume_sequence([pos], tmp_path, shape=shape, channels=channels,
                                 method=method)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    factor = est.host / peak
    print(f"\n{source} {shape} x{channels} {method}: estimate {est.host / 2**20:.1f} MB, "
          f"measured {peak / 2**20:.1f} MB, factor {factor:.2f}")
    assert 1.0 <= factor <= 2.5, factor


def test_memory_refusals_in_the_users_terms(tmp_path, flows_file, monkeypatch):
    out = tmp_path / "out"
    code, err = in_child(cli_work([flows_file, "--out", out, "--max-memory", "1M"]))
    assert code == 2, err
    assert err.startswith("error: frames of 16x16 with 4 channels need about 16 MB; "
                          "--max-memory allows 1.0 MB; lower the resolution"), err
    assert not out.exists()
    code, err = in_child(cli_work([flows_file, "--out", out, "--max-memory", "lots"]))
    assert code == 2 and "memory size 'lots'" in err and not out.exists()
    # What is free: a bake of 1920x1080 with 1000000 channels.
    monkeypatch.setattr(memory, "available_memory", lambda gpu=False: 9 << 30)
    with pytest.raises(memory.MemoryLimitError,
                       match=r"^frames of 1920x1080 with 1000000 channels need about "
                             r"\d+ TB; 9.0 GB are free; lower the channels \(--channels\)$"):
        bake_flow_sequence([], out, shape=(1080, 1920), channels=1_000_000, progress=False)
    assert not out.exists()
    assert memory.parse_size("8G") == 8 << 30 and memory.parse_size("512k") == 512 << 10
    assert memory.parse_size("1.5GiB") == 3 << 29 and memory.parse_size(100) == 100
    assert memory.available_memory() is None or memory.available_memory() > 0


# ----------------------------------------------------------------- refused, then corrected

def test_a_refused_command_writes_nothing_and_the_corrected_one_runs(tmp_path, flows_file):
    out = tmp_path / "out"
    for bad, words in ((["--latent-factor", 32], "larger"),
                       (["--max-memory", "1K"], "--max-memory"),
                       (["--target", "wan"], "Wan"),
                       (["--channels", 0], "--channels")):
        code, err = in_child(cli_work([flows_file, "--out", out, "-q", *bad]))
        assert code == 2 and words in err, (bad, err)
        assert not out.exists(), bad
    # A stub from an older refused run (bake.json "in progress", no frames) with other
    # parameters is not a bake to fight: the corrected command replaces it.
    out.mkdir()
    stub = bake_files.bake_json({"seed": 77, "channels": 9}, status="in progress", frames=[])
    bake_files.write_json_atomic(out / "bake.json", stub)
    (out / "preview_0000.png").write_bytes(b"stale")
    code, err = in_child(cli_work([flows_file, "--out", out, "-q", "--channels", C]))
    assert code == 0, err
    assert not (out / "preview_0000.png").exists()
    assert json.loads((out / "bake.json").read_text())["status"] == "complete"


# ----------------------------------------------------------------- inputs before the first frame

def test_latent_factor_that_does_not_divide_says_so(tmp_path, flows_file):
    out = tmp_path / "out"
    code, err = in_child(cli_work([flows_file, "--out", out, "-q", "--latent-factor", 3]))
    assert code == 0, err
    assert err.startswith("note: latent factor 3 does not divide the 16x16 frames: "
                          "latents.npy covers the first 15x15"), err
    record = json.loads((out / "bake.json").read_text())
    assert "does not divide" in record["latents_note"]


def test_empty_frames_and_domains_in_the_users_terms(tmp_path):
    from cupy_core.volume.grid import Domain, VolumeInputError
    with pytest.raises(ValueError, match="the render is 0 pixels wide .*set the output "
                                         "resolution"):
        bake_flow_sequence([], tmp_path / "o", shape=(16, 0), progress=False)
    with pytest.raises(VolumeInputError, match="the domain object has no size .*0 along z"
                                               ".*use a mesh box"):
        Domain.from_box([0, 0, 0], [1, 1, 0], 8)
    assert not (tmp_path / "o").exists()


def test_velocity_files_checked_up_front_and_duplicates_refused(tmp_path):
    from cupy_core.volume.grid import VolumeInputError, velocity_sequence
    folder = tmp_path / "vel"
    folder.mkdir()
    for f in range(1, 5):
        np.save(folder / f"velocity_{f:04d}.npy", np.zeros((2, 3, 4, 3), np.float32))
    assert len(velocity_sequence(folder, [1, 2, 3, 4], check=True, shape=(2, 3, 4))) == 4
    (folder / "velocity_0003.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(VolumeInputError, match="velocity_0003.npy.*frame 3.*damaged"):
        velocity_sequence(folder, [1, 2, 3, 4], check=True)
    np.save(folder / "velocity_0003.npy", np.zeros((2, 3, 5, 3), np.float32))
    with pytest.raises(VolumeInputError, match="frame 3.*the domain is"):
        velocity_sequence(folder, [1, 2, 3, 4], check=True, shape=(2, 3, 4))
    np.save(folder / "velocity_3.npy", np.zeros((2, 3, 4, 3), np.float32))
    with pytest.raises(VolumeInputError, match="are both frame 3"):
        velocity_sequence(folder, [1, 2, 3, 4])
    (folder / "velocity_3.npy").unlink()
    np.save(folder / "velocity_00003.npy", np.zeros((2, 3, 4, 3), np.float32))
    with pytest.raises(VolumeInputError, match="are both frame 3"):
        velocity_sequence(str(folder / "velocity_####.npy"), [1, 2, 3, 4])
