"""Loading the ``.cu`` files beside this module as CuPy RawModules, compiled once.

``#include "x"`` lines are inlined here rather than passed to NVRTC as include paths,
so CuPy's source-keyed kernel cache sees every change to a header.
"""
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# --fmad=false: no fused multiply-adds, so double arithmetic rounds as NumPy does.
OPTIONS = ("-std=c++17", "--fmad=false")
THREADS = 256
_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.M)
_modules = {}


def source(name, _seen=None):
    """The text of ``name`` with its local includes inlined (each once)."""
    seen = set() if _seen is None else _seen
    if name in seen:
        return ""
    seen.add(name)
    with open(os.path.join(HERE, name)) as f:
        text = f.read()
    return _INCLUDE.sub(lambda m: source(m.group(1), seen), text)


def module(name):
    if name not in _modules:
        import cupy
        _modules[name] = cupy.RawModule(code=source(name), options=OPTIONS)
    return _modules[name]


def launch(name, kernel, n, args):
    """Run ``kernel`` of ``name`` with one thread per item, ``n`` items."""
    if n == 0:
        return
    blocks = (int(n) + THREADS - 1) // THREADS
    module(name).get_function(kernel)((blocks,), (THREADS,), args)


def i64(v):
    return np.int64(v)


def u32(v):
    return np.uint32(int(v) & 0xFFFFFFFF)


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "CPU only"
        return False
