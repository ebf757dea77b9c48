"""GPU support for the add-on: CuPy plus the NVRTC and CUDA-runtime wheels it compiles
with, pip-installed into a folder of the extension's own (no admin rights, nothing
written into Blender), and made importable at start-up. No bpy here (except the lazy
lookup in ``folder_for``), so the tests run in a plain venv.

What gets installed (exact pins, ``--no-deps``: NumPy stays Blender's own):

* NumPy < 2 (Blender 4.2-5.0 ship 1.26): CuPy 13.6 for CUDA 12, whatever the driver's
  CUDA major (12 or 13: drivers run older CUDA majors), with ``fastrlock`` and the CUDA
  12.9 NVRTC and runtime (headers) wheels.
* NumPy >= 2: CuPy 14 for the driver's CUDA major (12 or 13), ``cuda-pathfinder`` and
  the NVRTC/runtime wheels its ``[ctk]`` extra resolves to.

How CuPy is made to find them (read in CuPy's source; see ``activate``):

* NVRTC: CuPy 13.6 ``dlopen``s ``libnvrtc.so.12`` / ``nvrtc64_120_0.dll`` by name and
  CuPy 14's cuda-pathfinder looks in ``site.getsitepackages()``, neither of which sees
  this folder; both take a library that is already loaded. So the folder's NVRTC (and
  for CuPy 14 its cudart) is loaded with ctypes (RTLD_GLOBAL) before ``import cupy``; on
  Windows its DLL folders are also added with ``os.add_dll_directory``.
* Headers: CuPy 13.6 finds the runtime wheel's ``include`` through
  ``importlib.metadata`` (the folder is on ``sys.path``; the wheel's major.minor must be
  NVRTC's). CuPy 14 asks cuda-pathfinder, which would take any system CUDA's headers
  first, so ``CUDA_PATH`` is pointed at the wheel's root (restored on removal).

Environment overrides: ``CUPY_NOISE_GPU_DIR`` (the folder), ``CUPY_NOISE_CUDA_DRIVER``
("12.4", or "none": the driver's CUDA version instead of asking the driver, e.g. to
prepare a shared folder for a render farm on a machine without GPU).
"""
import ctypes
import glob
import importlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

FOLDER = "gpu_support"
MANIFEST = "gpu_support.json"
ENV_DIR = "CUPY_NOISE_GPU_DIR"
ENV_DRIVER = "CUPY_NOISE_CUDA_DRIVER"

CUPY_13 = "13.6.0"
CUPY_14 = "14.2.0"
_CUDA12 = ("nvidia-cuda-nvrtc-cu12==12.9.86", "nvidia-cuda-runtime-cu12==12.9.79")
_CUDA13 = ("nvidia-cuda-nvrtc==13.5.37", "nvidia-cuda-runtime==13.5.37")
# plan key -> (CuPy version, CUDA major of the wheels, exact requirements)
PLANS = {
    "cupy13-cuda12": (CUPY_13, 12, (f"cupy-cuda12x=={CUPY_13}", "fastrlock==0.8.4", *_CUDA12)),
    "cupy14-cuda12": (CUPY_14, 12, (f"cupy-cuda12x=={CUPY_14}", "cuda-pathfinder==1.9.1",
                                    *_CUDA12)),
    "cupy14-cuda13": (CUPY_14, 13, (f"cupy-cuda13x=={CUPY_14}", "cuda-pathfinder==1.9.1",
                                    *_CUDA13)),
}


class GpuSupportError(Exception):
    """Installing, activating or removing GPU support failed; the text says why and what
    to do, in one line."""


class Cancelled(GpuSupportError):
    pass


@dataclass(frozen=True)
class Plan:
    key: str
    cupy_version: str
    cuda_major: int
    packages: tuple

    def describe(self):
        return f"CuPy {self.cupy_version} for CUDA {self.cuda_major}: " + ", ".join(
            self.packages)


def plan(key):
    version, major, packages = PLANS[key]
    return Plan(key, version, major, packages)


# --------------------------------------------------------------------------- detection

def driver_cuda_version():
    """(major, minor) of the newest CUDA the NVIDIA driver supports, asked with
    ``cuDriverGetVersion`` (no CuPy, no cuInit), or None without a driver.
    ``CUPY_NOISE_CUDA_DRIVER`` ("12.4" or "none") overrides it."""
    forced = os.environ.get(ENV_DRIVER, "").strip()
    if forced:
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?", forced)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else None
    if sys.platform == "darwin":
        return None
    names = ("nvcuda.dll",) if os.name == "nt" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            version = ctypes.c_int(0)
            if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
                return version.value // 1000, version.value % 1000 // 10
        except (OSError, AttributeError):
            continue
    return None


def numpy_version():
    try:
        import numpy
        return numpy.__version__
    except ImportError:
        return None


def choose_plan(numpy_ver=None, driver=None, platform=None):
    """The ``Plan`` for this NumPy and driver, or ``GpuSupportError`` saying why none
    fits. ``driver``: (major, minor) or None for none found."""
    platform = platform or sys.platform
    if platform == "darwin":
        raise GpuSupportError("macOS has no CUDA: GPU support needs an NVIDIA GPU on "
                              "Windows or Linux; the bake runs on the CPU here")
    if not (platform.startswith("linux") or platform == "win32"):
        raise GpuSupportError(f"CuPy has no wheels for {platform}: the bake runs on the CPU")
    if driver is None:
        raise GpuSupportError("no NVIDIA driver found (libcuda.so.1 / nvcuda.dll): install "
                              "the NVIDIA driver (525 or newer for CUDA 12) and restart "
                              "Blender")
    if driver[0] < 12:
        raise GpuSupportError(f"the NVIDIA driver supports CUDA {driver[0]}.{driver[1]}; "
                              "CuPy needs CUDA 12 or newer: update the driver (525 or newer)")
    if numpy_ver is None:
        raise GpuSupportError("NumPy is not importable in this Python")
    numpy_major = int(str(numpy_ver).split(".")[0])
    if numpy_major < 2:
        return plan("cupy13-cuda12")
    return plan("cupy14-cuda13" if driver[0] >= 13 else "cupy14-cuda12")


# --------------------------------------------------------------------------- folder

def folder_for(package):
    """The GPU-support folder: ``CUPY_NOISE_GPU_DIR``, else the extension's user folder
    (``bpy.utils.extension_path_user``); outside the extension system (the add-on run
    from a checkout) the installed extension's folder if it is enabled, else
    ``<Blender config>/cupy_noise/gpu_support``. Does not create it."""
    forced = os.environ.get(ENV_DIR)
    if forced:
        return os.path.abspath(forced)
    import bpy
    candidates = [package] + [name for name in bpy.context.preferences.addons.keys()
                              if name.startswith("bl_ext.") and name.endswith(".cupy_noise")]
    for name in candidates:
        try:
            return bpy.utils.extension_path_user(name, path=FOLDER, create=False)
        except (ValueError, KeyError, TypeError, RuntimeError):
            continue
    return os.path.join(bpy.utils.user_resource("CONFIG"), "cupy_noise", FOLDER)


def read_manifest(folder):
    """The install record of ``folder`` (dict), or None when nothing is installed."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _dist_names(folder):
    names = set()
    for path in glob.glob(os.path.join(folder, "*.dist-info")):
        base = os.path.basename(path)[:-len(".dist-info")]
        names.add(_canon(base.rsplit("-", 1)[0]) + "==" + base.rsplit("-", 1)[-1])
    return names


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- install

_NETWORK_SIGNS = ("NewConnectionError", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Name or service not known",
                  "Connection refused", "ConnectTimeout", "Network is unreachable",
                  "Max retries exceeded", "getaddrinfo failed", "ProxyError", "SSLError",
                  "ReadTimeoutError", "timed out")


def _pip_failure(lines, wheels):
    text = "\n".join(lines)
    last = next((ln.strip() for ln in reversed(lines) if ln.strip().startswith("ERROR")),
                lines[-1].strip() if lines else "no output")
    if "No module named pip" in text:
        return ("this Python has no pip (" + last + "): run '<python> -m ensurepip' once, "
                "or install from a wheels folder with a Python that has pip")
    if wheels is None and any(s in text for s in _NETWORK_SIGNS):
        return ("no network: pip could not reach the package index (" + last + "); "
                "connect to the internet, or download the wheels elsewhere and give "
                "their folder")
    if wheels is not None and "No matching distribution" in text:
        return f"the wheels folder {wheels} lacks a wheel this Python can use ({last})"
    return f"pip failed: {last}"


def install(folder, chosen, wheels=None, index_url=None, progress=None, cancelled=None,
            python=None, timeout=1800):
    """pip-install ``chosen.packages`` (a ``Plan``) into ``folder``: into a staging folder
    beside it first, then swapped in whole. ``wheels``: a local folder of wheels (no
    network); ``progress(fraction, line)`` gets each pip line; ``cancelled()`` True stops
    pip and leaves nothing behind. Returns the manifest written into the folder."""
    progress = progress or (lambda fraction, line: None)
    cancelled = cancelled or (lambda: False)
    folder = os.path.abspath(folder)
    staging = folder + ".partial"
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [python or sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:",
           "--target", staging, "--no-input", "--disable-pip-version-check",
           "--progress-bar", "off", "--no-compile", "--retries", "1", "--timeout", "20"]
    if wheels is not None:
        if not os.path.isdir(wheels):
            raise GpuSupportError(f"wheels folder {wheels} not found")
        cmd += ["--no-index", "--find-links", os.path.abspath(wheels)]
    elif index_url:
        cmd += ["--index-url", index_url]
    cmd += list(chosen.packages)
    progress(0.0, f"pip install {' '.join(chosen.packages)}")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_WARN_SCRIPT_LOCATION="1")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace",
                                env=env)
    except OSError as exc:
        raise GpuSupportError(f"cannot run {cmd[0]}: {exc}") from exc
    lines, seen = [], set()
    out = queue.Queue()
    reader = threading.Thread(target=lambda: [out.put(ln) for ln in proc.stdout] + [out.put(None)],
                              daemon=True)
    reader.start()
    n = len(chosen.packages)
    fraction, started = 0.0, time.monotonic()
    try:
        while True:
            if cancelled():
                raise Cancelled("GPU support install cancelled; nothing was installed")
            if time.monotonic() - started > timeout:
                raise GpuSupportError(f"pip took over {timeout} s; stopped")
            try:
                line = out.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.rstrip()
            lines.append(line)
            m = re.match(r"\s*(Collecting|Processing|Downloading|Using cached|File was already)"
                         r"\s+(\S+)", line)
            if m:
                seen.add(m.group(2))
                fraction = max(fraction, 0.85 * min(len(seen), 2 * n) / (2 * n))
            elif line.startswith("Installing collected packages"):
                fraction = 0.9
            elif line.startswith("Successfully installed"):
                fraction = 0.95
            progress(fraction, line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if rc != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise GpuSupportError(_pip_failure(lines, wheels))
    have = _dist_names(staging)
    missing = [p for p in chosen.packages if _canon(p.split("==")[0]) + "==" + p.split("==")[1]
               not in have]
    if missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise GpuSupportError("pip reported success but did not install " + ", ".join(missing))
    manifest = {"plan": chosen.key, "packages": list(chosen.packages),
                "cupy_version": chosen.cupy_version, "cuda_major": chosen.cuda_major,
                "python": "%d.%d" % sys.version_info[:2], "numpy": numpy_version(),
                "platform": sys.platform, "installed": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(staging, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    if os.path.exists(folder):
        if _active is not None and _active.folder == folder:
            deactivate()
        _delete(folder)
    os.replace(staging, folder)
    progress(0.97, f"installed into {folder}")
    return manifest


# --------------------------------------------------------------------------- activation

@dataclass
class Activation:
    folder: str
    manifest: dict
    path_added: bool = False
    env_before: dict = field(default_factory=dict)
    preloaded: list = field(default_factory=list)
    dll_dirs: list = field(default_factory=list)
    error: str = None


_active = None


def active():
    """The current ``Activation`` (None when GPU support is not active)."""
    return _active


def _libraries(folder, manifest):
    """[(kind, path)] of the NVRTC (and, for CuPy 14, cudart) libraries to preload, and
    the folders holding DLLs (Windows)."""
    kinds = ["nvrtc"] + (["cudart"] if str(manifest.get("cupy_version", "")).startswith("14")
                         else [])
    found = []
    for kind in kinds:
        if os.name == "nt":
            pattern = {"nvrtc": "nvrtc64_*.dll", "cudart": "cudart64_*.dll"}[kind]
        else:
            pattern = {"nvrtc": "libnvrtc.so.*", "cudart": "libcudart.so.*"}[kind]
        hits = sorted(p for p in glob.glob(os.path.join(folder, "nvidia", "**", pattern),
                                           recursive=True)
                      if "builtins" not in os.path.basename(p) and ".alt." not in p)
        if hits:
            found.append((kind, hits[0]))
    return found


def _header_root(folder):
    """The folder whose ``include`` has cuda_runtime.h (the runtime wheel's root)."""
    for inc in sorted(glob.glob(os.path.join(folder, "nvidia", "*", "include",
                                             "cuda_runtime.h"))):
        return os.path.dirname(os.path.dirname(inc))
    return None


def activate(folder):
    """Make the CuPy installed in ``folder`` importable: ``sys.path``, the NVRTC (and
    cudart) libraries preloaded, Windows DLL folders, and for CuPy 14 ``CUDA_PATH``. Run
    it before anything imports cupy. Returns the ``Activation`` (``error`` set when it
    could not be done: another CuPy already imported, Blender's Python or NumPy changed
    since the install), or None when nothing is installed. Idempotent."""
    global _active
    folder = os.path.abspath(folder)
    _sweep(folder)
    if _active is not None:
        if _active.folder == folder and _active.error is None:
            return _active
        deactivate()
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    act = Activation(folder, manifest)
    _active = act
    here = "%d.%d" % sys.version_info[:2]
    np_now = numpy_version()
    if manifest.get("python") != here:
        act.error = (f"GPU support was installed for Python {manifest.get('python')}, this "
                     f"Blender runs {here}: remove and install it again")
        return act
    if np_now and manifest.get("numpy") and (np_now.split(".")[0]
                                             != str(manifest["numpy"]).split(".")[0]):
        act.error = (f"GPU support was installed for NumPy {manifest['numpy']}, this Blender "
                     f"has {np_now}: remove and install it again")
        return act
    cupy = sys.modules.get("cupy")
    if cupy is not None and not os.path.abspath(getattr(cupy, "__file__", "") or "").startswith(
            folder + os.sep):
        act.error = (f"another CuPy is already imported ({getattr(cupy, '__file__', '?')}); "
                     "restart Blender to use the installed GPU support")
        return act
    if folder not in sys.path:
        sys.path.insert(0, folder)
        act.path_added = True
    importlib.invalidate_caches()
    if str(manifest.get("cupy_version", "")).startswith("14"):
        root = _header_root(folder)
        if root is not None:
            act.env_before["CUDA_PATH"] = os.environ.get("CUDA_PATH")
            os.environ["CUDA_PATH"] = root
    libs = _libraries(folder, manifest)
    if os.name == "nt":
        for d in sorted({os.path.dirname(p) for _, p in libs}):
            try:
                act.dll_dirs.append(os.add_dll_directory(d))
            except OSError:
                pass
    for kind, path in libs:
        try:
            mode = getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 0)
            act.preloaded.append((path, ctypes.CDLL(path, mode=mode)))
        except OSError as exc:
            act.error = (f"cannot load {os.path.basename(path)} from {folder} ({exc}): "
                         "remove and install GPU support again")
            break
    if not any(kind == "nvrtc" for kind, _ in libs):
        act.error = f"no NVRTC library in {folder}: remove and install GPU support again"
    if act.error:
        _undo(act)     # an unusable folder stays off sys.path; act keeps the error
    return act


def deactivate():
    """Undo ``activate`` as far as a running process allows (sys.path, CUDA_PATH, DLL
    folders; loaded libraries and an imported CuPy stay until Blender restarts). Returns
    a note for the user, or None."""
    global _active
    act, _active = _active, None
    if act is None:
        return None
    _undo(act)
    if "cupy" in sys.modules:
        return "CuPy stays loaded until Blender restarts"
    return None


def _undo(act):
    if act.path_added:
        while act.folder in sys.path:
            sys.path.remove(act.folder)
    for key, value in act.env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for handle in act.dll_dirs:
        try:
            handle.close()
        except OSError:
            pass
    act.path_added, act.env_before, act.dll_dirs = False, {}, []
    importlib.invalidate_caches()


def _sweep(folder):
    """Delete what an earlier removal could not (files in use on Windows) and a staging
    folder left by a crash."""
    for old in glob.glob(glob.escape(folder) + ".removed-*") + [folder + ".partial"]:
        shutil.rmtree(old, ignore_errors=True)


def remove(folder):
    """Remove GPU support: deactivate it and delete ``folder`` (renamed aside, deleted at
    the next start, where Windows keeps its DLLs open). Returns a note, or None."""
    folder = os.path.abspath(folder)
    note = deactivate() if _active is not None and _active.folder == folder else None
    shutil.rmtree(folder + ".partial", ignore_errors=True)
    if os.path.exists(folder) and not _delete(folder):
        note = ((note + "; ") if note else "") + "some files are deleted at the next start"
    return note


def _delete(folder):
    """rmtree ``folder``; where files are in use (Windows DLLs), rename it aside for
    ``_sweep`` at the next start. True when it is all gone now."""
    try:
        shutil.rmtree(folder)
        return True
    except OSError:
        aside = f"{folder}.removed-{int(time.time() * 1000)}"
        try:
            os.replace(folder, aside)
        except OSError as exc:
            raise GpuSupportError(f"cannot delete {folder} ({exc}): restart Blender and "
                                  "remove it again") from exc
        shutil.rmtree(aside, ignore_errors=True)
        return not os.path.exists(aside)


# --------------------------------------------------------------------------- probe

_background_probe = []      # the thread probing for a panel, while it runs


def device_info(refresh=False, wait=True):
    """``{"cupy": version or None, "gpu": name or None, "error": text or None}`` for
    the panel, from the core's GPU probe (``cupy_core.device.gpu_status``: run once per
    process, it imports CuPy, compiles and launches a kernel, a second or more;
    ``refresh`` runs it again). ``wait=False`` (a panel's draw): None until the probe
    has run, which it then does in a background thread, so that the first draw does
    not freeze the window (``probing()`` says whether it still runs)."""
    from cupy_core.device import gpu_status
    status = gpu_status(refresh=refresh, wait=wait)
    if status is None:
        if not probing():
            thread = threading.Thread(target=gpu_status, name="cupy_noise GPU probe",
                                      daemon=True)
            _background_probe[:] = [thread]
            thread.start()
        return None
    return {"cupy": status.cupy_version, "gpu": status.name if status.ok else None,
            "error": None if status.ok else f"{status.reason}; {status.advice}"}


def probing():
    """True while a background probe started by ``device_info(wait=False)`` runs."""
    return bool(_background_probe) and _background_probe[0].is_alive()


def probe():
    """``cupy_core.device.gpu_status(refresh=True)``: compiles and launches a kernel."""
    from cupy_core.device import gpu_status
    return gpu_status(refresh=True)


def install_and_probe(folder, wheels=None, index_url=None, progress=None, cancelled=None,
                      numpy_ver=None, driver=None, chosen=None, run_probe=probe):
    """Choose the plan, install, activate, probe. Returns (manifest, Activation, status);
    raises ``GpuSupportError`` for what stops it before the probe."""
    if chosen is None:
        chosen = choose_plan(numpy_ver or numpy_version(),
                             driver if driver is not None else driver_cuda_version())
    manifest = install(folder, chosen, wheels=wheels, index_url=index_url,
                       progress=progress, cancelled=cancelled)
    act = activate(folder)
    if act is not None and act.error:
        return manifest, act, None
    if progress:
        progress(0.98, "probing the GPU (compiling and launching a kernel)")
    status = run_probe() if run_probe is not None else None
    if progress:
        progress(1.0, status.summary() if status is not None else "installed")
    return manifest, act, status
