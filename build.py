#!/usr/bin/env python3
"""Build, test and demo cupy_core with nothing but Python's standard library.

    python build.py test [--fast] [PYTEST ARGS]   kernels, tests, tests again on NumPy 1.26
    python build.py demo                          bake the procedural demo into demo_output/
    python build.py kernels                       compile the .cu kernels with nvcc, if present

Virtual environments live in the repository: .venv (the package installed editable
with its test extras, newest NumPy) and .venv-np126 (the same with NumPy 1.26.4, the
version Blender's bpy pins). They are made on first use and re-installed when
pyproject.toml changes.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_NP126 = ROOT / ".venv-np126"
NUMPY_126 = "numpy==1.26.4"
DEMO_OUTPUT = ROOT / "demo_output"
NVCC_FLAGS = ["-std=c++17", "-arch=sm_80", "--fmad=false"]


def say(message):
    print(f"[build] {message}", flush=True)


def run(cmd, **kwargs):
    """Run a command from the repository root, echoing it; return its exit code."""
    say("$ " + " ".join(str(c) for c in cmd))
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kwargs)


def venv_python(env):
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(env, extra_requirements=()):
    """Create ``env`` if missing and install the package editable with its test extras
    (plus ``extra_requirements``); skip the install when nothing changed since the last
    one (a stamp file holds a hash of pyproject.toml and the requirements)."""
    python = venv_python(env)
    if not python.exists():
        say(f"creating virtual environment {env.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=env.exists()).create(env)
    wanted = [".[test]", *extra_requirements]
    stamp = env / ".cupy_core-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                            + "\n".join(wanted).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        say(f"{env.relative_to(ROOT)} is up to date")
        return python
    say(f"installing cupy_core (editable) with {', '.join(wanted[1:]) or 'newest NumPy'} "
        f"and test extras into {env.relative_to(ROOT)}")
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--progress-bar", "off", "-e", *wanted]
    if run(cmd) != 0:
        sys.exit(f"[build] pip install into {env.relative_to(ROOT)} failed")
    stamp.write_text(digest + "\n")
    return python


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
            cmd = [nvcc, *NVCC_FLAGS, "-I", ROOT / "cupy_core", "--ptx", src, "-o", ptx]
            if subprocess.call([str(c) for c in cmd], cwd=ROOT) != 0:
                failed.append(str(rel))
    if failed:
        say("kernel compilation FAILED: " + ", ".join(failed))
        return False
    say(f"{len(sources)} kernel file(s) compiled")
    return True


def cmd_kernels(args, extra):
    return 0 if compile_kernels() else 1


def pytest_targets(extra):
    """``tests/`` unless the pytest arguments already name a test file or node."""
    named = any(not a.startswith("-") and ("::" in a or (ROOT / a).exists()) for a in extra)
    return [] if named else ["tests/"]


def cmd_test(args, extra):
    if not compile_kernels():
        return 1
    python = ensure_venv(VENV)
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
    say(f"newest NumPy: {'passed' if code == 0 else 'FAILED'}; "
        f"NumPy 1.26: {'passed' if code126 == 0 else 'FAILED'}")
    return code or code126


def cmd_demo(args, extra):
    python = ensure_venv(VENV)
    say("running the demo (sample_scenes/demo.py)")
    code = run([python, "sample_scenes/demo.py", "--out", DEMO_OUTPUT])
    if code == 0:
        say(f"demo outputs are in {DEMO_OUTPUT}: noise_XXXX.npy, preview_XXXX.png, "
            "latents.npy, bake.json, comparison.png")
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="compile kernels (if nvcc), run the tests on the "
                                       "newest NumPy and on NumPy 1.26; other arguments "
                                       "go to pytest")
    test.add_argument("--fast", action="store_true", help="skip the NumPy 1.26 run")
    test.set_defaults(func=cmd_test)
    sub.add_parser("demo", help="bake the demo into demo_output/").set_defaults(func=cmd_demo)
    sub.add_parser("kernels", help="compile the .cu kernels with nvcc").set_defaults(
        func=cmd_kernels)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
