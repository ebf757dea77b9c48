"""The add-on's "Install GPU support" (blender_addon/gpu_support.py), without bpy and
without a GPU: choosing the packages, pip against a local folder of wheels (tiny fake
wheels for the mechanics: progress, cancel, remove, refusals), and one test with the
real CuPy 13.6 + NVRTC wheels whose installed NVRTC compiles white.cu for sm_75.

The real wheels come from ``CUPY_NOISE_GPU_WHEELS`` or the git-ignored ``.wheels-gpu/``
(``python build.py test`` downloads them); the test is skipped without them."""
import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHEELS = os.environ.get("CUPY_NOISE_GPU_WHEELS") or os.path.join(ROOT, ".wheels-gpu")


def _load():
    spec = importlib.util.spec_from_file_location(
        "cupy_noise_gpu_support", os.path.join(ROOT, "blender_addon", "gpu_support.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


G = _load()


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(G.ENV_DRIVER, raising=False)
    monkeypatch.delenv(G.ENV_DIR, raising=False)
    before = (list(sys.path), os.environ.get("CUDA_PATH"))
    yield
    G.deactivate()
    assert (list(sys.path), os.environ.get("CUDA_PATH")) == before


def make_wheel(folder, name, version, files=None):
    """A minimal valid py3-none-any wheel holding ``files`` {path: text}."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = dict(files or {})
    files[f"{dist}.dist-info/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\n"
                                           f"Version: {version}\n")
    files[f"{dist}.dist-info/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for path, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(folder, f"{dist}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


FAKE = G.Plan("fake", "14.0.0", 12, ("fakecupy==1.0", "nvidia-fake-runtime==12.9.1"))
BROKEN = G.Plan("broken", "14.0.0", 12, ("fakecupy==1.0", "nvidia-fake-runtime==12.9.0"))


def _some_shared_library():
    """A real shared library to stand in for libnvrtc (preloading needs one)."""
    import _json
    with open(_json.__file__, "rb") as f:
        return f.read()


@pytest.fixture
def fake_wheels(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    make_wheel(d, "fakecupy", "1.0", {"fakecupy/__init__.py": "VALUE = 1\n"})
    lib = _some_shared_library() if sys.platform.startswith("linux") else b"x"
    make_wheel(d, "nvidia-fake-runtime", "12.9.1", {
        "nvidia/cuda_runtime/include/cuda_runtime.h": "/* fake */\n",
        "nvidia/cuda_nvrtc/lib/libnvrtc.so.12": lib})
    make_wheel(d, "nvidia-fake-runtime", "12.9.0", {
        "nvidia/cuda_nvrtc/lib/libnvrtc.so.12": "not a library\n"})
    return str(d)


# --------------------------------------------------------------------------- choosing

@pytest.mark.parametrize("numpy_ver, driver, key", [
    ("1.26.4", (12, 4), "cupy13-cuda12"),
    ("1.26.4", (13, 0), "cupy13-cuda12"),    # a CUDA 13 driver runs CUDA 12 programs
    ("2.1.0", (12, 8), "cupy14-cuda12"),
    ("2.3.5", (13, 1), "cupy14-cuda13"),
])
def test_plan_by_numpy_and_driver(numpy_ver, driver, key):
    plan = G.choose_plan(numpy_ver, driver, platform="linux")
    assert plan.key == key
    assert plan.packages == G.PLANS[key][2]
    assert plan.cupy_version == ("13.6.0" if numpy_ver < "2" else "14.2.0")


def test_plans_are_exact_pins_and_self_consistent():
    for key, (version, major, packages) in G.PLANS.items():
        assert all(p.count("==") == 1 and p.split("==")[1][0].isdigit() for p in packages)
        assert packages[0] == f"cupy-cuda{major}x=={version}"
        nvrtc = [p for p in packages if "nvrtc" in p][0].split("==")[1]
        runtime = [p for p in packages if "runtime" in p][0].split("==")[1]
        # CuPy 13 takes the runtime wheel's headers only when its major.minor is NVRTC's.
        assert nvrtc.split(".")[:2] == runtime.split(".")[:2]
        assert nvrtc.split(".")[0] == str(major)


@pytest.mark.parametrize("platform, driver, numpy_ver, words", [
    ("darwin", (12, 4), "1.26.4", "macOS has no CUDA"),
    ("linux", None, "1.26.4", "no NVIDIA driver found"),
    ("win32", (11, 8), "1.26.4", "update the driver"),
    ("freebsd14", (12, 4), "1.26.4", "no wheels"),
])
def test_refusals(platform, driver, numpy_ver, words):
    with pytest.raises(G.GpuSupportError, match=words):
        G.choose_plan(numpy_ver, driver, platform=platform)


def test_driver_version(monkeypatch):
    monkeypatch.setenv(G.ENV_DRIVER, "12.4")
    assert G.driver_cuda_version() == (12, 4)
    monkeypatch.setenv(G.ENV_DRIVER, "none")
    assert G.driver_cuda_version() is None
    monkeypatch.delenv(G.ENV_DRIVER)
    found = G.driver_cuda_version()      # asks libcuda.so.1 / nvcuda.dll with ctypes
    assert found is None or (isinstance(found, tuple) and found[0] >= 10)


# --------------------------------------------------------------------------- installing

def test_install_progress_activate_remove(tmp_path, fake_wheels):
    folder = str(tmp_path / "ext" / "gpu_support")
    seen = []
    manifest = G.install(folder, FAKE, wheels=fake_wheels,
                         progress=lambda f, line: seen.append((f, line)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.95
    assert any(line.startswith("Successfully installed") for _, line in seen)
    assert manifest["packages"] == list(FAKE.packages)
    assert G.read_manifest(folder) == manifest
    assert os.path.isfile(os.path.join(folder, "fakecupy", "__init__.py"))
    assert not os.path.exists(folder + ".partial")
    assert "numpy" not in " ".join(os.listdir(folder))      # --no-deps: Blender's NumPy

    act = G.activate(folder)
    assert act.path_added and sys.path[0] == folder
    import fakecupy
    assert fakecupy.VALUE == 1 and fakecupy.__file__.startswith(folder)
    del sys.modules["fakecupy"]
    # CuPy 14: CUDA_PATH points at the runtime wheel (cuda-pathfinder takes its headers)
    assert os.environ["CUDA_PATH"] == os.path.join(folder, "nvidia", "cuda_runtime")
    assert act.error is None
    assert [p for p, _ in act.preloaded] == [os.path.join(folder, "nvidia", "cuda_nvrtc",
                                                          "lib", "libnvrtc.so.12")]
    assert G.activate(folder) is act                         # idempotent

    assert G.remove(folder) is None
    assert not os.path.exists(folder) and folder not in sys.path
    assert G.active() is None
    assert G.activate(folder) is None                        # nothing installed


def test_broken_library_is_not_activated(tmp_path, fake_wheels):
    folder = str(tmp_path / "gpu_support")
    G.install(folder, BROKEN, wheels=fake_wheels)
    act = G.activate(folder)
    assert "cannot load libnvrtc.so.12" in act.error
    assert folder not in sys.path and "CUDA_PATH" not in os.environ or \
        os.environ["CUDA_PATH"] != os.path.join(folder, "nvidia", "cuda_runtime")
    assert G.remove(folder) is None and not os.path.exists(folder)


def test_reinstall_replaces_the_folder(tmp_path, fake_wheels):
    folder = str(tmp_path / "gpu_support")
    G.install(folder, FAKE, wheels=fake_wheels)
    open(os.path.join(folder, "stale.txt"), "w").close()
    G.install(folder, FAKE, wheels=fake_wheels)
    assert not os.path.exists(os.path.join(folder, "stale.txt"))
    assert G.read_manifest(folder)["plan"] == "fake"


def test_cancel_leaves_nothing(tmp_path, fake_wheels):
    folder = str(tmp_path / "gpu_support")
    lines = []
    with pytest.raises(G.Cancelled):
        G.install(folder, FAKE, wheels=fake_wheels, progress=lambda f, l: lines.append(l),
                  cancelled=lambda: len(lines) > 1)
    assert not os.path.exists(folder) and not os.path.exists(folder + ".partial")


def test_no_network_says_so(tmp_path):
    folder = str(tmp_path / "gpu_support")
    with pytest.raises(G.GpuSupportError, match="no network"):
        G.install(folder, G.Plan("x", "13.6.0", 12, ("cupy-noise-nonexistent==1.0",)),
                  index_url="http://127.0.0.1:9/simple")
    assert not os.path.exists(folder) and not os.path.exists(folder + ".partial")


def test_wheel_missing_from_folder(tmp_path, fake_wheels):
    with pytest.raises(G.GpuSupportError, match="lacks a wheel"):
        G.install(str(tmp_path / "g"), G.Plan("x", "1", 12, ("fakecupy==2.0",)),
                  wheels=fake_wheels)
    with pytest.raises(G.GpuSupportError, match="not found"):
        G.install(str(tmp_path / "g"), FAKE, wheels=str(tmp_path / "nowhere"))


def test_install_and_probe_reports_a_failed_probe(tmp_path, fake_wheels):
    class Failed:
        ok = False

        def summary(self):
            return "GPU unavailable: no CUDA device; install the driver"
    steps = []
    manifest, act, status = G.install_and_probe(
        str(tmp_path / "g"), wheels=fake_wheels, chosen=FAKE, run_probe=Failed,
        progress=lambda f, line: steps.append((f, line)))
    assert isinstance(status, Failed) and manifest["plan"] == "fake"
    assert act.error is None and steps[-1] == (1.0, Failed().summary())
    _, act, status = G.install_and_probe(str(tmp_path / "b"), wheels=fake_wheels,
                                         chosen=BROKEN, run_probe=Failed)
    assert status is None and "cannot load" in act.error     # no probe without activation
    with pytest.raises(G.GpuSupportError, match="no NVIDIA driver"):
        os.environ[G.ENV_DRIVER] = "none"
        try:
            G.install_and_probe(str(tmp_path / "h"), wheels=fake_wheels)
        finally:
            del os.environ[G.ENV_DRIVER]


def test_activation_refuses_another_python_or_numpy(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    for key, value, words in (("python", "3.99", "Python 3.99"), ("numpy", "0.9", "NumPy 0.9")):
        m = {"plan": "cupy13-cuda12", "cupy_version": "13.6.0", "cuda_major": 12,
             "python": "%d.%d" % sys.version_info[:2], "numpy": G.numpy_version()}
        m[key] = value
        (folder / G.MANIFEST).write_text(json.dumps(m))
        act = G.activate(str(folder))
        assert words in act.error and str(folder) not in sys.path
        G.deactivate()


def test_remove_sweeps_leftovers(tmp_path):
    folder = str(tmp_path / "g")
    os.makedirs(folder + ".removed-1/x")
    os.makedirs(folder + ".partial")
    assert G.activate(folder) is None
    assert not os.path.exists(folder + ".removed-1") and not os.path.exists(folder + ".partial")
    assert G.remove(folder) is None     # nothing installed: nothing to do


# --------------------------------------------------------------------------- real wheels

def _real_wheels():
    names = [p.split("==")[0].replace("-", "_") + "-" + p.split("==")[1]
             for p in G.PLANS["cupy13-cuda12"][2]]
    have = os.listdir(WHEELS) if os.path.isdir(WHEELS) else []
    missing = [n for n in names if not any(f.startswith(n + "-") and f.endswith(".whl")
                                           for f in have)]
    return missing


@pytest.fixture(scope="session")
def real_install(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("the NVRTC compile test reads /proc/self/maps (Linux)")
    missing = _real_wheels()
    if missing:
        pytest.skip(f"real wheels not in {WHEELS} ({', '.join(missing)}): "
                    "python build.py test downloads them")
    folder = str(tmp_path_factory.mktemp("real") / "gpu_support")
    G.install(folder, G.plan("cupy13-cuda12"), wheels=WHEELS)
    return folder


def test_real_wheels_metadata_needs_nothing_else():
    """Every Requires-Dist of the pinned wheels (no extras) is pinned too, or NumPy."""
    if _real_wheels():
        pytest.skip(f"real wheels not in {WHEELS}")
    pinned = {G._canon(p.split("==")[0]) for p in G.PLANS["cupy13-cuda12"][2]}
    for f in sorted(os.listdir(WHEELS)):
        if not f.endswith(".whl") or G._canon(f.split("-")[0]) not in pinned:
            continue
        with zipfile.ZipFile(os.path.join(WHEELS, f)) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            msg = Parser().parsestr(z.read(meta).decode())
        for req in msg.get_all("Requires-Dist") or []:
            if "extra ==" in req:
                continue
            name = G._canon(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0]
                            .split("=")[0].split("!")[0].strip())
            assert name in pinned | {"numpy"}, (f, req)


_COMPILE = textwrap.dedent("""
    import json, os, sys
    spec_path, folder, root, mode = sys.argv[1:5]
    import importlib.util
    spec = importlib.util.spec_from_file_location("gs", spec_path)
    G = importlib.util.module_from_spec(spec); spec.loader.exec_module(G)
    out = {}
    if mode == "activate":
        act = G.activate(folder)
        out["error"] = act.error
    else:
        sys.path.insert(0, folder)
    import numpy, cupy
    out["cupy"] = cupy.__version__
    out["cupy_file"] = cupy.__file__
    from cupy.cuda import compiler, nvrtc
    try:
        out["nvrtc"] = list(nvrtc.getVersion())
    except Exception as exc:
        out["nvrtc_error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out)); sys.exit(0)
    try:
        cupy.cuda.runtime.getDeviceCount()
        out["device"] = True
    except Exception as exc:
        out["device"] = f"{type(exc).__name__}: {exc}"
    sys.path.insert(0, root)
    from cupy_core.methods import cuda
    from cupy._core import core
    # RawModule's options (bundled CCCL, CuPy's headers, the runtime wheel's include) and
    # NVRTC for an explicit arch: CuPy would ask the (absent) device for it.
    compiler._get_arch_for_options_for_nvrtc = lambda arch=None: (f"-arch=sm_{arch}", "cubin")
    opts = (core.assemble_cupy_compiler_options(cuda.OPTIONS)
            + getattr(compiler, "_get_extra_include_dir_opts", tuple)())
    out["options"] = list(opts)
    src = "#include <cuda_fp16.h>\\n" + cuda.source("white.cu")
    cubin, _ = compiler.compile_using_nvrtc(src, options=opts, arch="75")
    out["cubin"] = cubin[:4].hex()
    out["cubin_size"] = len(cubin)
    out["libs"] = sorted({l.split()[-1] for l in open("/proc/self/maps")
                          if "libnvrtc" in l})
    print(json.dumps(out))
""")


def _compile(folder, mode):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_PATH", "CUDA_HOME")}
    r = subprocess.run([sys.executable, "-c", _COMPILE,
                        os.path.join(ROOT, "blender_addon", "gpu_support.py"), folder, ROOT,
                        mode], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_real_cupy13_nvrtc_compiles_white_from_the_folder(real_install):
    folder = real_install
    assert sorted(os.listdir(os.path.join(folder, "nvidia"))) == ["cuda_nvrtc", "cuda_runtime"]
    assert os.path.isfile(os.path.join(folder, "nvidia/cuda_nvrtc/lib/libnvrtc.so.12"))
    assert os.path.isfile(os.path.join(folder, "nvidia/cuda_runtime/include/cuda_fp16.h"))
    # Without the preload CuPy 13.6 cannot find the folder's NVRTC (it dlopens by name).
    bare = _compile(folder, "path-only")
    assert "libnvrtc.so.12" in bare["nvrtc_error"]
    out = _compile(folder, "activate")
    assert out["error"] is None
    assert out["cupy"] == "13.6.0" and out["cupy_file"].startswith(folder)
    assert out["nvrtc"] == [12, 9]
    inc = "-I" + os.path.join(folder, "nvidia", "cuda_runtime", "include")
    assert inc in out["options"]
    assert out["cubin"] == "7f454c46" and out["cubin_size"] > 1000      # an ELF cubin
    assert out["libs"] and all(p.startswith(folder) for p in out["libs"])
    assert out["device"] is True or "driver" in out["device"].lower()


def test_panel_probe_runs_in_the_background(monkeypatch):
    """``device_info(wait=False)`` (the panel's draw) returns None at once and probes in
    one background thread, however often it is drawn meanwhile; then the info."""
    import threading
    import types

    import cupy_core.device as core_device

    release = threading.Event()
    calls = []
    status = types.SimpleNamespace(ok=True, name="Some GPU", cupy_version="13.6.0",
                                   reason=None, advice=None)

    def gpu_status(refresh=False, wait=True):
        if not wait:
            return status if calls and not G.probing() else None
        calls.append(threading.current_thread().name)
        release.wait(10)               # a slow probe: CuPy's import, a compile
        return status

    monkeypatch.setattr(core_device, "gpu_status", gpu_status)
    assert G.device_info(wait=False) is None and G.probing()
    assert G.device_info(wait=False) is None            # drawn again: no second probe
    release.set()
    import time
    deadline = time.monotonic() + 10
    while G.probing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not G.probing() and len(calls) == 1 and calls[0] != threading.current_thread().name
    assert G.device_info(wait=False) == {"cupy": "13.6.0", "gpu": "Some GPU", "error": None}
