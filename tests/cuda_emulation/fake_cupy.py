"""A stand-in ``cupy`` module whose arrays live in host memory and whose RawModules run
on the CPU through ``emulate.py``, so cupy_core's GPU path runs unchanged:

    with fake_cupy.installed() as cp:
        out = cupy_core.warp(cp.asarray(prior), cp.asarray(positions))   # GPU branch
        out.get()                                                        # NumPy array

* ``cp.ndarray`` subclasses ``numpy.ndarray`` and says it comes from module ``cupy``,
  which is what ``cupy_core.conventions.array_module`` dispatches on; ``.get()``
  returns a plain NumPy copy, as CuPy's does.
* Every NumPy function is reachable as ``cp.<name>``; array results come back as
  ``cp.ndarray``. ``cp.empty`` fills its memory with 0xFF bytes (NaN for floats), so a
  kernel that leaves an output element unwritten shows up; ``cp.empty`` and ``cp.zeros``
  surround each allocation with guard bytes, checked after every kernel launch that
  received the array, so an out-of-bounds write raises instead of corrupting memory.
* ``cp.RawModule`` is ``emulate.EmulatedModule`` with the checks for device arrays on
  and the kernel-argument rules of the CuPy version emulated (``installed(version=)``);
  ``cp.cuda.runtime`` answers for one device; ``installed(compile_error=...)`` makes
  every RawModule fail as CuPy does when NVRTC cannot work.

``installed()`` puts the module in ``sys.modules["cupy"]`` and empties
``cupy_core.methods.cuda._modules`` (its RawModule cache) for the duration, restoring both.
"""
import contextlib
import functools
import sys
import types
import weakref

import numpy as np

from . import emulate

GUARD = 64          # bytes before and after each allocation
GUARD_BYTE = 0xA5
POISON_BYTE = 0xFF  # what cp.empty's memory holds (NaN for floats, -1 for ints)


class ndarray(np.ndarray):
    """Host memory posing as device memory."""

    def get(self, stream=None, order="C", out=None):
        host = np.array(self.view(np.ndarray), order=order, copy=True)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        self[...] = arr

    @property
    def device(self):
        return _device

    def __repr__(self):
        return "fake_cupy." + repr(self.view(np.ndarray))


ndarray.__module__ = "cupy"
ndarray.__qualname__ = ndarray.__name__ = "ndarray"


class _Device:
    id = 0

    def synchronize(self):
        pass

    def __repr__(self):
        return "<CUDA Device 0 (emulated on the CPU)>"


_device = _Device()

# Guarded allocations: id(buffer) -> (weakref(buffer), start, nbytes). The buffer is a
# uint8 array with guard bytes around [start, start + nbytes), the user's array.
_guarded = {}


def _forget(key, _ref):
    _guarded.pop(key, None)


def _alloc(shape, dtype, fill):
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    # Room to align the user's data to 256 bytes, as cudaMalloc does.
    buf = np.empty(nbytes + 2 * GUARD + 256, np.uint8)
    start = GUARD + (-(buf.ctypes.data + GUARD)) % 256
    buf[:start] = GUARD_BYTE
    buf[start:start + nbytes] = fill
    buf[start + nbytes:] = GUARD_BYTE
    _guarded[id(buf)] = (weakref.ref(buf, functools.partial(_forget, id(buf))), start, nbytes)
    data = buf[start:start + nbytes].view(dtype).reshape(shape)
    return data.view(ndarray)


def _root(a):
    while isinstance(a, np.ndarray) and isinstance(a.base, np.ndarray):
        a = a.base
    return a


def check_guards(kernel=None, arrays=()):
    """Raise if a kernel wrote outside a guarded allocation it was given."""
    for a in arrays:
        root = _root(a)
        entry = _guarded.get(id(root))
        if entry is None or entry[0]() is not root:
            continue
        _, start, nbytes = entry
        if (root[:start] != GUARD_BYTE).any() or (root[start + nbytes:] != GUARD_BYTE).any():
            name = kernel.name if kernel is not None else "a kernel"
            raise emulate.EmulationError(f"{name} wrote outside an array it was given "
                                         f"(guard bytes of a {a.dtype} {a.shape} allocation changed)")


def _wrap_result(r):
    if isinstance(r, np.ndarray) and not isinstance(r, ndarray):
        return r.view(ndarray)
    if isinstance(r, tuple):
        return tuple(_wrap_result(x) for x in r)
    if isinstance(r, list):
        return [_wrap_result(x) for x in r]
    return r


def _wrap(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _wrap_result(fn(*args, **kwargs))
    return wrapper


def empty(shape, dtype=float, order="C"):
    if order not in ("C", None):
        raise NotImplementedError("fake cupy allocates C order only")
    return _alloc(shape, dtype, POISON_BYTE)


def zeros(shape, dtype=float, order="C"):
    if order not in ("C", None):
        raise NotImplementedError("fake cupy allocates C order only")
    return _alloc(shape, dtype, 0)


def empty_like(a, dtype=None):
    return empty(a.shape, a.dtype if dtype is None else dtype)


def zeros_like(a, dtype=None):
    return zeros(a.shape, a.dtype if dtype is None else dtype)


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype) and order is None:
        return a
    host = np.asarray(a, dtype=dtype, order=order)
    out = empty(host.shape, host.dtype)
    out[...] = host
    return out


array = asarray


def ascontiguousarray(a, dtype=None):
    if (isinstance(a, ndarray) and a.flags.c_contiguous
            and (dtype is None or np.dtype(dtype) == a.dtype)):
        return a
    host = np.ascontiguousarray(a, dtype=dtype)
    out = empty(host.shape, host.dtype)
    out[...] = host
    return out


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return _module


class CompileException(RuntimeError):
    """What CuPy raises when NVRTC fails (``cupy.cuda.compiler.CompileException``)."""


# What ``installed`` emulates: the CuPy version (its kernel-argument rules) and, when
# set, the error NVRTC gives (a CuPy whose compiler cannot work on this machine).
_config = {"version": "14.0.1", "compile_error": None}


def RawModule(code=None, path=None, options=(), **kwargs):
    if _config["compile_error"] is not None:
        # CuPy compiles when a kernel is first asked for; failing here is the same
        # moment for cupy_core, which asks right before the first launch.
        raise CompileException(_config["compile_error"])
    return emulate.EmulatedModule(code=code, path=path, options=options,
                                  device_array_type=ndarray, after_launch=check_guards,
                                  cupy_rules=_config["version"].split(".")[0])


def _make_module():
    mod = types.ModuleType("cupy", "Fake CuPy: host arrays, kernels emulated on the CPU "
                                   "(tests/cuda_emulation).")
    own = dict(ndarray=ndarray, empty=empty, zeros=zeros, empty_like=empty_like,
               zeros_like=zeros_like, asarray=asarray, array=array,
               ascontiguousarray=ascontiguousarray, asnumpy=asnumpy,
               get_array_module=get_array_module, RawModule=RawModule)
    mod.__dict__.update(own)
    mod.__fake__ = True
    mod.__version__ = _config["version"]
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Emulated CUDA device (CPU)",
                                       "totalGlobalMem": 1 << 30},
        runtimeGetVersion=lambda: 12080, driverGetVersion=lambda: 13000)
    compiler = types.SimpleNamespace(CompileException=CompileException)
    mod.cuda = types.SimpleNamespace(runtime=runtime, compiler=compiler,
                                     Device=lambda i=0: _device,
                                     get_current_stream=lambda: None)

    def __getattr__(name):
        attr = getattr(np, name)  # AttributeError for what NumPy lacks, as it should
        if callable(attr) and not isinstance(attr, (type, np.ufunc)):
            attr = _wrap(attr)
        setattr(mod, name, attr)
        return attr

    mod.__getattr__ = __getattr__
    return mod


_module = _make_module()


def module():
    return _module


@contextlib.contextmanager
def installed(version="14.0.1", compile_error=None):
    """Make ``import cupy`` give the fake module, emulating CuPy ``version`` (its
    kernel-argument rules: 13.x or 14.x) and, with ``compile_error``, a CuPy whose
    NVRTC fails with that message. cupy_core's RawModule cache and GPU probe are
    emptied for the duration and restored after, so that nothing emulated outlives the
    block (and nothing real is used inside it)."""
    from cupy_core import device
    from cupy_core.methods import cuda

    if version.split(".")[0] not in emulate.CUPY_RULES:
        raise ValueError(f"no argument rules for CuPy {version}")
    missing = object()
    saved_mod = sys.modules.get("cupy", missing)
    saved_cache = dict(cuda._modules)
    saved_probe = (device._status, device._warned)
    saved_config = dict(_config)
    _config.update(version=version, compile_error=compile_error)
    _module.__version__ = version
    sys.modules["cupy"] = _module
    cuda._modules.clear()
    device._status, device._warned = None, False
    try:
        yield _module
    finally:
        cuda._modules.clear()
        cuda._modules.update(saved_cache)
        device._status, device._warned = saved_probe
        _config.update(saved_config)
        _module.__version__ = _config["version"]
        if saved_mod is missing:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved_mod
