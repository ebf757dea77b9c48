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
# Work per launch, in item-channels times a kernel's relative cost (``launch``'s
# ``cost``): small enough that one launch stays far below the ~2 s after which a
# display GPU's watchdog kills it (Windows TDR), big enough to fill an H100.
LAUNCH_WORK = 1 << 24
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


def launch(name, kernel, n, args, *, cost=1):
    """Run ``kernel`` of ``name`` over ``n`` items, one thread per item, in launches of
    at most ``LAUNCH_WORK // cost`` items. Every kernel takes ``(start, n)`` before
    ``args`` (launch.cuh), so the split changes no result."""
    n = int(n)
    if n <= 0:
        return
    per = max(THREADS, LAUNCH_WORK // max(int(cost), 1) // THREADS * THREADS)
    function = module(name).get_function(kernel)
    total = np.int64(n)
    for start in range(0, n, per):
        count = min(per, n - start)
        function(((count + THREADS - 1) // THREADS,), (THREADS,),
                 (np.int64(start), total) + tuple(args))


def struct(fields, values):
    """A C struct argument: a size-1 NumPy structured array, which CuPy 13 and 14 both
    pass by value (CuPy 13 rejects the structured scalar ``array[0]``).
    ``fields``: ``[(name, dtype), ...]`` in the struct's order; ``values``: a tuple."""
    return np.array([tuple(values)], dtype=np.dtype(list(fields)))


def i64(v):
    return np.int64(v)


def u32(v):
    return np.uint32(int(v) & 0xFFFFFFFF)
