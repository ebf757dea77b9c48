"""The CUDA kernels, run on the CPU through a host-side shim, against the NumPy path
(docs/DESIGN.md 4.4 property 6; sections 6 and 11) on machines without a GPU.

tests/cuda_emulation/ compiles each ``.cu`` file of cupy_core with g++ (``shim.h``
supplies ``__global__``, ``blockIdx``, ``atomicAdd`` ...) and installs a fake ``cupy``
module whose arrays are host memory, so ``cupy_core.warp`` and ``white_noise`` take
their GPU branch unchanged: the same kernel sources, the same launch code in
``bridge.py`` / ``white.py`` / ``cuda.py``, with the kernel arguments checked against
the parsed signatures. Threads run one after the other, which is exact for these
kernels (one thread per item, no shared memory, integer atomics). The kernels call
no libm transcendental (the normals are the project's own float32 transform,
philox.cuh), and FMA contraction is off on both sides, so every comparison here is
bit for bit (``array_equal``). Not emulated: real concurrency. tests/test_gpu.py runs
the same comparisons on a real GPU.
"""
import os
import sys

import numpy as np
import pytest

import cupy_core
from cupy_core.methods import cuda, rng

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # conftest.py does this too
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_emulation import emulate, fake_cupy  # noqa: E402
from maps import centers, corners, fold, swirl  # noqa: E402

if not emulate.compiler_available():
    pytest.skip(f"CUDA emulation needs a C++ compiler ({emulate.CXX!r} not found)",
                allow_module_level=True)

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(TESTS, "cuda_emulation", "probe.cu")
CHANNELS = [1, 3, 4, 16, 17, 20]   # around GATHER_CHUNK = 16 and the groups of four


# Both CuPy versions users have: 13.6 (Blender's NumPy 1.26) and 14 take kernel
# arguments by different rules (cuda_emulation/emulate.py).
@pytest.fixture(scope="module", params=["13.6.0", "14.0.1"], ids=["cupy13", "cupy14"])
def cp(request):
    """The fake CuPy, installed for this module's tests; sys.modules["cupy"] and
    cupy_core.methods.cuda's RawModule cache are restored afterwards."""
    with fake_cupy.installed(version=request.param) as mod:
        yield mod


# ----------------------------------------------------------------------------- maps

def _pos(h, w, at):
    return corners(h, w) if at == "corners" else centers(h, w)


def _nan_holes(p):
    p = p.copy()
    p[2:4, 3:6] = np.nan          # a block of holes
    p[-1, 0, 1] = np.nan          # one coordinate of one point
    p[0, -1] = np.nan
    return p


def _bow_ties(p):
    """Swap neighbouring points in a few places: the quads on both sides of each swapped
    pair become self-intersecting ("bow-ties"), the grid variant's first fail-safe."""
    p = p.copy()
    for i, j in ((2, 3), (5, 6), (5, 9), (8, 1)):
        p[i, [j, j + 1]] = p[i, [j + 1, j]]
    p[10, 4] = p[9, 4] + (0.1, -0.3)   # and one pinched, folded-over point
    return p


def _far(p):
    p = p + np.array([0.25, -0.4])
    p[1] += 1e6                   # a whole row far to the right
    p[3, 2] = (-1e15, 3e14)       # single points very far away
    p[-2, -3] = (2.5, -7e12)
    return p


MAPS = {
    # name: (source shape, target shape, positions(h, w, at))
    "identity": ((9, 11), (9, 11), lambda h, w, at: _pos(h, w, at)),
    "integer_shift": ((9, 11), (9, 11), lambda h, w, at: _pos(h, w, at) + np.array([2.0, -1.0])),
    "translate": ((9, 11), (9, 11), lambda h, w, at: _pos(h, w, at) + np.array([0.37, -1.61])),
    "swirl": ((12, 13), (12, 13), lambda h, w, at: swirl(_pos(h, w, at), h, w, 0.8, 0.9)),
    "fold": ((12, 13), (12, 13), lambda h, w, at: fold(_pos(h, w, at), w, 2.5, 4.0)),
    "bow_ties": ((12, 13), (12, 13), lambda h, w, at: _bow_ties(fold(_pos(h, w, at), w, 0.6, 5.0))),
    "nan_holes": ((9, 11), (9, 11), lambda h, w, at: _nan_holes(swirl(_pos(h, w, at), h, w))),
    "far_outside": ((9, 11), (7, 10), lambda h, w, at: _far(_pos(h, w, at))),
    # a sliver of weight just above the fixed-point resolution in the last column
    "near_integer": ((6, 8), (6, 8), lambda h, w, at: _pos(h, w, at) + np.array([-(1.0 - 1e-9), 0.0])),
    "all_outside": ((6, 7), (5, 6), lambda h, w, at: _pos(h, w, at) + np.array([-50.0, 100.0])),
    # different source and target shapes: magnify a corner, and minify the whole
    "magnify": ((7, 13), (10, 6), lambda h, w, at: _pos(h, w, at) * 0.55 + np.array([1.3, 0.8])),
    "minify": ((15, 17), (6, 5), lambda h, w, at: _pos(h, w, at) * np.array([3.1, 2.3]) + 0.2),
    # over 600 targets per source: the NumPy path's piece sums leave float64 for int64
    "magnify_strong": ((3, 3), (64, 64), lambda h, w, at: _pos(h, w, at) * (2.0 / 64) + 0.01),
}

METHODS_AT = [("grid", "corners"), ("grid", "centers"), ("particle", "centers"),
              ("particle", "corners")]


def _prior(shape, channels, seed):
    return np.random.default_rng(seed).standard_normal(shape + (channels,)).astype(np.float32)


def _check(cpu, g):
    assert np.isfinite(cpu).all(), "NumPy path gave non-finite values"
    bad = ~np.isfinite(g)
    assert not bad.any(), f"kernels gave {bad.sum()} non-finite values at {np.argwhere(bad)[:5].tolist()}"
    assert g.dtype == np.float32 and g.shape == cpu.shape
    err = float(np.abs(g - cpu).max())
    where = np.unravel_index(np.abs(g - cpu).argmax(), g.shape)
    return err, where


def _compare_to_numpy(gpu_result, cpu_fn):
    """Assert the kernels' result equals the NumPy path's, bit for bit."""
    cpu = cpu_fn()
    err, where = _check(cpu, gpu_result)
    assert np.array_equal(gpu_result, cpu), \
        f"{int((gpu_result != cpu).sum())} values differ; max |gpu - cpu| = {err:.3g} at {where}"


def _compare(cp, prior, pos, method, at, seed, frame):
    gpu = cupy_core.warp(cp.asarray(prior), cp.asarray(pos), method=method, at=at,
                         seed=seed, frame=frame)
    assert isinstance(gpu, cp.ndarray), type(gpu)
    _compare_to_numpy(gpu.get(), lambda: cupy_core.warp(prior, pos, method=method, at=at,
                                                         seed=seed, frame=frame))


# ----------------------------------------------------------------------------- warp

@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("method,at", METHODS_AT)
def test_warp_kernels_match_numpy(cp, method, at, name, channels):
    src, (h, w), make = MAPS[name]
    pos = make(h, w, at)
    seed = 1000 * CHANNELS.index(channels) + sorted(MAPS).index(name)
    _compare(cp, _prior(src, channels, seed), pos, method, at, seed=seed, frame=3)


def test_bow_ties_map_has_bow_ties():
    """The 'bow_ties' map really exercises the grid variant's bow-tie fail-safe."""
    c = MAPS["bow_ties"][2](12, 13, "corners")
    p = [c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]]

    def orient(a, b, q):
        return ((b[..., 0] - a[..., 0]) * (q[..., 1] - a[..., 1])
                - (b[..., 1] - a[..., 1]) * (q[..., 0] - a[..., 0]))

    def crosses(a, b, q, r):
        return (orient(a, b, q) * orient(a, b, r) < 0) & (orient(q, r, a) * orient(q, r, b) < 0)

    bow = crosses(p[0], p[1], p[2], p[3]) | crosses(p[1], p[2], p[3], p[0])
    assert bow.sum() >= 6


@pytest.mark.parametrize("method", ["grid", "particle"])
@pytest.mark.parametrize("channels", [4, 17])
def test_noise_warper_gpu_matches_cpu(cp, method, channels):
    """Chained frames through NoiseWarper(device='gpu') on the fake CuPy."""
    h, w, steps = 10, 12, 4
    maps = [swirl(corners(h, w), h, w, 0.5, 0.7, phase=t) for t in range(steps)]
    gpu = cupy_core.NoiseWarper((h, w), channels, method=method, seed=9, device="gpu")
    assert gpu.device == "gpu"
    for pos in maps:
        out = gpu.step(pos)
        assert isinstance(out, cp.ndarray)

    def cpu_run():
        cpu = cupy_core.NoiseWarper((h, w), channels, method=method, seed=9, device="cpu")
        for pos in maps:
            cpu.step(pos)
        return cpu.noise

    _compare_to_numpy(gpu.noise.get(), cpu_run)


def test_buffer_reinterpretation_is_only_D(cp):
    """The only argument whose dtype differs from the kernel's pointer type is the
    uint64 T_fx buffer passed as ``const double* D`` to gather (written in place by
    the remainder pass)."""
    pos = swirl(corners(8, 9), 8, 9)
    for method in ("grid", "particle"):
        cupy_core.warp(cp.asarray(_prior((8, 9), 3, 0)), cp.asarray(pos), method=method)
        mod = cuda._modules[f"{method}2d.cu"]
        assert mod.reinterpretations == {(f"{method}2d_gather", "D", "uint64", "double")}


def test_cuda_options_disable_fma():
    """The bit-for-bit agreement (and the kernels' comments) rely on --fmad=false."""
    assert "--fmad=false" in cuda.OPTIONS


# A near-integer translation leaves a sliver of area (or weight) below the 2^-32
# fixed-point resolution of S_k in the last source column: S_fx rounds to 0 although
# the source has a piece. bridge_remainder (bridge.cuh) then returns early without
# writing D for that source, so gather read the raw uint64 bits of T_fx as a double:
# NaN in every channel where T < 0. Fixed: such sources get D = 0 on both paths.
@pytest.mark.parametrize("method", ["grid", "particle"])
@pytest.mark.parametrize("eps", [1e-12, 1e-10])
def test_near_integer_translation_sliver(cp, method, eps):
    h, w = 6, 8
    pos = corners(h, w) + np.array([-(1.0 - eps), 0.0])
    _compare(cp, _prior((h, w), 4, 0), pos, method, "corners", seed=1, frame=0)


# ----------------------------------------------------------------------------- white noise

@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("shape,seed,frame", [((37, 53), 12, 3), ((1, 1), 0, 0),
                                              ((5, 6, 7), 2 ** 63 + 5, -2),
                                              ((300, 2), -1, 2 ** 40 + 1)])
def test_white_noise_same_bits(cp, shape, channels, seed, frame):
    """Bit for bit: the float32 normals are the same operations on both sides."""
    a = cupy_core.white_noise(shape, channels, seed=seed, frame=frame)
    b = cupy_core.white_noise(shape, channels, seed=seed, frame=frame, xp=cp)
    assert isinstance(b, cp.ndarray) and b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_array_equal(b.get(), a)


# ----------------------------------------------------------------------------- philox

@pytest.fixture(scope="module")
def probe(cp):
    return cp.RawModule(code=cuda.source(PROBE))


def _run(cp, kernel, n, *args):
    kernel(((n + 255) // 256,), (256,), (np.int64(0), np.int64(n)) + args)


@pytest.mark.parametrize("seed", [0, 1, 0xDEADBEEF_0BADF00D])
def test_philox_matches_rng(cp, probe, seed):
    r = np.random.default_rng(seed % 2 ** 32)
    n = 5000
    ctr = r.integers(0, 2 ** 32, (n, 4), dtype=np.uint64).astype(np.uint32)
    ctr[:4] = [[0, 0, 0, 0], [0xFFFFFFFF] * 4, [1, 2, 3, 4], [0xFFFFFFFF, 0, 0xFFFFFFFF, 0]]
    k0, k1 = rng.seed_key(seed)
    out = cp.zeros((n, 4), np.uint32)
    _run(cp, probe.get_function("probe_philox"), n, cp.asarray(ctr), np.uint32(k0), np.uint32(k1), out)
    ref = np.stack(rng.philox4x32_10(ctr[:, 0], ctr[:, 1], ctr[:, 2], ctr[:, 3], k0, k1), axis=1)
    np.testing.assert_array_equal(out.get(), ref)


def test_philox_known_answer(cp, probe):
    """Random123's known-answer vector, through the CUDA code."""
    ctr = cp.asarray(np.array([[0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]], np.uint32))
    out = cp.zeros((1, 4), np.uint32)
    _run(cp, probe.get_function("probe_philox"), 1, ctr, np.uint32(0xA4093822), np.uint32(0x299F31D0), out)
    assert out.get()[0].tolist() == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("stream", [rng.STREAM_WHITE, rng.STREAM_PIECE,
                                    rng.STREAM_REMAINDER, rng.STREAM_FRESH])
def test_normals4_matches_rng(cp, probe, stream):
    """normals4 / normal_at equal rng.normals bit for bit (the float32 transform uses
    no libm: the same + - * / sqrt in the same order)."""
    r = np.random.default_rng(stream)
    n, groups = 4000, 5
    seed, frame = 77 + (stream << 40), (stream * 0x9E3779B9) & 0xFFFFFFFF
    k0, k1 = rng.seed_key(seed)
    c0 = r.integers(0, 2 ** 32, n, dtype=np.uint64)
    c1 = r.integers(0, 2 ** 32, n, dtype=np.uint64)
    c1[:3] = 0xFFFFFFFF
    ref = rng.normals(c0, c1, stream, 4 * groups, frame, seed)          # (n, 4 * groups)
    assert ref.dtype == np.float32
    got = np.empty_like(ref)
    for g in range(groups):
        ctr = np.stack([c0, c1, np.full(n, stream), np.full(n, g), np.full(n, frame)], 1).astype(np.uint32)
        out = cp.empty((n, 4), np.float32)
        _run(cp, probe.get_function("probe_normals4"), n, cp.asarray(ctr), np.uint32(k0), np.uint32(k1), out)
        got[:, 4 * g:4 * g + 4] = out.get()
    np.testing.assert_array_equal(got, ref)
    # normal_at picks channel ch of group ch // 4
    ch = r.integers(0, 4 * groups, n)
    ctr = np.stack([c0, c1, np.full(n, stream), ch, np.full(n, frame)], 1).astype(np.uint32)
    out = cp.empty(n, np.float32)
    _run(cp, probe.get_function("probe_normal_at"), n, cp.asarray(ctr), np.uint32(k0), np.uint32(k1), out)
    np.testing.assert_array_equal(out.get(), got[np.arange(n), ch])


def test_fixed_point_round_half_even(cp, probe):
    """to_fixed (the shim's __double2ll_rn) rounds to nearest even and wraps negatives
    to two's complement; from_fixed inverts it."""
    scale = 2.0 ** 32
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1e-12, -3.25, 0.75, 123.456, -1e-3]) / scale
    v = np.concatenate([v, np.random.default_rng(0).standard_normal(100) * 10])
    n = v.size
    fixed = cp.zeros(n, np.uint64)
    back = cp.zeros(n, np.float64)
    _run(cp, probe.get_function("probe_fixed"), n, cp.asarray(v), np.float64(scale), fixed, back)
    want = np.rint(v * scale).astype(np.int64)
    np.testing.assert_array_equal(fixed.get().view(np.int64), want)
    np.testing.assert_array_equal(back.get(), want / scale)


# ----------------------------------------------------------------------------- the harness

def test_launch_arguments_are_checked(cp, probe):
    """The emulator rejects what would silently go wrong on a GPU."""
    k = probe.get_function("probe_philox")
    ctr = cp.zeros((4, 4), np.uint32)
    out = cp.zeros((4, 4), np.uint32)
    ok = (np.int64(0), np.int64(4), ctr, np.uint32(1), np.uint32(2), out)
    k((1,), (32,), ok)
    bad = {
        "host array": (np.int64(0), np.int64(4), np.zeros((4, 4), np.uint32), np.uint32(1), np.uint32(2), out),
        "int32 for long long": (np.int64(0), np.int32(4), ctr, np.uint32(1), np.uint32(2), out),
        "wrong pointee dtype": (np.int64(0), np.int64(4), cp.zeros((4, 4), np.float64), np.uint32(1), np.uint32(2), out),
        "non-contiguous": (np.int64(0), np.int64(4), cp.zeros((4, 8), np.uint32)[:, ::2], np.uint32(1), np.uint32(2), out),
        "float for unsigned int": (np.int64(0), np.int64(4), ctr, np.float32(1), np.uint32(2), out),
        "too few": (np.int64(0), np.int64(4), ctr, np.uint32(1), out),
        "host array of size 1 for a pointer": (np.int64(0), np.int64(4), ctr, np.uint32(1),
                                               np.uint32(2), np.zeros(1, np.uint32)),
    }
    for what, args in bad.items():
        with pytest.raises(emulate.EmulationError):
            k((1,), (32,), args)
            pytest.fail(what)


def test_out_of_bounds_write_is_caught(cp, probe):
    k = probe.get_function("probe_philox")
    ctr = cp.zeros((8, 4), np.uint32)
    out = cp.zeros((4, 4), np.uint32)   # n = 8 rows written into 4
    with pytest.raises(emulate.EmulationError, match="outside"):
        k((1,), (32,), (np.int64(0), np.int64(8), ctr, np.uint32(1), np.uint32(2), out))


def test_fixture_restores_cupy_and_cache():
    before = sys.modules.get("cupy")
    cache = dict(cuda._modules)
    with fake_cupy.installed() as cp:
        assert sys.modules["cupy"] is cp
        cupy_core.white_noise((2, 2), 1, xp=cp)
        assert "white.cu" in cuda._modules
    assert sys.modules.get("cupy") is before
    assert cuda._modules == cache


# ----------------------------------------------------------------------------- CuPy 13 and 14

def _key(**values):
    from cupy_core.methods.bridge import KEY_FIELDS
    return cuda.struct(KEY_FIELDS, tuple(values[name] for name, _ in KEY_FIELDS))


def test_struct_argument_by_version(cp, probe):
    """A struct goes by value as a size-1 array under both CuPy versions; the
    structured scalar ``key[0]`` (what the launchers passed before) works on CuPy 14
    only: CuPy 13.6 raises TypeError('Unsupported type'), which killed GPU bakes at
    their first warped frame."""
    key = _key(k0=0xDEADBEEF, k1=7, frame=3, channels=19, normalise_all=1)
    out = cp.zeros(5, np.uint32)
    _run(cp, probe.get_function("probe_key"), 1, key, out)
    assert out.get().tolist() == [0xDEADBEEF, 7, 3, 19, 1]
    if cp.__version__.startswith("13"):
        with pytest.raises(TypeError, match="Unsupported type"):
            _run(cp, probe.get_function("probe_key"), 1, key[0], out)
    else:
        out[...] = 0
        _run(cp, probe.get_function("probe_key"), 1, key[0], out)
        assert out.get().tolist() == [0xDEADBEEF, 7, 3, 19, 1]


def test_scalar_arguments_by_version(cp, probe):
    """What each CuPy makes of Python numbers and host arrays: CuPy 13 turns a bool
    into int64 (bool is an int there), CuPy 14 keeps it a bool; both refuse a host
    array of more than one element and take one of size one by value."""
    k = probe.get_function("probe_philox")
    ctr, out = cp.zeros((4, 4), np.uint32), cp.zeros((4, 4), np.uint32)
    k((1,), (32,), (0, 4, ctr, np.uint32(1), np.uint32(2), out))       # ints -> long long
    k((1,), (32,), (np.zeros(1, np.int64), 4, ctr, np.array([1], np.uint32), np.uint32(2), out))
    with pytest.raises(TypeError, match="size one"):
        k((1,), (32,), (np.zeros(2, np.int64), 4, ctr, np.uint32(1), np.uint32(2), out))
    with pytest.raises(emulate.EmulationError, match="bool|bytes"):
        k((1,), (32,), (0, 4, ctr, True, np.uint32(2), out))       # 8 or 1 bytes, not 4


def test_launches_split_into_chunks_same_bits(cp, monkeypatch):
    """A pass split into many launches (a display GPU kills long ones) gives the
    same bits as one launch: every kernel takes the start of its chunk."""
    prior = cp.asarray(_prior((40, 50), 5, 3))
    pos = cp.asarray(fold(corners(36, 44), 44, 2.5, 4.0))
    whole = {m: cupy_core.warp(prior, pos, method=m, seed=4).get() for m in ("grid", "particle")}
    whole["upsample"] = cupy_core.warp(prior, pos, method="upsample", factor=3, seed=4).get()
    white = cupy_core.white_noise((33, 31), 6, seed=2, xp=cp).get()
    cuda._modules.clear()
    monkeypatch.setattr(cuda, "LAUNCH_WORK", 1)      # one block of THREADS per launch
    for m in ("grid", "particle", "upsample"):
        got = cupy_core.warp(prior, pos, method=m, seed=4,
                             factor=3 if m == "upsample" else None).get()
        np.testing.assert_array_equal(got, whole[m])
    np.testing.assert_array_equal(cupy_core.white_noise((33, 31), 6, seed=2, xp=cp).get(), white)
    gather = cuda._modules["grid2d.cu"].get_function("grid2d_gather")
    assert gather.launches == -(-36 * 44 // cuda.THREADS)   # one launch per block
    assert cuda._modules["white.cu"].get_function("white_noise").launches == -(-33 * 31 // cuda.THREADS)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_one_draw_per_piece(cp, method):
    """Counted by the emulation (shim.h WORK_COUNT): pass 2 draws each piece's normals
    once, the gather draws none (only the fresh noise of pieceless targets)."""
    h, w, C = 10, 12, 5
    pos = swirl(corners(h, w), h, w, 0.5, 0.7)
    args = (cp.asarray(_prior((h, w), C, 0)), cp.asarray(pos))
    cupy_core.warp(*args, method=method, at="corners", seed=2)      # compiles the module
    mod = cuda._modules[f"{method}2d.cu"]
    before = {name: dict(k.work) for name, k in mod._functions.items()}
    cupy_core.warp(*args, method=method, at="corners", seed=2)
    work = {name: {kind: v - before[name][kind] for kind, v in k.work.items()}
            for name, k in mod._functions.items()}
    pieces = work[f"{method}2d_sum_pieces"]["geometry"]
    assert work[f"{method}2d_sum_weights"]["geometry"] == h * w
    if method == "grid":
        # Pass 1 fills the piece cache: passes 2 and 4 walk no geometry.
        assert pieces == 0 and work["grid2d_gather"]["geometry"] == 0
    else:
        assert pieces == h * w * -(-C // 16)             # one walk per target and chunk
    assert work[f"{method}2d_sum_pieces"]["philox"] > 0
    assert work[f"{method}2d_gather"]["philox"] == 0      # every target here has pieces
    assert work[f"{method}2d_sum_weights"]["philox"] == 0


def test_count_work_counts_float64_operations(tmp_path):
    """count_work.py compiles the kernels with the shim's counted double: float64
    operations by kind per pass; the grid's piece cache leaves passes 2 and 4 no walk."""
    import json
    import subprocess
    out = tmp_path / "work.json"
    script = os.path.join(TESTS, "cuda_emulation", "count_work.py")
    subprocess.run([sys.executable, script, "--size", "12", "--channels", "4", "--json",
                    str(out)], check=True, capture_output=True, text=True)
    rec = json.loads(out.read_text())
    grid = rec["grid"]["passes"]
    assert grid["sum_weights"]["geometry"] == 0.25          # one walk per pixel, 4 channels
    assert grid["sum_pieces"]["geometry"] == 0 and grid["gather"]["geometry"] == 0
    assert grid["sum_weights"]["f64_div"] > 0 and grid["sum_weights"]["f64_add"] > 0
    assert grid["sum_pieces"]["f64_sqrt"] > 0               # sqrt(a_i) per piece
    part = rec["particle"]["passes"]
    assert part["sum_pieces"]["geometry"] == part["gather"]["geometry"] == 0.25
    for method in ("grid", "particle"):
        est = rec[method]["estimate_ms_1920x1080"]
        assert est["RTX 4090"] > est["H100 SXM"] > 0


@pytest.mark.parametrize("name", ["swirl", "fold", "minify", "magnify_strong", "far_outside"])
@pytest.mark.parametrize("method", ["grid", "particle"])
def test_numpy_blocks_and_threads_change_no_bit(cp, monkeypatch, method, name):
    """The CPU path's split (grid chunks, bridge blocks, the thread pool, local or
    deferred T sums) changes no bit: tiny blocks on threads equal the kernels."""
    from cupy_core.methods import bridge, grid2d, particle2d
    src, (h, w), make = MAPS[name]
    pos = make(h, w, "corners")
    prior = _prior(src, 6, 5)
    gpu = cupy_core.warp(cp.asarray(prior), cp.asarray(pos), method=method, seed=4, frame=2)
    for wide in (4096, 0):
        monkeypatch.setattr(bridge, "BLOCK_PIECES", 7)
        monkeypatch.setattr(bridge, "WIDE_MIN", wide)
        monkeypatch.setattr(grid2d, "CHUNK_PAIRS", 5)
        monkeypatch.setattr(grid2d, "BAND_TARGETS", 1)     # a band per row of targets
        monkeypatch.setattr(particle2d, "CHUNK", 3)
        monkeypatch.setattr(rng, "PARALLEL_MIN", 1)
        _compare_to_numpy(gpu.get(), lambda: cupy_core.warp(prior, pos, method=method,
                                                             seed=4, frame=2))


def _bridge_by_passes(prior, target, source, weight, n_target, normalise_all, seed, frame):
    """bridge.py's one-function-per-pass reference, composed as the kernels run them."""
    from cupy_core.methods import bridge
    prior_cm = np.ascontiguousarray(prior.T, dtype=np.float64)
    channels, n_source = prior_cm.shape
    S = bridge.sum_weights(source, weight, n_source)
    a = bridge.scaled_areas(source, weight, S, normalise_all)
    Z = bridge.piece_draws(target, source, a, channels, seed, frame)
    T = bridge.sum_pieces(source, Z, n_source)
    G = bridge.target_sums(target, Z, n_target)
    D = bridge.remainders(prior_cm, T, S, normalise_all, seed, frame)
    return bridge.gather(target, source, a, G, D, n_target, channels, seed, frame).T


@pytest.mark.parametrize("name", ["swirl", "fold", "magnify_strong", "far_outside"])
@pytest.mark.parametrize("method", ["grid", "particle"])
def test_fused_bridge_equals_the_passes(monkeypatch, method, name):
    """bridge_numpy (fused per block, threaded) gives the bits of the per-pass reference
    functions, also with tiny blocks."""
    import importlib
    from cupy_core.methods import bridge
    w = importlib.import_module("cupy_core.warp")
    src, (h, wd), make = MAPS[name]
    pos = make(h, wd, "corners")
    geom, valid = w._geometry(method, pos, "corners")
    t, s, a = w._pieces_numpy(method, geom, valid, src)
    prior = _prior(src, 7, 3).reshape(-1, 7).astype(np.float64)
    ref = _bridge_by_passes(prior, t, s, a, h * wd, method == "particle", 9, 4)
    for block in (bridge.BLOCK_PIECES, 5):
        monkeypatch.setattr(bridge, "BLOCK_PIECES", block)
        got = bridge.bridge_numpy(prior, t, s, a, h * wd, method == "particle", 9, 4)
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_fused_bridge_takes_the_record_in_any_order(monkeypatch, method):
    """A record not sorted by target is sorted first, keeping each target's own order:
    the same bits as the sorted record. Also when each half (pass 1 checks the halves on
    two threads) is in order and only the step between them is not."""
    import importlib
    from cupy_core.methods import bridge
    w = importlib.import_module("cupy_core.warp")
    monkeypatch.setattr(rng, "PARALLEL_MIN", 1)
    monkeypatch.setattr(bridge, "BLOCK_PIECES", 9)
    normalise_all = method == "particle"
    src, (h, wd), make = MAPS["swirl"]
    geom, valid = w._geometry(method, make(h, wd, "corners"), "corners")
    t, s, a = w._pieces_numpy(method, geom, valid, src)
    prior = _prior(src, 5, 3).reshape(-1, 5).astype(np.float64)
    ref = bridge.bridge_numpy(prior, t, s, a, h * wd, normalise_all, 9, 4)
    runs = np.split(np.arange(t.size), np.flatnonzero(np.diff(t)) + 1)
    order = np.concatenate(runs[::-1])        # targets descending, each in its own order
    got = bridge.bridge_numpy(prior, t[order], s[order], a[order], h * wd, normalise_all, 9, 4)
    assert np.array_equal(got, ref)
    # Halves in order, the step between them not: targets 5..7 then 0..2.
    t2 = np.array([0, 1, 1, 2, 5, 5, 6, 7])
    s2 = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    a2 = np.array([1.0, 0.5, 0.25, 1.0, 0.5, 0.75, 1.0, 0.125])
    p2 = np.arange(24, dtype=np.float64).reshape(8, 3) / 7.0 - 1.5
    ref2 = bridge.bridge_numpy(p2, t2, s2, a2, 8, normalise_all, 9, 4)
    swap = np.r_[4:8, 0:4]
    got2 = bridge.bridge_numpy(p2, t2[swap], s2[swap], a2[swap], 8, normalise_all, 9, 4)
    assert np.array_equal(got2, ref2)
