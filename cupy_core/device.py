"""Whether the GPU path can run here, found out once per process.

Seeing a CUDA device is not enough: CuPy compiles the kernels with NVRTC at the first
launch, which needs the NVRTC library (and, for CuPy 13, the CUDA runtime headers) of
CuPy's CUDA major version, and a driver new enough for it. The probe therefore does
what a bake does first: it compiles ``white.cu``, launches it on a few cells and
compares the bits with the NumPy twin. ``device="auto"`` uses the GPU only when the
probe passed, and otherwise warns once, naming the cause and what to install;
``device="gpu"`` raises ``GpuUnavailableError`` with the same text.
"""
import threading
import warnings
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "gpu")

# What to install, by what failed.
_ADVICE_CUPY = ("install CuPy for your CUDA driver: 'pip install cupy-cuda12x==13.6.0' "
                "with NumPy 1.x (Blender), or 'pip install cupy-cuda12x' / "
                "'cupy-cuda13x' (CuPy 14, NumPy 2); in Blender, use Preferences > "
                "Add-ons > Warped Noise > Install GPU support")
_ADVICE_DRIVER = ("install or update the NVIDIA driver (CUDA 12 needs driver 525 or newer, "
                  "CUDA 13 needs 580 or newer)")
_ADVICE_NVRTC = ("CuPy compiles its kernels with NVRTC: install a CUDA Toolkit of CuPy's "
                 "CUDA major version, or the wheels 'pip install nvidia-cuda-nvrtc-cu12 "
                 "nvidia-cuda-runtime-cu12' (CUDA 12; in Blender, Install GPU support "
                 "does this)")
_ADVICE_MEMORY = "free GPU memory (close other programs using the GPU) or use the CPU"


@dataclass(frozen=True)
class GpuStatus:
    """What the probe found. ``ok``: the GPU path runs and gives the CPU's bits."""
    ok: bool
    name: str = None
    cupy_version: str = None
    cuda_version: str = None      # the CUDA runtime CuPy was built for, "12.8"
    driver_version: str = None    # the newest CUDA the driver supports, "13.0"
    reason: str = None
    advice: str = None

    def summary(self):
        if self.ok:
            return (f"GPU: {self.name} (CuPy {self.cupy_version}, CUDA {self.cuda_version}, "
                    f"driver for CUDA {self.driver_version})")
        return f"GPU unavailable: {self.reason}; {self.advice}"


class GpuUnavailableError(ValueError):
    """``device="gpu"`` where the GPU path cannot run (a ValueError: bad input, exit 2
    on the command lines)."""


_status = None
_warned = False
_probing = threading.Lock()     # one probe at a time (a UI may probe in the background)


def _version(v):
    """CUDA's integer version (12080) as "12.8"."""
    return f"{v // 1000}.{v % 1000 // 10}" if isinstance(v, int) and v > 0 else None


def _failure(stage, exc, **found):
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    low = text.lower()
    if stage == "import":
        reason, advice = f"CuPy is not installed or does not import ({text})", _ADVICE_CUPY
    elif isinstance(exc, MemoryError) or "out of memory" in low or "outofmemory" in low:
        reason, advice = f"no GPU memory free ({text})", _ADVICE_MEMORY
    elif "nvrtc" in low or "compile" in low or ".h" in low and "no such file" in low:
        reason, advice = f"the kernels cannot be compiled ({text})", _ADVICE_NVRTC
    elif stage == "device" or "driver" in low or "libcuda" in low:
        reason, advice = f"no usable NVIDIA driver or device ({text})", _ADVICE_DRIVER
    else:
        reason, advice = f"the probe kernel failed ({text})", _ADVICE_NVRTC
    return GpuStatus(False, reason=reason, advice=advice, **found)


def _probe():
    import numpy as np
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken install raising anything
        return _failure("import", exc)
    found = {"cupy_version": getattr(cupy, "__version__", None)}
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
        if count < 1:
            return GpuStatus(False, reason="CuPy sees no CUDA device",
                             advice=_ADVICE_DRIVER, **found)
        props = runtime.getDeviceProperties(0)
        name = props.get("name", b"CUDA device 0")
        found["name"] = name.decode() if isinstance(name, bytes) else str(name)
        found["cuda_version"] = _version(runtime.runtimeGetVersion())
        found["driver_version"] = _version(runtime.driverGetVersion())
    except Exception as exc:  # CUDARuntimeError: no driver, driver too old
        return _failure("device", exc, **found)
    from .methods.white import white_noise
    try:
        got = white_noise((4, 8), 4, seed=1, frame=2, xp=cupy).get()
    except Exception as exc:  # NVRTC missing, headers missing, launch or memory error
        return _failure("compile", exc, **found)
    if not np.array_equal(got, white_noise((4, 8), 4, seed=1, frame=2)):
        return GpuStatus(False, reason="the GPU's noise differs from the CPU's for the same "
                                       "seed (a compiler that fuses multiply-adds?)",
                         advice="report this with the output of 'python build.py gpu-check'",
                         **found)
    return GpuStatus(True, **found)


def gpu_status(refresh=False, wait=True):
    """The probe's ``GpuStatus``, run once per process (``refresh=True`` runs it again,
    after installing CuPy, say). ``wait=False``: the status if the probe has run, else
    None at once (it may be running in another thread)."""
    global _status
    if not wait:
        return None if refresh else _status
    with _probing:
        if _status is None or refresh:
            _status = _probe()
        return _status


def use_gpu(device):
    """True to run on the GPU for ``device`` ("auto", "cpu" or "gpu"). "gpu" raises
    ``GpuUnavailableError`` when the probe failed; "auto" warns once per process and
    runs on the CPU."""
    global _warned
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return False
    status = gpu_status()
    if status.ok:
        return True
    if device == "gpu":
        raise GpuUnavailableError(f"device 'gpu' asked for, but {status.reason}; "
                                  f"{status.advice}")
    if not _warned and status.cupy_version is not None:
        # No warning where CuPy is simply absent: the CPU is then the plain choice.
        warnings.warn(f"running on the CPU: {status.summary()}", RuntimeWarning, stacklevel=2)
        _warned = True
    return False


def gpu_available():
    """True when the GPU path runs here (the probe passed)."""
    return gpu_status().ok


def array_module(device):
    """``numpy`` or ``cupy`` for ``device`` (see ``use_gpu``)."""
    if use_gpu(device):
        import cupy
        return cupy
    import numpy
    return numpy
