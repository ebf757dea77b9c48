"""Install / Remove GPU Support under bpy: the operators and headless.py's flags, run
against a local folder of fake wheels named as the real pins (no GPU, no network).
The fake CuPy raises ImportError, so the probe fails the way it does without a GPU."""
import importlib.util
import os
import subprocess
import sys

import bpy
import pytest

from blender_addon import gpu_support as G

from conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "_gpu_support_tests", os.path.join(ROOT, "tests", "blender_addon", "test_gpu_support.py"))
_T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_T)


@pytest.fixture
def gpu_env(tmp_path, monkeypatch):
    """Fake wheels for the NumPy 1.x plan, the folder in tmp_path, a CUDA 12.4 driver."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for req in G.PLANS["cupy13-cuda12"][2]:
        name, version = req.split("==")
        files = {}
        if name.startswith("cupy-"):
            files["cupy/__init__.py"] = "raise ImportError('fake CuPy for the tests')\n"
        elif "nvrtc" in name:
            files["nvidia/cuda_nvrtc/lib/libnvrtc.so.12"] = _T._some_shared_library()
        elif "runtime" in name:
            files["nvidia/cuda_runtime/include/cuda_runtime.h"] = "/* fake */\n"
        _T.make_wheel(wheels, name, version, files)
    folder = tmp_path / "user" / "gpu_support"
    monkeypatch.setenv(G.ENV_DIR, str(folder))
    monkeypatch.setenv(G.ENV_DRIVER, "12.4")
    yield str(wheels), str(folder)
    G.deactivate()
    sys.modules.pop("cupy", None)


def test_operators_install_probe_remove(gpu_env):
    wheels, folder = gpu_env
    assert G.folder_for("blender_addon") == folder
    result = bpy.ops.cupy_noise.install_gpu_support(wheels=wheels)
    assert result == {"FINISHED"}
    from blender_addon import operators
    job = operators.JOB
    assert job.ok is False and "CuPy" in job.summary          # the fake CuPy: probe failed
    assert job.progress >= 0.95 and any(l.startswith("Successfully installed")
                                        for l in job.lines)
    manifest = G.read_manifest(folder)
    assert manifest["packages"] == list(G.PLANS["cupy13-cuda12"][2])
    assert manifest["numpy"].startswith("1.")                 # Blender's NumPy, untouched
    assert sys.path[0] == folder and G.active().error is None
    assert not any(n.startswith("numpy") for n in os.listdir(folder))

    assert bpy.ops.cupy_noise.remove_gpu_support() == {"FINISHED"}
    assert not os.path.exists(folder) and folder not in sys.path and G.active() is None


def test_register_activates_an_installed_folder(gpu_env, addon):
    wheels, folder = gpu_env
    G.install(folder, G.plan("cupy13-cuda12"), wheels=wheels)
    assert folder not in sys.path
    addon.unregister()
    addon.register()
    assert sys.path[0] == folder
    assert G.active().preloaded[0][0].endswith("libnvrtc.so.12")
    G.remove(folder)
    assert folder not in sys.path


def test_operator_refuses_without_driver(gpu_env, monkeypatch):
    wheels, folder = gpu_env
    monkeypatch.setenv(G.ENV_DRIVER, "none")
    with pytest.raises(RuntimeError, match="no NVIDIA driver found"):
        bpy.ops.cupy_noise.install_gpu_support(wheels=wheels)
    assert not os.path.exists(folder)


def _headless(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "blender_addon", "headless.py"),
                           *args], capture_output=True, text=True, env=env, timeout=300)


def test_headless_install_and_remove(gpu_env):
    wheels, folder = gpu_env
    r = _headless("--install-gpu-support", "--wheels", wheels, env=dict(os.environ))
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stdout + r.stderr
    assert "the GPU probe failed" in errors[0] and "[gpu]" in r.stdout
    assert G.read_manifest(folder)["plan"] == "cupy13-cuda12"      # the files stay
    r = _headless("--remove-gpu-support", env=dict(os.environ))
    assert r.returncode == 0 and "removed" in r.stdout, r.stderr
    assert not os.path.exists(folder)
    r = _headless("--install-gpu-support", "--wheels", wheels,
                  env=dict(os.environ, **{G.ENV_DRIVER: "none"}))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        "error: no NVIDIA driver found")
    assert not os.path.exists(folder)


class _Layout:
    """Records what the preferences draw (background mode has no real layout)."""

    def __init__(self, log):
        self.log, self.enabled = log, True

    def __getattr__(self, name):
        if name in ("row", "column", "box"):
            return lambda *a, **k: _Layout(self.log)
        return lambda *a, **k: self.log.append((name, a, k))


def test_preferences_draw_install_state(gpu_env):
    from blender_addon import operators, preferences
    wheels, folder = gpu_env
    log = []
    preferences.draw_gpu_support(None, _Layout(log))
    texts = [k.get("text", "") for name, _, k in log]
    assert "Not installed" in texts and "Install GPU Support" in texts
    job = operators.GpuJob(folder, wheels, G.plan("cupy13-cuda12"))
    job.thread.start()              # the install, as the modal operator runs it
    while job.thread.is_alive():
        log.clear()
        operators.JOB = job
        preferences.draw_gpu_support(None, _Layout(log))
        job.thread.join(0.05)
    assert job.outcome[0] == "ok" and job.finish()[0] == "WARNING"   # probe: fake CuPy
    log.clear()
    preferences.draw_gpu_support(None, _Layout(log))
    texts = [k.get("text", "") for name, _, k in log]
    assert any(t.startswith("Installed: CuPy 13.6.0 for CUDA 12") for t in texts)
    assert "Reinstall GPU Support" in texts
    G.remove(folder)
    operators.JOB = None
