"""Every kernel file compiles with NVRTC, as CuPy compiles it at run time: the exact
source text (``cupy_core.methods.cuda.source``, local includes inlined) and options (``cupy_core.methods.cuda.OPTIONS``)
the package hands to CuPy, plus the ``-arch=sm_XX`` CuPy adds, with the NVRTC of
CUDA 12 (what CuPy 13 loads) and of CUDA 13, for sm_75, sm_86, sm_89 and sm_90, to a
CUBIN. Every ``extern "C" __global__`` kernel of the file must be in the PTX and in the
CUBIN. ptxas' register, stack and spill figures (``-Xptxas -v``, which changes no
code: ``test_ptxas_verbose_changes_no_code``) are printed as a table at the end of the
run (tests/conftest.py), spills reported, not asserted.

No GPU, driver or CuPy is needed. The NVRTC libraries come from the PyPI wheels that
``python build.py test`` installs into .nvrtc/cu12 and .nvrtc/cu13, naming that folder
in CUPY_CORE_NVRTC; without that variable the tests skip, with it a library that
does not load, or a kernel that does not compile, fails them.
"""
import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import nvrtc
from cupy_core.methods import cuda as kernels

ENV = "CUPY_CORE_NVRTC"
# folder under $CUPY_CORE_NVRTC -> the CUDA major version its libnvrtc must have
CUDA = {"cu12": 12, "cu13": 13}
ARCHS = (75, 86, 89, 90)
KERNEL_FILES = sorted(os.path.relpath(p, kernels.HERE).replace(os.sep, "/")
                      for p in glob.glob(os.path.join(kernels.HERE, "**", "*.cu"),
                                         recursive=True))
VERBOSE = "--ptxas-options=-v"
_libraries = {}
_compiled = {}


def library(cuda):
    """The loaded NVRTC of ``cuda`` ("cu12", "cu13"): skips without CUPY_CORE_NVRTC,
    fails when the library is missing, does not load or has the wrong version."""
    root = os.environ.get(ENV)
    if not root:
        pytest.skip(f"{ENV} is not set: the NVRTC compile check needs the NVRTC wheels "
                    "that `python build.py test` installs into .nvrtc/ (no GPU needed)")
    if cuda not in _libraries:
        folder = os.path.join(root, cuda)
        path = nvrtc.find_library(folder)
        if path is None:
            _libraries[cuda] = f"no libnvrtc under {folder} ({ENV}={root})"
        else:
            try:
                lib = nvrtc.NVRTC(path)
                lib.version_text = "%d.%d" % lib.version()
                lib.wheel = wheel_name(folder)
                _libraries[cuda] = lib
            except (OSError, AttributeError, nvrtc.NVRTCError) as e:
                _libraries[cuda] = f"{path} does not load: {e}"
    lib = _libraries[cuda]
    if isinstance(lib, str):
        pytest.fail(lib)
    assert lib.version()[0] == CUDA[cuda], (lib.path, lib.version())
    return lib


def wheel_name(folder):
    """``name==version`` of the wheel installed in ``folder`` (its .dist-info)."""
    infos = sorted(glob.glob(os.path.join(folder, "*.dist-info")))
    if not infos:
        return "?"
    name, _, version = os.path.basename(infos[0])[:-len(".dist-info")].rpartition("-")
    return f"{name.replace('_', '-')}=={version}"


def options(arch, verbose=True):
    """What CuPy passes to nvrtcCompileProgram for a RawModule of this package on an
    ``sm_{arch}`` device (CuPy asks NVRTC for a CUBIN with ``-arch=sm_XX`` when NVRTC
    supports the device), plus ptxas' verbose flag."""
    return [*kernels.OPTIONS, f"-arch=sm_{arch}"] + ([VERBOSE] if verbose else [])


def _compile(lib, arch, name):
    started = time.perf_counter()
    try:
        out = lib.compile(kernels.source(name), name, options(arch))
    except nvrtc.NVRTCError as e:
        out = nvrtc.Compiled(False, -1, str(e))
    out.seconds = time.perf_counter() - started
    return out


def compiled(cuda, arch, name):
    """NVRTC's output for one (CUDA version, arch, file). The first call for a CUDA
    version compiles all its archs and files at once on a thread pool (NVRTC is
    thread-safe for distinct programs; ctypes lets go of the GIL during the call)."""
    lib = library(cuda)
    if cuda not in _compiled:
        # biggest sources first, so that the slow ones do not trail at the end
        jobs = [(a, n) for n in sorted(KERNEL_FILES, key=lambda n: -len(kernels.source(n)))
                for a in ARCHS]
        threads = max(1, min(len(jobs), os.cpu_count() or 1))
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            outs = list(pool.map(lambda job: _compile(lib, *job), jobs))
        nvrtc.BATCHES[cuda] = (time.perf_counter() - started, len(jobs), threads)
        _compiled[cuda] = dict(zip(jobs, outs))
    return lib, _compiled[cuda][(arch, name)]


@pytest.mark.parametrize("name", KERNEL_FILES)
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("cuda", CUDA)
def test_kernels_compile(cuda, arch, name):
    lib, out = compiled(cuda, arch, name)
    assert arch in lib.supported_archs(), (
        f"NVRTC {lib.version_text} does not compile for sm_{arch}: {lib.supported_archs()}")
    source = kernels.source(name)
    expected = nvrtc.expected_kernels(source)
    assert expected, f"{name} defines no extern \"C\" __global__ kernel"
    assert out.ok, (f"NVRTC {lib.version_text} ({lib.wheel}) failed on {name} for "
                    f"sm_{arch} with {' '.join(options(arch))}:\n{out.log}")
    entries = nvrtc.ptx_entries(out.ptx)
    assert expected <= entries, f"kernels not in the PTX: {sorted(expected - entries)}"
    missing = sorted(k for k in expected if not nvrtc.cubin_has_symbol(out.cubin, k))
    assert not missing, f"kernels missing from the sm_{arch} CUBIN: {missing}"
    usage = nvrtc.parse_ptxas(out.log)
    absent = sorted(k for k in expected if usage.get(k, nvrtc.Usage()).registers is None)
    assert not absent, f"ptxas -v reported no registers for {absent}:\n{out.log}"
    warnings = [line for line in out.log.splitlines()
                if line.strip() and not line.startswith("ptxas")]
    nvrtc.RESULTS.append(dict(
        cuda=cuda, nvrtc=lib.version_text, wheel=lib.wheel, arch=arch, file=name,
        kernels=sorted(expected), usage=usage, seconds=out.seconds, warnings=warnings))


@pytest.mark.parametrize("cuda", CUDA)
def test_ptxas_verbose_changes_no_code(cuda):
    """The figures are those of the code CuPy gets: with and without ``-Xptxas -v``
    the CUBINs hold the same sections, byte for byte, but for the tool-info note
    (which records ptxas' options). Checked on the smallest kernel file (the flag
    acts on the compiler, not on one file)."""
    lib = library(cuda)
    name = min(KERNEL_FILES, key=lambda n: len(kernels.source(n)))
    source = kernels.source(name)
    plain = lib.compile(source, name, options(86, verbose=False))
    verbose = lib.compile(source, name, options(86))
    assert plain.ok and verbose.ok, plain.log + verbose.log
    assert plain.ptx == verbose.ptx, name
    a, b = nvrtc.elf_sections(plain.cubin), nvrtc.elf_sections(verbose.cubin)
    a.pop(".note.nv.tkinfo", None)
    b.pop(".note.nv.tkinfo", None)
    assert any(k.startswith(".text.") for k in a), sorted(a)
    assert list(a) == list(b) and a == b, (name, [k for k in a if a[k] != b.get(k)])


@pytest.mark.parametrize("cuda", CUDA)
def test_binding_reports_errors(cuda):
    """The check can fail: a program NVRTC rejects comes back not ok, with its error
    in the log; a good one names its kernels in the PTX, the CUBIN and ptxas' report."""
    lib = library(cuda)
    bad = lib.compile('extern "C" __global__ void k(int* x) { x[0] = nope; }', "bad.cu",
                      options(86))
    assert not bad.ok and "nope" in bad.log and "error" in bad.log, bad.log
    good_source = ('#define TWO(P) \\\n'
                   '    extern "C" __global__ void P##_a(int* x) { x[0] = 1; } \\\n'
                   '    extern "C" __global__ void P##_b(int* x) { x[1] = 2; }\n'
                   'TWO(pair)\n'
                   'extern "C" __global__ void single(int* x) { x[2] = 3; }\n')
    good = lib.compile(good_source, "good.cu", options(86))
    assert good.ok, good.log
    names = {"pair_a", "pair_b", "single"}
    assert nvrtc.expected_kernels(good_source) == names
    assert nvrtc.ptx_entries(good.ptx) == names
    assert all(nvrtc.cubin_has_symbol(good.cubin, k) for k in names)
    assert not nvrtc.cubin_has_symbol(good.cubin, "pair_c")
    assert {k for k, u in nvrtc.parse_ptxas(good.log).items() if u.entry} == names
