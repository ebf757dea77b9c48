"""Bake outputs (docs/DESIGN.md 9): atomic writers, PNG previews, latents.npy, bake.json.

Every file is written to a temporary name in its final folder and then renamed with
``os.replace``, which is atomic on one file system: a reader, a crash or Ctrl-C sees
either the old file or the new one, never half of one. Temporary names start with a
dot and end in ``.tmp`` (``.noise_0003.npy.1a2b3c.tmp``) so that no reader mistakes
them for outputs; ``remove_stale_temporaries`` clears those a killed process left.
"""
import contextlib
import datetime
import errno
import json
import os
import platform
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "OutputError", "check_output_dir", "save_npy_atomic", "write_json_atomic",
    "write_png_atomic", "encode_png", "noise_to_preview", "frame_name",
    "parse_frame_name", "assemble_latents", "bake_json", "remove_stale_temporaries",
    "LATENTS_NAME", "BAKE_JSON_NAME", "DiskFullError", "atomic_path", "reserve",
]

LATENTS_NAME = "latents.npy"
BAKE_JSON_NAME = "bake.json"
# The previews of a bake (cupy_core.preview writes them, the loop removes them with
# the bake they belong to).
GIF_NAME = "comparison.gif"
SLICES_NAME = "space_time.png"
FLICKER_NAME = "flicker.json"
BAKE_FORMAT = "cupy_core.bake"
BAKE_FORMAT_VERSION = 1

_TEMP_SUFFIX = ".tmp"


class OutputError(ValueError):
    """An output folder or file cannot be written, or holds something we must not mix
    with; the message names the path. A ValueError so that callers treating bad input
    uniformly (the command line exits with code 2) catch it too."""


# --------------------------------------------------------------------------- folders

def check_output_dir(path, *, create=True):
    """Make sure ``path`` is a folder we can write to (creating it and its parents if
    ``create``), and return it as a ``Path``. Raises ``OutputError`` naming it if not.

    Writability is tested by creating and deleting a temporary file, because
    ``os.access`` says yes to root even on read-only mounts.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} exists and is not a folder")
    if not folder.exists():
        if not create:
            raise OutputError(f"output folder {str(folder)!r} does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {str(folder)!r}: "
                              f"{exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=_TEMP_SUFFIX)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"output folder {str(folder)!r} is not writable: "
                          f"{exc.strerror or exc}") from None
    return folder


def remove_stale_temporaries(folder, prefixes=("noise_", "preview_", "latents", "bake",
                                              "model_latents", "noises", "comparison",
                                              "space_time", "flicker")):
    """Delete temporary files that an atomic write killed mid-way left in ``folder``:
    only names this module makes (``.NAME.XXXXXXXX.tmp``, mkstemp's eight random
    characters) for outputs whose name starts with one of ``prefixes``.
    Returns how many."""
    alternatives = "|".join(re.escape(p) for p in prefixes)
    pattern = re.compile(r"^\.(?:" + alternatives + r").*\.[a-z0-9_]{8}"
                         + re.escape(_TEMP_SUFFIX) + r"$")
    removed = 0
    for entry in Path(folder).iterdir():
        if entry.is_file() and pattern.match(entry.name):
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass  # someone else's, or already gone: harmless
    return removed


# --------------------------------------------------------------------------- atomic writes

# Fault injection (tests/bake/test_faults.py): when set, called as ``_write_hook("before",
# path)`` when an atomic write starts and ``_write_hook("after", path)`` once the file is
# in place. None in normal use.
_write_hook = None

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """No space left (or over quota) while writing ``path``: "disk full writing
    DIR/noise_0007.npy". An OSError: the command line exits with 1."""


def _disk_full(exc, path):
    return DiskFullError(exc.errno, f"disk full writing {path}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file name beside ``path`` for a writer that wants a name
    (OpenEXR, OpenVDB, memory maps); when the block ends the file is synced to disk and
    renamed onto ``path``. On any failure (Ctrl-C included) the temporary is removed
    and the old ``path``, if any, is untouched. A full disk is a ``DiskFullError``
    naming ``path``. Creating the temporary, the rename and the clean-up are not cut
    by a stop signal (``stop.deferred``): the stop is raised when they are done."""
    from .stop import deferred

    path = Path(path)
    folder = path.parent
    if _write_hook is not None:
        _write_hook("before", path)
    tmp, placed = None, False
    try:
        with deferred():
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + path.name + ".",
                                           suffix=_TEMP_SUFFIX)
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise _disk_full(exc, path) from None
                raise OutputError(f"cannot write in folder {str(folder)!r}: "
                                  f"{exc.strerror or exc}") from None
            os.close(fd)
        yield tmp
        with deferred():
            # fsync so that after a power cut the renamed file has its contents too.
            with open(tmp, "r+b") as f:
                os.fsync(f.fileno())
            # mkstemp makes the file 0600; an output is as readable as any file the
            # user makes (a render farm, another account, a ComfyUI server read it).
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
            placed = True
    except OSError as exc:
        _remove_temporary(tmp, placed)
        if exc.errno in _DISK_FULL and not isinstance(exc, DiskFullError):
            raise _disk_full(exc, path) from None
        raise
    except BaseException:
        _remove_temporary(tmp, placed)
        raise
    if _write_hook is not None:
        _write_hook("after", path)


def _remove_temporary(tmp, placed):
    from .stop import deferred

    if tmp is None or placed:
        return
    with deferred():
        try:
            os.remove(tmp)
        except OSError:
            pass


def reserve(path, size):
    """Allocate ``size`` bytes for the file ``path`` now (``posix_fallocate``), so that
    a full disk is an error here and not a SIGBUS when a memory map of it is filled."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, int(size))
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise
            # EOPNOTSUPP, EINVAL: a file system without it; the map is filled as before


def _umask():
    """The process's umask, without changing it where the system tells (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)   # elsewhere: read by setting it, and put it back at once
    os.umask(mask)
    return mask


def _atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it onto
    ``path`` (``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def save_npy_atomic(path, array):
    """Write ``array`` as a ``.npy`` file at ``path`` atomically (no pickles)."""
    arr = to_numpy(array)
    if arr.dtype.hasobject:
        raise ValueError(f"cannot save an object array to {str(path)!r}")
    return _atomic_write(path, lambda f: np.lib.format.write_array(f, arr,
                                                                   allow_pickle=False))


def _json_default(obj):
    # NumPy scalars and arrays show up in parameters; JSON wants plain Python.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# A JSON list of numbers (or nulls) spread over lines by indent=2.
_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+|null)(?:,\s*(?:-?[\d.eE+-]+|null))*)\s*\]")


def json_roundtrip(obj):
    """What ``obj`` reads back as from a JSON file, for comparing parameters."""
    return json.loads(json.dumps(obj, default=_json_default))


def write_json_atomic(path, obj):
    """Write ``obj`` as indented, strict JSON (no NaN) at ``path`` atomically; lists of
    numbers (shapes) stay on one line."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# --------------------------------------------------------------------------- PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by number of channels: grey, grey+alpha, RGB, RGBA.
_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def _png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode_png(image):
    """PNG file bytes for a uint8 image ``(H, W)``, ``(H, W, 1|2|3|4)``.

    8 bits per sample, no interlace, filter type 0 on every row: simple and valid;
    the previews are noise, which no PNG filter compresses anyway.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"PNG image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in _PNG_COLOUR_TYPE:
        raise ValueError(f"PNG image must be (H, W) or (H, W, 1|2|3|4), got shape {image.shape}")
    height, width, channels = img.shape
    if height < 1 or width < 1:
        raise ValueError(f"PNG image must not be empty, got shape {image.shape}")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "None"
    rows[:, 1:] = img.reshape(height, width * channels)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _png_chunk(b"IEND", b""))


def write_png_atomic(path, image):
    """Write a uint8 image ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (1 and 2 channels
    also work) as a PNG file at ``path`` atomically."""
    data = encode_png(image)
    return _atomic_write(path, lambda f: f.write(data))


def noise_to_preview(noise):
    """Colour picture of a noise frame: uint8 ``(H, W, 3)``.

    Channels 0, 1, 2 become red, green, blue (a frame with fewer than three channels
    shows channel 0 in grey). Each value x, nominally N(0, 1), maps to
    ``clip(round(128 + 42.5 * x), 0, 255)``: +-3 standard deviations span the range,
    so 0.3 % of the values clip. NaN shows as mid-grey 128.
    """
    arr = to_numpy(noise)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] < 1:
        raise ValueError(f"noise must be (H, W) or (H, W, C) with C >= 1, got shape {arr.shape}")
    rgb = arr[:, :, :3] if arr.shape[2] >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    rgb = np.nan_to_num(rgb.astype(np.float64), nan=0.0, posinf=1e9, neginf=-1e9)
    return np.clip(np.rint(128.0 + 42.5 * rgb), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- names

def frame_name(prefix, frame, ext):
    """File name of one frame: ``frame_name("noise", 7, "npy") == "noise_0007.npy"``.

    The number is Python's ``{:04d}``: at least four characters, zero-padded, more
    digits when needed (``noise_12345.npy``). Blender frames can be negative; the
    sign counts in the four (``noise_-001.npy``, ``noise_-1234.npy``), so names stay
    unique and ``parse_frame_name`` reads them back.
    """
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ValueError(f"frame number must be an integer, got {frame!r}")
    ext = str(ext).lstrip(".")
    return f"{prefix}_{int(frame):04d}.{ext}"


def parse_frame_name(prefix, name, ext):
    """The frame number in a name made by ``frame_name``, or None if it is not one."""
    ext = str(ext).lstrip(".")
    m = re.fullmatch(re.escape(prefix) + r"_(-?\d+)\." + re.escape(ext), name)
    if m is None:
        return None
    frame = int(m.group(1))
    return frame if frame_name(prefix, frame, ext) == name else None


# --------------------------------------------------------------------------- latents

def assemble_latents(out_dir, frames, factor, *, prefix="noise", name=LATENTS_NAME):
    """Stack the frames ``noise_XXXX.npy`` of ``frames`` (frame numbers, in order) in
    ``out_dir`` into ``latents.npy``: ``(F, H // f, W // f, C)`` float32 (volumes:
    ``(F, D // f, H // f, W // f, C)``), each frame
    passed through ``cupy_core.downsample(noise, factor)`` (docs/DESIGN.md 7).

    The file is a memory map filled one frame at a time, so a long sequence never sits
    in memory at once, written under a temporary name and renamed when whole.
    Returns the path.
    """
    from .. import downsample  # the core; imported here so io works on its own

    out_dir = Path(out_dir)
    frames = [int(f) for f in frames]
    if not frames:
        raise ValueError("no frames to assemble into latents")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"latent factor must be an integer >= 1, got {factor!r}")

    def load(frame):
        path = out_dir / frame_name(prefix, frame, "npy")
        if not path.is_file():
            raise OutputError(f"cannot assemble latents: {str(path)!r} is missing")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.ndim not in (3, 4):
            raise OutputError(f"{str(path)!r} is not an (H, W, C) or (D, H, W, C) noise "
                              f"frame (shape {arr.shape})")
        return np.asarray(downsample(np.asarray(arr), factor), dtype=np.float32)

    first = load(frames[0])
    if min(first.shape[:-1]) < 1:
        raise ValueError(f"latent factor {factor} is larger than the frame")
    shape = (len(frames),) + first.shape
    target = out_dir / name
    with atomic_path(target) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        try:
            reserve(tmp, os.path.getsize(tmp))
            mm[0] = first
            for i, frame in enumerate(frames[1:], start=1):
                lat = load(frame)
                if lat.shape != first.shape:
                    raise OutputError(f"frame {frame} has latent shape {lat.shape}, "
                                      f"frame {frames[0]} has {first.shape}")
                mm[i] = lat
            mm.flush()
        finally:
            del mm  # closes the map before the rename
    return target


# --------------------------------------------------------------------------- bake.json

def bake_json(params, *, status, frames=None, extra=None):
    """The contents of ``bake.json``: the bake's ``params`` (a dict; its keys decide
    whether a later bake may resume this one), its ``status`` ("in progress" or
    "complete"), the frame numbers written so far (first, last, count), ``extra``
    descriptive fields, and the versions and time that made it."""
    from .. import __version__

    record = {"format": BAKE_FORMAT, "format_version": BAKE_FORMAT_VERSION,
              "status": status}
    record.update(params)
    if frames is not None:
        frames = [int(f) for f in frames]
        record["frames"] = ({"first": frames[0], "last": frames[-1], "count": len(frames)}
                            if frames else {"first": None, "last": None, "count": 0})
    if extra:
        record.update(extra)
    from ..methods.rng import GENERATOR_VERSION

    record["versions"] = {"cupy_core": __version__, "noise_generator": GENERATOR_VERSION,
                          "numpy": np.__version__, "python": platform.python_version()}
    record["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return record


# --------------------------------------------------------------------------- helpers

def to_numpy(array):
    """NumPy view of a NumPy or CuPy array (CuPy's ``.get()`` copies to the host)."""
    if not isinstance(array, np.ndarray) and hasattr(array, "get") and hasattr(array, "shape"):
        array = array.get()
    return np.asarray(array)
