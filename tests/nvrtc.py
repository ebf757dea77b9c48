"""A small ctypes binding of NVRTC (libnvrtc), what CuPy compiles ``RawModule`` code
with, for tests/methods/test_nvrtc.py: compile a source to PTX and CUBIN with given options,
read the program log, and parse ptxas' ``-v`` report out of it.

Nothing here needs a GPU, a driver or CuPy: NVRTC is a plain shared library (the PyPI
wheels ``nvidia-cuda-nvrtc-cu12`` and ``nvidia-cuda-nvrtc`` ship it; build.py installs
them into .nvrtc/).
"""
import ctypes
import glob
import os
import re
from dataclasses import dataclass, field

NVRTC_SUCCESS = 0


class NVRTCError(RuntimeError):
    pass


def find_library(folder):
    """The ``libnvrtc.so.N`` (``nvrtc64_*.dll`` on Windows) under ``folder``, the
    newest if several, or None. The ``.alt`` variant of the CUDA 12 wheel is skipped."""
    patterns = ("**/libnvrtc.so.*", "**/nvrtc64_*.dll")
    found = [p for pat in patterns for p in glob.glob(os.path.join(folder, pat),
                                                      recursive=True)
             if ".alt." not in os.path.basename(p) and "builtins" not in p]
    return sorted(found)[-1] if found else None


@dataclass
class Compiled:
    ok: bool
    result: int
    log: str
    ptx: str = ""
    cubin: bytes = b""
    seconds: float = 0.0


class NVRTC:
    """One loaded libnvrtc. Each library gets its own handle (RTLD_LOCAL), so the
    CUDA 12 and the CUDA 13 one live side by side in one process."""

    def __init__(self, path):
        self.path = path
        self.lib = lib = ctypes.CDLL(path)
        sz = ctypes.POINTER(ctypes.c_size_t)
        prog = ctypes.c_void_p
        for name, args in [
                ("nvrtcVersion", [ctypes.POINTER(ctypes.c_int)] * 2),
                ("nvrtcGetNumSupportedArchs", [ctypes.POINTER(ctypes.c_int)]),
                ("nvrtcGetSupportedArchs", [ctypes.POINTER(ctypes.c_int)]),
                ("nvrtcCreateProgram", [ctypes.POINTER(prog), ctypes.c_char_p,
                                        ctypes.c_char_p, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_char_p),
                                        ctypes.POINTER(ctypes.c_char_p)]),
                ("nvrtcDestroyProgram", [ctypes.POINTER(prog)]),
                ("nvrtcCompileProgram", [prog, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_char_p)]),
                ("nvrtcGetProgramLogSize", [prog, sz]),
                ("nvrtcGetProgramLog", [prog, ctypes.c_char_p]),
                ("nvrtcGetPTXSize", [prog, sz]),
                ("nvrtcGetPTX", [prog, ctypes.c_char_p]),
                ("nvrtcGetCUBINSize", [prog, sz]),
                ("nvrtcGetCUBIN", [prog, ctypes.c_char_p])]:
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, result, what):
        if result != NVRTC_SUCCESS:
            message = self.lib.nvrtcGetErrorString(result)
            raise NVRTCError(f"{what}: {message.decode() if message else result}")

    def version(self):
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)),
                    "nvrtcVersion")
        return major.value, minor.value

    def supported_archs(self):
        """The ``sm_XX`` numbers this NVRTC compiles for, e.g. [75, 80, 86, ...]."""
        n = ctypes.c_int()
        self._check(self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)),
                    "nvrtcGetNumSupportedArchs")
        archs = (ctypes.c_int * n.value)()
        self._check(self.lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
        return list(archs)

    def _blob(self, prog, size_fn, get_fn, what):
        size = ctypes.c_size_t()
        self._check(size_fn(prog, ctypes.byref(size)), what + "Size")
        buf = ctypes.create_string_buffer(size.value)
        self._check(get_fn(prog, buf), what)
        return buf.raw[:size.value]

    def compile(self, source, name, options):
        """Compile ``source`` (str) called ``name`` with ``options`` (strs). Returns a
        ``Compiled``: ``ok`` False (with the log) when NVRTC rejects the program; the PTX
        (text) and, when the options name a real ``sm_XX`` architecture, the CUBIN."""
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(),
                                                name.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            opts = [o.encode() for o in options]
            argv = (ctypes.c_char_p * len(opts))(*opts)
            result = self.lib.nvrtcCompileProgram(prog, len(opts), argv)
            lib = self.lib
            log = self._blob(prog, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog,
                             "nvrtcGetProgramLog").rstrip(b"\0").decode(errors="replace")
            if result != NVRTC_SUCCESS:
                message = lib.nvrtcGetErrorString(result)
                return Compiled(False, result, (message or b"").decode() + "\n" + log)
            ptx = self._blob(prog, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX, "nvrtcGetPTX")
            cubin = b""
            real_arch = re.compile(r"(-arch|--gpu-architecture)=sm_\d+a?")
            if any(real_arch.fullmatch(o) for o in options):
                cubin = self._blob(prog, lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN,
                                   "nvrtcGetCUBIN")
            return Compiled(True, result, log, ptx.rstrip(b"\0").decode(), cubin)
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


# ------------------------------------------------------------------ what to expect

_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?'
                    r'void\s+([\w#]+)\s*\(')
_DEFINE = re.compile(r'^[ \t]*#[ \t]*define[ \t]+(\w+)\(([^)]*)\)((?:[^\n]*\\\n)*[^\n]*)',
                     re.M)


def _split_args(text):
    """Top-level comma-separated macro arguments (nested parentheses kept whole)."""
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    args.append(cur.strip())
    return args


def _invocations(source, macro):
    """The argument lists of every ``macro(...)`` use outside ``#define`` lines."""
    body = _DEFINE.sub("", source)
    for m in re.finditer(r"\b%s\s*\(" % re.escape(macro), body):
        depth, i = 1, m.end()
        while depth and i < len(body):
            depth += body[i] == "("
            depth -= body[i] == ")"
            i += 1
        yield _split_args(body[m.end():i - 1])


def expected_kernels(source):
    """The ``extern "C" __global__`` kernel names the source defines, read from its
    text: written out, or made by a function-like macro whose body pastes a parameter
    into the name (``PREFIX##_gather``), expanded at each of its uses."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    source = re.sub(r"//[^\n]*", "", source)
    names = set()
    plain = _DEFINE.sub("", source)
    names.update(n for n in _ENTRY.findall(plain) if "#" not in n)
    for macro, params, body in _DEFINE.findall(source):
        templates = [n for n in _ENTRY.findall(body.replace("\\\n", " "))]
        if not templates:
            continue
        params = [p.strip() for p in params.split(",")]
        for args in _invocations(source, macro):
            binding = dict(zip(params, args))
            for template in templates:
                names.add("".join(binding.get(part.strip(), part.strip())
                                  for part in template.split("##")))
    return names


def ptx_entries(ptx):
    """The kernel (``.entry``) names of a PTX text."""
    return set(re.findall(r"^\s*\.(?:visible\s+)?\.?entry\s+(\w+)\s*\(", ptx, re.M))


def cubin_has_symbol(cubin, name):
    """Whether an ELF CUBIN's string table holds ``name`` (a kernel's symbol)."""
    return cubin[:4] == b"\x7fELF" and (b"\0" + name.encode() + b"\0") in cubin


# ------------------------------------------------------------------ ptxas -v

@dataclass
class Usage:
    registers: int = None
    stack: int = None
    spill_stores: int = None
    spill_loads: int = None
    entry: bool = False
    extra: dict = field(default_factory=dict)


def parse_ptxas(log):
    """``{function: Usage}`` from ptxas' ``-v`` lines in an NVRTC log: registers (of
    entries), stack frame and spill bytes (of every function ptxas reports)."""
    usage = {}
    entry = props = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            entry = m.group(1)
            usage.setdefault(entry, Usage()).entry = True
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            props = m.group(1)
            usage.setdefault(props, Usage())
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                      r"(\d+) bytes spill loads", line)
        if m and props is not None:
            u = usage[props]
            u.stack, u.spill_stores, u.spill_loads = map(int, m.groups())
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and entry is not None:
            usage[entry].registers = int(m.group(1))
            for key, pattern in (("barriers", r"used (\d+) barriers"),
                                 ("cmem0", r"(\d+) bytes cmem\[0\]"),
                                 ("smem", r"(\d+) bytes smem")):
                mm = re.search(pattern, line)
                if mm:
                    usage[entry].extra[key] = int(mm.group(1))
    return usage


def elf_sections(blob):
    """``{name: bytes}`` of the sections of an ELF64 little-endian file (a CUBIN)."""
    import struct
    if blob[:4] != b"\x7fELF" or blob[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", blob, shoff + i * shentsize)
               for i in range(shnum)]
    _, _, _, _, stroff, strsize = headers[shstrndx]
    names = blob[stroff:stroff + strsize]
    out = {}
    for name_at, kind, _, _, offset, size in headers:
        name = names[name_at:names.index(b"\0", name_at)].decode()
        out[name] = b"" if kind == 8 else blob[offset:offset + size]   # 8: NOBITS
    return out


# ------------------------------------------------------------------ the report

# One dict per compiled (CUDA version, arch, file), appended by tests/methods/test_nvrtc.py and
# printed by tests/conftest.py's pytest_terminal_summary; BATCHES: per CUDA version,
# (wall seconds, compiles, threads) of the parallel compile.
RESULTS = []
BATCHES = {}


def _cell(u):
    text = f"{u.registers}/{u.stack}" if u.stack is not None else f"{u.registers}/?"
    if u.spill_stores or u.spill_loads:
        text += f" S{u.spill_stores}+{u.spill_loads}"
    return text


def summary_lines(results=None):
    """The register/stack/spill table of ``results`` (default RESULTS), one block per
    CUDA version: a row per kernel, a column per architecture; then the spills, the
    NVRTC warnings and the compile times."""
    results = RESULTS if results is None else results
    if not results:
        return []
    lines = ["NVRTC compile of every kernel (tests/methods/test_nvrtc.py): ptxas -v figures "
             "per kernel, 'registers/stack frame bytes', 'S<stores>+<loads>' = spill "
             "bytes"]
    spills, warnings = [], []
    for cuda in sorted({r["cuda"] for r in results}):
        rows = [r for r in results if r["cuda"] == cuda]
        archs = sorted({r["arch"] for r in rows})
        first = rows[0]
        total = sum(r["seconds"] for r in rows)
        wall, n, threads = BATCHES.get(cuda, (total, len(rows), 1))
        lines.append(f"{cuda}: NVRTC {first['nvrtc']} ({first['wheel']}), {n} compiles "
                     f"in {wall:.1f} s on {threads} thread(s) ({total:.1f} s summed)")
        table = {}
        for r in rows:
            for k in r["kernels"]:
                table.setdefault((r["file"], k), {})[r["arch"]] = _cell(r["usage"][k])
            for fn, u in sorted(r["usage"].items()):
                if u.spill_stores or u.spill_loads:
                    spills.append(f"{cuda} sm_{r['arch']} {r['file']} {fn}: "
                                  f"{u.spill_stores} B spill stores, "
                                  f"{u.spill_loads} B spill loads, {u.stack} B stack")
            warnings += [f"{cuda} sm_{r['arch']} {r['file']}: {w}" for w in r["warnings"]]
        wf = max(len(f) for f, _ in table)
        wk = max(len(k) for _, k in table)
        wc = max([len(c) for cells in table.values() for c in cells.values()] + [6])
        lines.append(f"  {'file':<{wf}}  {'kernel':<{wk}}  "
                     + "  ".join(f"{'sm_%d' % a:>{wc}}" for a in archs))
        for (f, k), cells in sorted(table.items()):
            lines.append(f"  {f:<{wf}}  {k:<{wk}}  "
                         + "  ".join(f"{cells.get(a, '-'):>{wc}}" for a in archs))
    lines.append("spills: " + ("none" if not spills else f"{len(spills)}"))
    lines += ["  " + s for s in spills]
    if warnings:
        lines.append(f"NVRTC warnings: {len(warnings)}")
        lines += ["  " + w for w in warnings[:40]]
    slow = max(results, key=lambda r: r["seconds"])
    lines.append(f"slowest compile: {slow['cuda']} sm_{slow['arch']} {slow['file']} "
                 f"{slow['seconds']:.2f} s")
    return lines
