"""Memory is estimated before it is spent (issue 17): a bake's peak memory per source,
what is free, and a refusal in the user's terms before the first frame.

The estimates are models fitted to measured peaks of the NumPy path (tracemalloc, the
arrays NumPy allocates; ``tests/bake/test_faults.py`` checks them against measured peaks):

* 2-D frames, chained (flows, geometry): 16 MB + 72 bytes per noise value (H*W*C) +
  280 bytes per pixel (white noise in float64, the warp's pieces, the positions);
* surface: 8 MB + the larger of the texture's white noise (60 bytes per texture
  value) and the texture kept plus one frame's transport (4 bytes per texture value,
  24 per noise value, 700 per pixel);
* volumes: 16 MB + 72 bytes per noise value (D*H*W*C) + the 3-D warp's pieces: grid
  9000 bytes per voxel for the first 32768 voxels (its chunks) and 1500 beyond;
  particle 500 bytes per voxel and 110 per value;
* a target's latents (all latent frames in memory while its files are written):
  12 bytes per latent value.

Measured peaks are between 1/2.5 of the estimate and the estimate for frames of
128x128 pixels and more. On the GPU the same model is the device memory (not measured
here: no GPU in CI) and the host keeps 16 MB + 12 bytes per value + 48 per pixel.
Sizes are in binary units: 1 K = 1024 bytes, 1 G = 1024^3 (printed "GB").
"""
import dataclasses
import os
import re

__all__ = ["MemoryEstimate", "MemoryLimitError", "estimate_bake_memory", "estimate_for_bake",
           "available_memory", "check_memory", "parse_size", "format_size"]

MB = 1 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryLimitError(ValueError):
    """A bake would need more memory than is free or allowed; the message says how
    much, for what, and what to lower. A ValueError: the command line exits with 2."""


@dataclasses.dataclass
class MemoryEstimate:
    host: int            # bytes of host (CPU) memory at the peak
    device: int          # bytes of GPU memory at the peak (0 on the CPU)
    what: str            # "frames of 1920x1080 with 4 channels"
    hint: str            # what to lower: "lower the channels (--channels)"
    gpu: bool = False

    @property
    def peak(self):
        """The peak on the device that computes (GPU memory on the GPU)."""
        return self.device if self.gpu else self.host

    def as_json(self):
        return {"host_bytes": int(self.host), "device_bytes": int(self.device)}


def parse_size(text):
    """Bytes from ``"8G"``, ``"512M"``, ``"1.5g"``, ``"100000"``, ``"2GiB"`` (binary
    units); a ValueError naming the text otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
        if m is None:
            raise ValueError(f"memory size {text!r}: give bytes with an optional K, M, G "
                             "or T suffix (8G, 512M)")
        value, unit = float(m.group(1)), m.group(2).lower()
    n = int(value * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"memory size {text!r} must be more than 0 bytes")
    return n


def format_size(n):
    n = float(n)
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v >= 10 else f"{v:.1f} {unit}"
    return f"{int(n)} bytes"


def _size_text(shape):
    if len(shape) == 2:
        return f"{shape[1]}x{shape[0]}"          # width x height, as renders are named
    return "x".join(str(n) for n in shape)


def estimate_bake_memory(shape, channels, *, source="flow", method="grid", gpu=False,
                         texture_size=None, tiles=1, latent_values=0):
    """The peak memory of a bake (``MemoryEstimate``): ``shape`` (H, W) or (D, H, W),
    ``channels``, ``source`` "flow" (chained 2-D frames: flows, geometry, the add-on's
    vector pass), "surface" (needs ``texture_size``, ``tiles``) or "volume",
    ``method``, ``gpu``; ``latent_values``: values of a target's latents (F*h*w*C)."""
    shape = tuple(int(n) for n in shape)
    C = int(channels)
    cells = 1
    for n in shape:
        cells *= n
    values = cells * C
    if source == "volume" or len(shape) == 3:
        if method == "particle":
            work = 16 * MB + 110 * values + 500 * cells
        else:
            work = (16 * MB + 72 * values + 9000 * min(cells, 32768)
                    + 1500 * max(cells - 32768, 0))
        what = f"volumes of {_size_text(shape)} voxels with {C} channels"
        size_hint = "the domain resolution"
    elif source == "surface":
        tex = int(texture_size or 0) ** 2 * int(tiles) * C
        work = 8 * MB + max(60 * tex, 4 * tex + 24 * values + 700 * cells)
        what = (f"frames of {_size_text(shape)} with {C} channels and a "
                f"{int(texture_size or 0)}x{int(texture_size or 0)} texture")
        size_hint = ("the texture size (--texture-size)" if 60 * tex > 24 * values + 700 * cells
                     else "the resolution")
    else:
        work = 16 * MB + 72 * values + 280 * cells
        what = f"frames of {_size_text(shape)} with {C} channels"
        size_hint = "the resolution"
    work += 12 * int(latent_values)
    hint = ("lower the channels (--channels)" if C > 1 and 72 * values > work / 2
            else f"lower {size_hint}")
    if gpu:
        host = 16 * MB + 12 * values + 48 * cells + 12 * int(latent_values)
        return MemoryEstimate(host=int(host), device=int(work), what=what, hint=hint, gpu=True)
    return MemoryEstimate(host=int(work), device=0, what=what, hint=hint)


def estimate_for_bake(noise_shape, params, xp=None, latent_values=0):
    """The estimate of a bake from what the frame loop knows: the noise shape
    ``(..., C)``, its recorded ``params`` (method, ``kind``, ``texture_size``) and the
    array module."""
    gpu = xp is not None and getattr(xp, "__name__", "numpy") == "cupy"
    shape, C = tuple(noise_shape[:-1]), int(noise_shape[-1])
    kind = params.get("kind")
    source = ("volume" if len(shape) == 3 else "surface" if kind == "surface" else "flow")
    return estimate_bake_memory(shape, C, source=source, method=params.get("method", "grid"),
                                gpu=gpu, texture_size=params.get("texture_size"),
                                tiles=params.get("tiles", 1) or 1,
                                latent_values=latent_values)


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available():
    """What a cgroup (v2, then v1) memory limit leaves, or None without one."""
    for limit_path, used_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as f:
                limit = f.read().strip()
            with open(used_path) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - used, 0)
    return None


def _sysconf_available():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _windows_available():
    try:
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong),
                        ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong),
                        ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]
        s = Status()
        s.dwLength = ctypes.sizeof(Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(s)):
            return int(s.ullAvailPhys)
    except Exception:
        pass
    return None


def available_memory(gpu=False):
    """Bytes free now: host memory (``/proc/meminfo`` MemAvailable, bounded by a cgroup
    limit; else ``sysconf``, else Windows' GlobalMemoryStatusEx), or with ``gpu`` the
    current CUDA device's free memory plus what CuPy's pool holds unused. None where
    it cannot be told (then nothing is refused for it)."""
    if gpu:
        try:
            import cupy
            free = int(cupy.cuda.runtime.memGetInfo()[0])
            return free + int(cupy.get_default_memory_pool().free_bytes())
        except Exception:
            return None
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if found:
        return min(found)
    value = _sysconf_available()
    if value is None and os.name == "nt":
        value = _windows_available()
    return value


def check_memory(estimate, max_memory=None, *, available=None):
    """Refuse (``MemoryLimitError``) when ``estimate`` exceeds ``max_memory`` (bytes or
    "8G"; the host memory on the CPU, the GPU's on the GPU) or the memory free now
    (``available``: bytes, or None to read it). Returns the estimate."""
    peak = estimate.peak
    where = "GPU memory" if estimate.gpu else ""
    if max_memory is not None:
        limit = parse_size(max_memory)
        if peak > limit:
            raise MemoryLimitError(
                f"{estimate.what} need about {format_size(peak)}{' of ' + where if where else ''}"
                f"; --max-memory allows {format_size(limit)}; {estimate.hint}, or raise "
                "--max-memory")
    free = available_memory(estimate.gpu) if available is None else available
    if free is not None and peak > free:
        raise MemoryLimitError(
            f"{estimate.what} need about {format_size(peak)}"
            f"{' of ' + where if where else ''}; {format_size(free)} "
            f"{'is' if free < 2 else 'are'} free; {estimate.hint}")
    if estimate.gpu:
        host_free = available_memory(False)
        if host_free is not None and estimate.host > host_free:
            raise MemoryLimitError(
                f"{estimate.what} need about {format_size(estimate.host)} of host memory "
                f"beside the GPU's; {format_size(host_free)} are free; {estimate.hint}")
    return estimate
