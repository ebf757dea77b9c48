#!/usr/bin/env python3
"""Build, test and demo cupy_core with nothing but Python's standard library.

    python build.py test [--fast] [--no-blender] [PYTEST ARGS]
                                   kernels, tests, tests again on NumPy 1.26, then the
                                   Blender add-on's tests on bpy 4.2 LTS and bpy 5.0
    python build.py addon [--dist DIR]   the installable extension zip (dist/)
    python build.py demo [--procedural]  bake the sample Blender scene through bpy into
                                   demo_output/ (--procedural: the flow-only demo)
    python build.py kernels               compile the .cu kernels with nvcc, if present
    python build.py bench [--quick]       speed, memory and quality against the upsampling
                                   baseline: benchmarks/, BENCHMARKS.md
    python build.py gpu-check --out DIR  on a GPU machine, with this Python and its CuPy
                                   (no venv): GPU tests and benchmark into DIR;
                                   --render DIR merges them into BENCHMARKS.md

Virtual environments live in the repository: .venv (the package installed editable
with its test extras, and the bench extras once `bench` has run; newest NumPy) and .venv-np126 (the same with NumPy 1.26.4, the
version Blender's bpy pins), and .venv-bpy42 / .venv-bpy50 (bpy from PyPI, NumPy < 2,
OpenEXR, pytest, the package editable) for the add-on. They are made on first use and
re-installed when pyproject.toml changes. bpy needs some X11/GL system libraries;
when they are missing and we are root, they are installed with apt-get.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_NP126 = ROOT / ".venv-np126"
NUMPY_126 = "numpy==1.26.4"
DEMO_OUTPUT = ROOT / "demo_output"
DIST = ROOT / "dist"
ADDON = ROOT / "blender_addon"
# (name, venv, bpy requirement): the oldest and the newest bpy that install on 3.11.
BPY_ENVS = [("bpy 4.2 LTS", ROOT / ".venv-bpy42", "bpy>=4.2,<4.3"),
            ("bpy 5.0", ROOT / ".venv-bpy50", "bpy==5.0.1")]
# trimesh, rtree, pillow: the surface tests compare the add-on with the trimesh route.
BPY_EXTRAS = ["numpy<2", "OpenEXR>=3.3", "pytest", "trimesh>=4", "rtree", "pillow"]
OPENEXR = "OpenEXR==3.5.3"
# Blender extension platform -> pip --platform tags for the OpenEXR wheel.
WHEEL_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "macos-arm64": ["macosx_11_0_arm64"],
    "macos-x64": ["macosx_10_15_x86_64"],
    "windows-x64": ["win_amd64"],
}
# shared library -> Debian package, what `import bpy` needs (BLENDER_FACTS 3)
BPY_SYSTEM_LIBS = {
    "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0", "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6", "libXfixes.so.3": "libxfixes3", "libXi.so.6": "libxi6",
    "libXrender.so.1": "libxrender1", "libxkbcommon.so.0": "libxkbcommon0",
    "libSM.so.6": "libsm6", "libICE.so.6": "libice6", "libxcb.so.1": "libxcb1",
    "libEGL.so.1": "libegl1",
}
NVCC_FLAGS = ["-std=c++17", "-arch=sm_80", "--fmad=false"]


def say(message):
    print(f"[build] {message}", flush=True)


def run(cmd, **kwargs):
    """Run a command from the repository root, echoing it; return its exit code."""
    say("$ " + " ".join(str(c) for c in cmd))
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kwargs)


def venv_python(env):
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pip_env(env, wanted, install_args, message):
    """Create ``env`` if missing and ``pip install install_args`` into it, unless the
    stamp file says ``wanted`` (and pyproject.toml) were installed already. Returns the
    env's python, or None when pip fails."""
    python = venv_python(env)
    if not python.exists():
        say(f"creating virtual environment {env.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=env.exists()).create(env)
    stamp = env / ".cupy_core-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                            + "\n".join(wanted).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        say(f"{env.relative_to(ROOT)} is up to date")
        return python
    say(message)
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--progress-bar", "off", *install_args]
    if run(cmd) != 0:
        return None
    stamp.write_text(digest + "\n")
    return python


def ensure_venv(env, extra_requirements=(), extras="test"):
    """Create ``env`` if missing and install the package editable with its ``extras``
    (plus ``extra_requirements``); skip the install when nothing changed since the last
    one (a stamp file holds a hash of pyproject.toml and the requirements)."""
    wanted = [f".[{extras}]", *extra_requirements]
    python = _pip_env(env, wanted, ["-e", *wanted],
                      f"installing cupy_core (editable) with "
                      f"{', '.join(wanted[1:]) or 'newest NumPy'} and the {extras} extras "
                      f"into {env.relative_to(ROOT)}")
    if python is None:
        sys.exit(f"[build] pip install into {env.relative_to(ROOT)} failed")
    return python


# tests/targets/test_model_pipelines.py runs tiny random-initialised diffusers pipelines on the
# CPU (no download): the `models` extra at versions checked together, in .venv only
# (the NumPy 1.26 venv skips those tests, saying so). torch==2.13.0 takes the CPU wheel
# that pip finds on these machines.
MODEL_PINS = ["torch==2.13.0", "diffusers==0.42.1", "transformers==5.24.0",
              "safetensors==0.8.0"]


def ensure_models_venv():
    """.venv with the test and models extras, the models at MODEL_PINS."""
    return ensure_venv(VENV, MODEL_PINS, extras="test,models")


def describe(python):
    """Print which Python and NumPy a virtual environment runs."""
    subprocess.call([str(python), "-c", "import sys, numpy; print('[build] using Python',"
                     " sys.version.split()[0], 'with NumPy', numpy.__version__)"])


def compile_kernels():
    """Compile every cupy_core/**/*.cu with nvcc to PTX (device code only, as CuPy's
    NVRTC does). Returns True when all compile or nvcc is absent."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        say("nvcc not found: kernels not compiled")
        return True
    sources = sorted((ROOT / "cupy_core").rglob("*.cu"))
    if not sources:
        say("no .cu kernels to compile")
        return True
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            rel = src.relative_to(ROOT)
            ptx = Path(tmp) / (src.stem + ".ptx")
            say(f"nvcc {rel}")
            cmd = [nvcc, *NVCC_FLAGS, "-I", src.parent, "--ptx", src, "-o", ptx]
            if subprocess.call([str(c) for c in cmd], cwd=ROOT) != 0:
                failed.append(str(rel))
    if failed:
        say("kernel compilation FAILED: " + ", ".join(failed))
        return False
    say(f"{len(sources)} kernel file(s) compiled")
    return True


# NVRTC, what CuPy compiles the kernels with, of CUDA 12 (CuPy 13) and of CUDA 13, from
# PyPI: tests/methods/test_nvrtc.py compiles every kernel with both (no GPU needed).
NVRTC_DIR = ROOT / ".nvrtc"
NVRTC_WHEELS = {"cu12": "nvidia-cuda-nvrtc-cu12==12.9.86",
                "cu13": "nvidia-cuda-nvrtc==13.5.37"}


def ensure_nvrtc(python):
    """pip install the pinned NVRTC wheels into .nvrtc/cu12 and .nvrtc/cu13 (skipped
    when a stamp says they are there) and name .nvrtc in CUPY_CORE_NVRTC for the tests;
    named even when an install fails, so that the tests fail and say so."""
    for tag, requirement in NVRTC_WHEELS.items():
        target = NVRTC_DIR / tag
        stamp = target / ".cupy_core-installed"
        if stamp.exists() and stamp.read_text().strip() == requirement:
            continue
        shutil.rmtree(target, ignore_errors=True)
        say(f"installing {requirement} into {target.relative_to(ROOT)}")
        if run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                "--progress-bar", "off", "--no-deps", "--only-binary=:all:",
                "--target", target, requirement]) != 0:
            say(f"pip could not install {requirement}: the NVRTC tests will fail")
            continue
        stamp.write_text(requirement + "\n")
    os.environ["CUPY_CORE_NVRTC"] = str(NVRTC_DIR)


GPU_WHEELS_DIR = ROOT / ".wheels-gpu"


def ensure_gpu_wheels(python):
    """pip download the add-on's pinned GPU-support wheels for NumPy 1.x (CuPy 13.6,
    fastrlock, CUDA 12 NVRTC and runtime; about 210 MB, once) into .wheels-gpu/ and name
    it in CUPY_NOISE_GPU_WHEELS: tests/blender_addon/test_gpu_support.py installs them from there."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_gpu_support", ADDON / "gpu_support.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    pins = gpu.PLANS["cupy13-cuda12"][2]
    have = [p.name for p in GPU_WHEELS_DIR.glob("*.whl")]
    if not all(any(n.startswith(r.replace("-", "_").replace("==", "-") + "-") for n in have)
               for r in pins):
        say(f"downloading {', '.join(pins)} into {GPU_WHEELS_DIR.relative_to(ROOT)}")
        if run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                "--progress-bar", "off", "--no-deps", "--only-binary=:all:",
                "-d", GPU_WHEELS_DIR, *pins]) != 0:
            say("pip could not download the GPU-support wheels: that test is skipped")
    os.environ["CUPY_NOISE_GPU_WHEELS"] = str(GPU_WHEELS_DIR)


def cmd_kernels(args, extra):
    return 0 if compile_kernels() else 1


def pytest_targets(extra):
    """``tests/`` unless the pytest arguments already name a test file or node."""
    named = any(not a.startswith("-") and ("::" in a or (ROOT / a).exists()) for a in extra)
    return [] if named else ["tests/"]


def cmd_test(args, extra):
    if not compile_kernels():
        return 1
    python = ensure_models_venv()
    ensure_nvrtc(python)
    ensure_gpu_wheels(python)
    say("running the tests with the newest NumPy")
    describe(python)
    code = run([python, "-m", "pytest", *pytest_targets(extra), *extra])
    if args.fast:
        say("--fast: skipping the NumPy 1.26 run")
        return code
    python126 = ensure_venv(VENV_NP126, [NUMPY_126])
    say("running the tests again with NumPy 1.26")
    describe(python126)
    code126 = run([python126, "-m", "pytest", *pytest_targets(extra), "-q", *extra])
    summary = [("newest NumPy", code), ("NumPy 1.26", code126)]
    if not args.no_blender:
        summary += run_blender_tests(blender_extra(extra))
    say("; ".join(f"{name}: " + ("not run (see above)" if c is None else
                                 "passed" if c == 0 else "FAILED") for name, c in summary))
    return 0 if all(c == 0 for _, c in summary) else 1


def blender_extra(extra):
    """The pytest arguments for the add-on runs: all but the core's test paths (so
    ``-k EXPR`` keeps its expression)."""
    return [a for a in extra
            if not ("::" in a or a.startswith("tests") or (ROOT / a).exists())]


def cmd_demo(args, extra):
    if not args.procedural:
        name, env, requirement = BPY_ENVS[0]
        python = ensure_bpy_venv(env, requirement) if ensure_system_libs() else None
        if python is not None:
            say(f"running the Blender demo on {name} (sample_scenes/blender_demo.py)")
            started = time.monotonic()
            code = run([python, "sample_scenes/blender_demo.py", DEMO_OUTPUT])
            if code == 0:
                say(f"demo done in {time.monotonic() - started:.0f} s: {DEMO_OUTPUT}/ has "
                    "scene.blend, noise_XXXX.npy, preview_XXXX.png, latents.npy, "
                    "bake.json and demo_preview.png")
            return code
        say("bpy is not available: running the procedural demo instead")
    python = ensure_venv(VENV)
    say("running the demo (sample_scenes/demo.py)")
    code = run([python, "sample_scenes/demo.py", "--out", DEMO_OUTPUT])
    if code == 0:
        say(f"demo outputs are in {DEMO_OUTPUT}: noise_XXXX.npy, preview_XXXX.png, "
            "latents.npy, bake.json, comparison.png")
    return code


def cmd_bench(args, extra):
    # matplotlib (the bench extra) draws the convergence plot; the tests do not need it.
    python = ensure_venv(VENV, extras="test,bench")
    describe(python)
    bench_args = (["--quick"] if args.quick else []) + extra
    return run([python, "-m", "cupy_core.bench", *bench_args])


def cmd_gpu_check(args, extra):
    """The GPU machine's check with the interpreter running this script (its own CuPy
    and NumPy; no venv, no network): probe, GPU tests, GPU benchmark into --out DIR;
    or --render DIR: merge DIR/results.json's section into BENCHMARKS.md."""
    say(f"gpu-check with {sys.executable} (Python {sys.version.split()[0]}; no venv)")
    args = list(extra)
    for i, a in enumerate(args):   # folders relative to where we were started, not ROOT
        name, eq, value = a.partition("=")
        if name in ("--out", "--render", "--markdown"):
            if eq:
                args[i] = f"{name}={Path(value).resolve()}"
            elif i + 1 < len(args):
                args[i + 1] = str(Path(args[i + 1]).resolve())
    return run([sys.executable, "-m", "cupy_core.bench.gpu_check", *args])


# --------------------------------------------------------------------------- Blender

def ensure_system_libs():
    """Install the shared libraries bpy needs (Debian/Ubuntu, as root) when missing.
    Returns True when they are all there."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        known = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return True  # cannot tell; let import bpy say
    missing = sorted({pkg for lib, pkg in BPY_SYSTEM_LIBS.items() if lib not in known})
    if not missing:
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("bpy needs these system packages, missing here: " + " ".join(missing)
            + " (install them, e.g. apt-get install " + " ".join(missing) + ")")
        return False
    say("installing system libraries for bpy: " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if run(["apt-get", "update", "-qq"], env=env) != 0 or run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env) != 0:
        say("apt-get could not install " + " ".join(missing))
        return False
    return True


def ensure_bpy_venv(env, bpy_requirement):
    """A venv with bpy, NumPy < 2, OpenEXR, pytest and the package editable; None
    (with a message saying why) when it cannot be made."""
    wanted = [bpy_requirement, *BPY_EXTRAS]
    python = _pip_env(env, wanted, [*wanted, "-e", "."],
                      f"installing {', '.join(wanted)} and cupy_core (editable) into "
                      f"{env.relative_to(ROOT)} (bpy is a ~500 MB wheel)")
    if python is None:
        say(f"could not install {bpy_requirement} into {env.relative_to(ROOT)}: bpy wheels "
            "exist only for Python 3.11 on Linux x86-64, macOS and Windows, and need "
            "PyPI access")
    return python


def extension_cli(python):
    """The extension tool shipped in the bpy wheel (``blender_ext.py``)."""
    out = subprocess.run([str(python), "-c", "import bpy, os; print(os.path.join("
                          "bpy.utils.system_resource('SCRIPTS'), 'addons_core', 'bl_pkg', "
                          "'cli', 'blender_ext.py'))"], capture_output=True, text=True)
    path = Path(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None
    return path if path is not None and path.is_file() else None


def build_addon(dist):
    """Stage blender_addon/ with the cupy_core wheel and OpenEXR wheels, write the
    manifest's wheels and platforms, validate and build the zip. Returns its path."""
    python = None
    for _, env, requirement in BPY_ENVS:
        python = ensure_bpy_venv(env, requirement) if ensure_system_libs() else None
        if python is not None:
            break
    if python is None:
        sys.exit("[build] the extension tool comes with bpy, which could not be installed")
    cli = extension_cli(python)
    if cli is None:
        sys.exit("[build] blender_ext.py not found in the bpy wheel")
    dist = Path(dist).resolve()
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "cupy_noise"
        shutil.copytree(ADDON, stage, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "wheels"))
        wheels = stage / "wheels"
        wheels.mkdir()
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
        if run([*pip, "wheel", ".", "--no-deps", "-w", wheels]) != 0:
            sys.exit("[build] pip wheel . failed")
        platforms = []
        for platform, tags in WHEEL_PLATFORMS.items():
            cmd = [*pip, "download", OPENEXR, "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.11", "-d", wheels]
            for tag in tags:
                cmd += ["--platform", tag]
            if run(cmd) == 0:
                platforms.append(platform)
            else:
                say(f"no {OPENEXR} wheel for {platform}: platform left out")
        if not platforms:
            sys.exit("[build] no OpenEXR wheel could be downloaded")
        names = sorted(p.name for p in wheels.glob("*.whl"))
        manifest = stage / "blender_manifest.toml"
        text = manifest.read_text()
        lines = ("platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n"
                 "wheels = [\n" + "".join(f'  "./wheels/{n}",\n' for n in names) + "]\n\n")
        head, sep, tail = text.partition("[permissions]")
        manifest.write_text(head + lines + sep + tail)
        if run([python, cli, "validate", stage]) != 0:
            sys.exit("[build] the extension manifest does not validate")
        for old in dist.glob("cupy_noise-*.zip"):
            old.unlink()
        if run([python, cli, "build", "--source-dir", stage, "--output-dir", dist]) != 0:
            sys.exit("[build] building the extension zip failed")
    zips = sorted(dist.glob("cupy_noise-*.zip"))
    if not zips:
        sys.exit("[build] no zip was written")
    if run([python, cli, "validate", zips[-1]]) != 0:
        sys.exit("[build] the built zip does not validate")
    say(f"extension: {zips[-1]} (platforms {', '.join(platforms)}; install with "
        "Edit > Preferences > Get Extensions > Install from Disk)")
    return zips[-1]


def cmd_addon(args, extra):
    build_addon(args.dist)
    return 0


def run_blender_tests(extra):
    """The add-on's tests in each bpy venv; returns [(name, code or None)]."""
    results = []
    if not ensure_system_libs():
        return [(name, None) for name, _, _ in BPY_ENVS]
    zip_path = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, env, requirement in BPY_ENVS:
            python = ensure_bpy_venv(env, requirement)
            if python is None:
                results.append((name, None))
                continue
            if zip_path is None:
                zip_path = build_addon(Path(tmp) / "dist")
            say(f"running the add-on tests on {name}")
            describe(python)
            started = time.monotonic()
            code = run([python, "-m", "pytest", "tests/blender", "-q", *extra],
                       env=dict(os.environ, CUPY_NOISE_ADDON_ZIP=str(zip_path)))
            say(f"{name}: {time.monotonic() - started:.0f} s")
            results.append((name, 0 if code == 5 else code))   # 5: -k selected none here
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="compile kernels (if nvcc), run the tests on the "
                                       "newest NumPy and on NumPy 1.26; other arguments "
                                       "go to pytest")
    test.add_argument("--fast", action="store_true", help="skip the NumPy 1.26 run and "
                                                         "the Blender runs")
    test.add_argument("--no-blender", action="store_true",
                      help="skip the add-on tests on bpy 4.2 and 5.0")
    addon = sub.add_parser("addon", help="build the Blender extension zip")
    addon.add_argument("--dist", default=str(DIST), help="output folder (default: dist/)")
    addon.set_defaults(func=cmd_addon)
    test.set_defaults(func=cmd_test)
    demo = sub.add_parser("demo", help="bake the sample Blender scene through bpy into "
                                       "demo_output/")
    demo.add_argument("--procedural", action="store_true",
                      help="the flow-only demo (no bpy): procedural motion")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("kernels", help="compile the .cu kernels with nvcc").set_defaults(
        func=cmd_kernels)
    bench = sub.add_parser("bench", help="speed, memory and quality benchmarks into "
                                         "benchmarks/ and BENCHMARKS.md; other arguments go "
                                         "to python -m cupy_core.bench")
    bench.add_argument("--quick", action="store_true",
                       help="a small subset in under five minutes, into benchmarks/quick/")
    bench.set_defaults(func=cmd_bench)
    gpu_check = sub.add_parser("gpu-check", add_help=False,
                               help="on a GPU machine, with this Python's CuPy (no venv, no "
                                    "network): GPU tests and benchmark into --out DIR "
                                    "(results.json, gpu-check.log, BENCHMARKS-gpu.md); "
                                    "--render DIR merges them into BENCHMARKS.md; "
                                    "gpu-check --help for the options")
    gpu_check.set_defaults(func=cmd_gpu_check)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("test", "bench", "gpu-check"):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
