"""Run cupy_core's CUDA kernels on the CPU: compile a ``.cu`` file with g++ against
``shim.h`` and launch its ``extern "C" __global__`` kernels one thread at a time.

Why this is exact for cupy_core's kernels: each thread handles one item, no kernel
uses shared memory, ``__syncthreads`` or warp intrinsics, and the atomics only
accumulate (64-bit integer sums, which are associative). Running the threads in
sequence is then one of the schedules the GPU may pick, and every schedule gives the
same bits. What is *not* emulated: the GPU's own ``log``/``sin``/``cos`` (glibc's are
used; both are within an ulp or two of the true value), nvcc's choice of fused
multiply-adds (``cupy_core.methods.cuda.OPTIONS`` has ``--fmad=false``; here ``-ffp-contract=off``), and
memory-model effects of real concurrency.

The module objects mimic CuPy closely enough for ``cupy_core.methods.cuda`` to use them as
``cupy.RawModule``: ``EmulatedModule(code=..., options=...).get_function(name)`` returns
an ``EmulatedKernel`` called as ``kernel(grid, block, args)``. Arguments go through
two checks. First the argument rules of the CuPy version emulated (``cupy_rules``,
"13" or "14", from ``cupy/cuda/function.pyx``): what that CuPy refuses raises
``UnsupportedArgument`` (a TypeError, as there): CuPy 13 takes device arrays, None,
host arrays of size one (by value), the basic NumPy scalar types and Python numbers,
and refuses a structured scalar (``numpy.void``); CuPy 14 also takes any NumPy scalar
under 32 bytes. Then the kernel's signature, more strictly than CuPy does (it copies
the bytes and trusts them): a pointer parameter takes a C-contiguous device array of
the matching dtype (one of another type of the same size is accepted and recorded in
``module.reinterpretations``) or a null pointer; a scalar parameter a value of the
same size and kind; a struct parameter a structured value whose fields match the C
struct's names and offsets.

Use:  ``EmulatedModule(code=cupy_core.methods.cuda.source("grid2d.cu"))``.
"""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "shim.h")
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ("-std=c++17", "-x", "c++", "-O1", "-ffp-contract=off", "-fno-fast-math",
            "-fPIC", "-shared")
# CUPY_CORE_EMULATION_COUNT_FP64=1: compile with shim.h's counted double (EMU_COUNT_FP64),
# so that EmulatedKernel.work also counts float64 operations by kind (count_work.py).
if os.environ.get("CUPY_CORE_EMULATION_COUNT_FP64"):
    CXXFLAGS = CXXFLAGS + ("-DEMU_COUNT_FP64",)
CACHE_DIR = os.environ.get("CUPY_CORE_EMULATION_CACHE",
                           os.path.join(tempfile.gettempdir(), "cupy_core_cuda_emulation"))

_KERNEL = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^()]*\)\s+)?void\s+([A-Za-z_]\w*)\s*\(')
_STRUCT = re.compile(r'\bstruct\s+([A-Za-z_]\w*)\s*\{([^{}]*)\}\s*;')
_QUALIFIERS = ("const", "volatile", "__restrict__", "__restrict", "restrict")

# C scalar types -> NumPy dtypes (LP64, as on every CUDA host and device).
C_TYPES = {
    "bool": np.bool_,
    "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16,
    "int": np.int32, "unsigned int": np.uint32, "unsigned": np.uint32,
    "long": np.int64, "unsigned long": np.uint64,
    "long long": np.int64, "unsigned long long": np.uint64,
    "long long int": np.int64, "unsigned long long int": np.uint64,
    "int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16, "uint16_t": np.uint16,
    "int32_t": np.int32, "uint32_t": np.uint32, "int64_t": np.int64, "uint64_t": np.uint64,
    "size_t": np.uint64, "ptrdiff_t": np.int64,
    "float": np.float32, "double": np.float64,
}

_lock = threading.Lock()
# What shim.h's WORK_COUNT counts, in the order of its emu_work slots.
WORK_KINDS = ("philox", "normals", "geometry", "f64_add", "f64_mul", "f64_div", "f64_sqrt",
              "f64_cmp", "f64_cvt", "f64_other")


class EmulationError(RuntimeError):
    """The source cannot be emulated, or a launch does not match the kernel."""


class UnsupportedArgument(EmulationError, TypeError):
    """An argument the emulated CuPy version itself refuses (a TypeError there)."""


# The argument rules of the CuPy versions users have: "13" (13.6, what Blender's
# NumPy 1.26 allows) and "14" (NumPy 2).
CUPY_RULES = ("13", "14")
# The scalar types CuPy 13 passes as they are ('?bhilqBHILQefdFD').
CUPY13_SCALARS = frozenset(np.dtype(c).type for c in "?bhilqBHILQefdFD")


def compiler_available():
    return shutil.which(CXX) is not None


@functools.lru_cache(maxsize=None)
def _compiler_id():
    out = subprocess.run([CXX, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0] if out.stdout else CXX


# ----------------------------------------------------------------------------- parsing

def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _split_top(text, sep=","):
    """Split on ``sep`` outside (), <>, [] and {}."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _norm_type(t):
    t = re.sub(r"\s*\*\s*", "*", " ".join(t.split()))
    return t


class Param:
    """One kernel parameter: ``ctype`` as written, and how to check an argument."""

    def __init__(self, decl):
        decl = " ".join(decl.split())
        m = re.match(r"^(.*?[\s*&])([A-Za-z_]\w*)$", decl)
        if not m:
            raise EmulationError(f"cannot parse kernel parameter {decl!r}")
        self.ctype = _norm_type(m.group(1))
        self.name = m.group(2)
        if "&" in self.ctype or "[" in decl:
            raise EmulationError(f"unsupported kernel parameter {decl!r}")
        words = [w for w in re.split(r"(\*)|\s+", self.ctype) if w]
        self.is_pointer = "*" in words
        base = [w for w in words if w not in _QUALIFIERS and w != "*"]
        self.base = " ".join(base)
        self.pointer_depth = words.count("*")
        # Pointee of a pointer (only one level is checked), or the scalar's own type.
        self.dtype = C_TYPES.get(self.base) if self.pointer_depth <= 1 else None
        if self.base == "void":
            self.dtype = None
        self.is_struct = not self.is_pointer and self.base not in C_TYPES
        self.const_pointee = self.is_pointer and words[:words.index("*")].count("const") > 0

    def __repr__(self):
        return f"{self.ctype} {self.name}"


def parse_kernels(preprocessed):
    """``{name: [Param, ...]}`` for every ``extern "C" __global__ void`` kernel."""
    text = _strip_comments(preprocessed)
    kernels = {}
    for m in _KERNEL.finditer(text):
        depth, i = 1, m.end()
        while depth:
            if i >= len(text):
                raise EmulationError(f"unbalanced parameter list of kernel {m.group(1)}")
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        args = text[m.end():i - 1].strip()
        params = [] if args in ("", "void") else [Param(a) for a in _split_top(args)]
        if m.group(1) in kernels:
            raise EmulationError(f"kernel {m.group(1)} defined twice")
        kernels[m.group(1)] = params
    n_global = len(re.findall(r"\b__global__\b", text))
    if n_global != len(kernels):
        raise EmulationError(f"{n_global} __global__ functions but only {len(kernels)} "
                             f"extern \"C\" kernels parsed ({sorted(kernels)}); the emulator "
                             f"handles only 'extern \"C\" __global__ void name(...)'")
    return kernels


def parse_structs(preprocessed):
    """``{name: [(field, ctype), ...]}`` for plain ``struct N { T a, b; U c; };``."""
    out = {}
    for m in _STRUCT.finditer(_strip_comments(preprocessed)):
        fields, ok = [], True
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            dm = re.match(r"^([A-Za-z_][\w ]*?)\s+([A-Za-z_]\w*(?:\s*\[\s*\d+\s*\])?"
                          r"(?:\s*,\s*[A-Za-z_]\w*(?:\s*\[\s*\d+\s*\])?)*)$", decl)
            if not dm:
                ok = False
                break
            for name in dm.group(2).split(","):
                name = name.strip()
                base = name.split("[")[0].strip()
                fields.append((base, dm.group(1).strip()))
        if ok and fields:
            out[m.group(1)] = fields
    return out


# ----------------------------------------------------------------------------- building

def _preprocess(code):
    """Run the C preprocessor (no shim: __global__ etc. survive as tokens)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cu")
        with open(path, "w") as f:
            f.write(code)
        res = subprocess.run([CXX, "-std=c++17", "-x", "c++", "-E", "-P", path],
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise EmulationError(f"preprocessing failed:\n{res.stderr}")
    return res.stdout


def _launcher_code(kernels, structs):
    lines = [
        "",
        "// ---- generated by tests/cuda_emulation/emulate.py ----",
        "#include <cstring>",
        "template <class T> static inline T emu_arg(void* p) {",
        "    T v; std::memcpy((void*)&v, p, sizeof(T)); return v;",
        "}",
    ]
    for name, params in kernels.items():
        call = ", ".join(f"emu_arg<{p.ctype}>(args[{i}])" for i, p in enumerate(params))
        sizes = ", ".join(f"(long long)sizeof({p.ctype})" for p in params) or "0"
        lines += [
            f'extern "C" const long long emu_sizes_{name}[] = {{{sizes}}};',
            f'extern "C" void emu_launch_{name}(unsigned int gx, unsigned int gy, unsigned int gz,',
            f'                                  unsigned int bx, unsigned int by, unsigned int bz,',
            f'                                  void** args) {{',
            f'    (void)args;',
            f'    gridDim = dim3{{gx, gy, gz}}; blockDim = dim3{{bx, by, bz}};',
            f'    for (unsigned int z = 0; z < gz; ++z) for (unsigned int y = 0; y < gy; ++y)',
            f'    for (unsigned int x = 0; x < gx; ++x) {{',
            f'        blockIdx = dim3{{x, y, z}};',
            f'        for (unsigned int tz = 0; tz < bz; ++tz) for (unsigned int ty = 0; ty < by; ++ty)',
            f'        for (unsigned int tx = 0; tx < bx; ++tx) {{',
            f'            threadIdx = dim3{{tx, ty, tz}};',
            f'            {name}({call});',
            f'        }}',
            f'    }}',
            f'}}',
        ]
    for sname, fields in structs.items():
        vals = [f"(long long)sizeof({sname})", str(len(fields))]
        for fname, _ in fields:
            vals += [f"(long long)offsetof({sname}, {fname})",
                     f"(long long)sizeof((({sname}*)0)->{fname})"]
        lines.append(f'extern "C" const long long emu_layout_{sname}[] = {{{", ".join(vals)}}};')
    return "\n".join(lines) + "\n"


def build(code):
    """Compile ``code`` (a .cu text with local includes already inlined) and return
    ``(ctypes.CDLL, kernels, structs)``; the shared object is cached by content."""
    pre = _preprocess(code)
    kernels = parse_kernels(pre)
    structs = parse_structs(pre)
    used = {p.base for ps in kernels.values() for p in ps if p.is_struct}
    structs = {k: v for k, v in structs.items() if k in used}
    with open(SHIM) as f:
        shim = f.read()
    unit = ('#include "shim.h"\n#line 1 "kernel.cu"\n' + code + "\n"
            + _launcher_code(kernels, structs))
    key = hashlib.sha256("\0".join((unit, shim, " ".join(CXXFLAGS), _compiler_id()))
                         .encode()).hexdigest()[:24]
    so = os.path.join(CACHE_DIR, f"emu_{key}.so")
    with _lock:
        if not os.path.exists(so):
            os.makedirs(CACHE_DIR, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
                src = os.path.join(tmp, "unit.cu")
                with open(src, "w") as f:
                    f.write(unit)
                out = os.path.join(tmp, "unit.so")
                res = subprocess.run([CXX, *CXXFLAGS, "-I", HERE, src, "-o", out],
                                     capture_output=True, text=True)
                if res.returncode != 0:
                    raise EmulationError(f"g++ failed on the emulated unit:\n{res.stderr}")
                os.replace(out, so)  # atomic: concurrent builders never see half a file
    return ctypes.CDLL(so), kernels, structs


# ----------------------------------------------------------------------------- launching

def _dims(v, what):
    t = (v,) if np.isscalar(v) else tuple(v)
    if not 1 <= len(t) <= 3:
        raise EmulationError(f"{what} must have 1 to 3 dimensions, got {v!r}")
    t = tuple(int(x) for x in t) + (1,) * (3 - len(t))
    limit = (2 ** 31 - 1, 65535, 65535) if what == "grid" else (1024, 1024, 64)
    if any(x < 1 or x > lim for x, lim in zip(t, limit)) or (what == "block" and np.prod(t) > 1024):
        raise EmulationError(f"invalid {what} {v!r} (CUDA limits {limit})")
    return t


class EmulatedKernel:
    """A kernel of an ``EmulatedModule``; ``kernel(grid, block, args)`` as in CuPy."""

    def __init__(self, module, name, params):
        self.module = module
        self.name = name
        self.params = params
        self._launch = getattr(module.lib, f"emu_launch_{name}")
        self._launch.restype = None
        self._launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.POINTER(ctypes.c_void_p)]
        n = max(len(params), 1)
        self.sizes = list((ctypes.c_longlong * n).in_dll(module.lib, f"emu_sizes_{name}"))
        self.launches = 0
        # Work done by all launches so far (shim.h's WORK_COUNT counters).
        self.work = dict.fromkeys(WORK_KINDS, 0)

    def __repr__(self):
        return f"<EmulatedKernel {self.name}({', '.join(map(repr, self.params))})>"

    def _fail(self, i, msg):
        p = self.params[i]
        raise EmulationError(f"{self.name}: argument {i} ({p!r}): {msg}")

    def _pack(self, i, arg, keep, arrays):
        p = self.params[i]
        size = self.sizes[i]
        dev = self.module.device_array_type
        if arg is None:   # both CuPy versions pass None as a null pointer
            if not p.is_pointer:
                self._fail(i, "None (a null pointer) passed to a non-pointer parameter")
            return self._null(keep)
        # Without a device array type every array is device memory to a pointer.
        on_device = isinstance(arg, dev) if dev is not None else p.is_pointer
        if isinstance(arg, np.ndarray) and on_device:
            return self._pointer(i, arg, keep, arrays)
        if isinstance(arg, np.ndarray):
            # A host array: CuPy passes its bytes by value, if it has one element.
            if p.is_pointer:
                self._fail(i, f"a host array ({type(arg).__module__}.{type(arg).__name__}) "
                              f"cannot be passed to a GPU kernel")
            if arg.size != 1:
                self._reject(i, f"a numpy.ndarray of shape {arg.shape} as a kernel parameter: "
                                f"only numpy.ndarrays of size one can be passed by value")
            value_dtype, data = arg.dtype, np.ascontiguousarray(arg).tobytes()
        else:
            value = self._scalar(i, arg)
            value_dtype, data = value.dtype, value.tobytes()
            if p.is_pointer:
                if value.dtype.kind in "iu" and value.dtype.itemsize == 8 and int(value) == 0:
                    return self._null(keep)
                self._fail(i, f"scalar {arg!r} passed to a pointer parameter (only None or a "
                              f"64-bit 0, a null pointer, is meaningful)")
        if value_dtype.itemsize != size:
            self._fail(i, f"{value_dtype} value has {value_dtype.itemsize} bytes, the parameter "
                          f"{size}: the GPU would read the wrong bytes")
        if p.is_struct:
            if value_dtype.names is None:
                self._fail(i, f"struct parameter needs a structured value, got {value_dtype}")
            self._check_struct(i, p.base, value_dtype)
        else:
            want = np.dtype(p.dtype)
            kind = lambda d: "int" if d.kind in "iu" else d.kind
            if kind(value_dtype) != kind(want):
                self._fail(i, f"{value_dtype} value passed to {p.base}")
        buf = ctypes.create_string_buffer(data, max(size, 1))
        keep.append(buf)
        return ctypes.cast(buf, ctypes.c_void_p)

    @staticmethod
    def _null(keep):
        buf = ctypes.c_void_p(0)
        keep.append(buf)
        return ctypes.cast(ctypes.pointer(buf), ctypes.c_void_p)

    def _pointer(self, i, arg, keep, arrays):
        p = self.params[i]
        if not p.is_pointer:
            self._fail(i, "an array was passed to a non-pointer parameter")
        if not arg.flags.c_contiguous:
            self._fail(i, "array is not C-contiguous (the kernel indexes it as if it were)")
        if p.dtype is not None and arg.dtype != np.dtype(p.dtype):
            if arg.dtype.itemsize != np.dtype(p.dtype).itemsize:
                self._fail(i, f"array dtype {arg.dtype} does not match {p.base}")
            # Same size, other type: a deliberate reuse of a buffer (bridge.cuh
            # writes the doubles D over the uint64 sums T). Allowed, but recorded
            # so that tests can pin down exactly which ones happen.
            self.module.reinterpretations.add((self.name, p.name, str(arg.dtype), p.base))
        if not p.const_pointee and not arg.flags.writeable:
            self._fail(i, "read-only array passed to a non-const pointer")
        arrays.append(arg)
        buf = ctypes.c_void_p(arg.ctypes.data if arg.size else 0)
        keep.append(buf)
        return ctypes.cast(ctypes.pointer(buf), ctypes.c_void_p)

    def _reject(self, i, msg):
        p = self.params[i]
        raise UnsupportedArgument(f"{self.name}: argument {i} ({p!r}): CuPy "
                                  f"{self.module.cupy_rules} raises TypeError for {msg}")

    def _scalar(self, i, arg):
        """The NumPy scalar CuPy makes of a non-array argument, by the rules of the CuPy
        version emulated (``cupy/cuda/function.pyx``, ``_pointer``)."""
        if self.module.cupy_rules == "13":
            # CuPy 13: basic NumPy scalar types as they are; Python numbers converted
            # (bool is an int there, so True becomes int64 1); anything else refused,
            # numpy.void (a structured scalar) included.
            if type(arg) in CUPY13_SCALARS:
                return arg
            for py, np_type in ((int, np.int64), (float, np.float64), (complex, np.complex128)):
                if isinstance(arg, py):
                    return np_type(arg)
            self._reject(i, f"a {type(arg).__module__}.{type(arg).__name__} "
                            "('Unsupported type')")
        # CuPy 14: Python numbers by NumPy's rules, any NumPy scalar (structured too)
        # that fits CScalar's 32-byte buffer.
        for py, np_type in ((bool, np.bool_), (int, np.int64), (float, np.float64),
                            (complex, np.complex128)):
            if isinstance(arg, py):
                return np_type(arg)
        if isinstance(arg, np.generic):
            if arg.dtype.itemsize >= 32:
                self._reject(i, f"a {arg.dtype.itemsize}-byte scalar (CScalar holds < 32)")
            return arg
        self._reject(i, f"a {type(arg).__module__}.{type(arg).__name__} ('Unsupported type')")

    def _check_struct(self, i, sname, dtype):
        fields = self.module.structs.get(sname)
        if fields is None:
            return  # layout not parsed: the size check above is all we can do
        lay = list((ctypes.c_longlong * (2 + 2 * len(fields))).in_dll(
            self.module.lib, f"emu_layout_{sname}"))
        names = [f for f, _ in fields]
        if list(dtype.names) != names:
            self._fail(i, f"structured dtype fields {dtype.names} != struct {sname} fields {names}")
        for j, (fname, ctype) in enumerate(fields):
            off, sz = lay[2 + 2 * j], lay[3 + 2 * j]
            fd, foff = dtype.fields[fname][:2]
            if foff != off or fd.itemsize != sz:
                self._fail(i, f"field {fname}: NumPy offset {foff} size {fd.itemsize}, "
                              f"C offset {off} size {sz}")
            want = C_TYPES.get(ctype)
            kind = lambda d: "int" if d.kind in "iub" else d.kind
            if want is not None and kind(fd) != kind(np.dtype(want)):
                self._fail(i, f"field {fname}: NumPy {fd} vs C {ctype}")

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        if shared_mem:
            raise EmulationError("dynamic shared memory cannot be emulated sequentially")
        if enable_cooperative_groups:
            raise EmulationError("cooperative groups cannot be emulated sequentially")
        g = _dims(grid, "grid")
        b = _dims(block, "block")
        args = tuple(args)
        if len(args) != len(self.params):
            raise EmulationError(f"{self.name} takes {len(self.params)} arguments "
                                 f"({', '.join(map(repr, self.params))}), got {len(args)}")
        keep, arrays = [], []
        ptrs = (ctypes.c_void_p * max(len(args), 1))()
        for i, a in enumerate(args):
            ptrs[i] = self._pack(i, a, keep, arrays)
        counters = (ctypes.c_ulonglong * 16).in_dll(self.module.lib, "emu_work")
        for i in range(16):
            counters[i] = 0
        self._launch(*g, *b, ptrs)
        self.launches += 1
        for i, kind in enumerate(WORK_KINDS):
            self.work[kind] += counters[i]
        hook = self.module.after_launch
        if hook is not None:
            hook(self, arrays)


class EmulatedModule:
    """Stands in for ``cupy.RawModule(code=..., options=...)``.

    ``device_array_type``: if set, pointer arguments must be instances of it (the fake
    CuPy ndarray), as a real GPU kernel cannot take host arrays. ``after_launch``: an
    optional ``hook(kernel, arrays)`` run after each launch (the fake CuPy checks the
    guard bytes of its allocations there).
    """

    def __init__(self, code=None, options=(), *, path=None, device_array_type=None,
                 after_launch=None, cupy_rules="14", **_ignored):
        if cupy_rules not in CUPY_RULES:
            raise EmulationError(f"cupy_rules must be one of {CUPY_RULES}, got {cupy_rules!r}")
        self.cupy_rules = cupy_rules
        if code is None:
            with open(path) as f:
                code = f.read()
        self.code = code
        self.options = tuple(options)
        self.device_array_type = device_array_type
        self.after_launch = after_launch
        self.lib, self.kernels, self.structs = build(code)
        self.reinterpretations = set()  # (kernel, parameter, array dtype, C pointee)
        self._functions = {}

    def get_function(self, name):
        if name not in self._functions:
            if name not in self.kernels:
                raise EmulationError(f"no kernel {name!r}; kernels: {sorted(self.kernels)}")
            self._functions[name] = EmulatedKernel(self, name, self.kernels[name])
        return self._functions[name]
