"""The 3-D CUDA kernels (grid3d.cu, particle3d.cu), run on the CPU through the host-side
shim of tests/cuda_emulation, against the NumPy path (docs/DESIGN.md 4.4 property 6).

Same harness as tests/methods/test_kernels_emulated.py (its fake-CuPy fixture and comparison
helpers): cupy_core.warp takes its GPU branch unchanged, with the kernel arguments
checked against the parsed signatures. tests/test_gpu3d.py runs the same comparisons on
a real GPU. The kernels are written as operation-for-operation twins of grid3d.py and
particle3d.py, so the partition volumes agree to the bit; only the libm behind the
normals differs (see test_kernels_emulated.test_normals4_matches_rng).
"""
import numpy as np
import pytest

import cupy_core
from cupy_core.methods import cuda
from maps import affine, centers3, corners3, fold3, rotation3, swirl3
from test_kernels_emulated import _check, _compare, _prior, cp  # noqa: F401 (fixture)


def _pos(d, h, w, at):
    return corners3(d, h, w) if at == "corners" else centers3(d, h, w)


def _nan_holes(p):
    p = p.copy()
    p[1:3, 2:4, 1:3] = np.nan         # a block of holes
    p[-1, 0, 1, 2] = np.nan           # one coordinate of one point
    return p


def _far(p):
    p = p + np.array([0.25, -0.4, 0.1])
    p[1, 1] += 1e6                    # a row far away
    p[2, 2, 2] = (-1e15, 3e14, 7e300)
    return p


def _mirror(p, d, h, w):
    q = p.copy()
    q[..., 0] = np.abs(p[..., 0] - w / 2.0) + 0.3      # folds the left half over the right
    return q


MAPS = {
    # name: (source shape, target shape, positions(d, h, w, at))
    "identity": ((5, 6, 7), (5, 6, 7), lambda d, h, w, at: _pos(d, h, w, at)),
    "integer_shift": ((5, 6, 7), (5, 6, 7), lambda d, h, w, at: _pos(d, h, w, at) + [2.0, -1.0, 1.0]),
    "translate": ((5, 6, 7), (5, 6, 7), lambda d, h, w, at: _pos(d, h, w, at) + [0.37, -1.61, 0.45]),
    "rotate": ((6, 6, 6), (6, 6, 6), lambda d, h, w, at: affine(
        _pos(d, h, w, at), rotation3([1, 2, 3], 0.4), [0.1, 0.2, 0.3], [3, 3, 3])),
    "swirl": ((6, 7, 6), (6, 7, 6), lambda d, h, w, at: swirl3(_pos(d, h, w, at), d, h, w, 0.8, 0.7)),
    "fold": ((6, 6, 6), (6, 6, 6), lambda d, h, w, at: fold3(_pos(d, h, w, at), 2.0, 5.0)),
    "mirror": ((5, 5, 6), (5, 5, 6), lambda d, h, w, at: _mirror(_pos(d, h, w, at), d, h, w)),
    "nan_holes": ((5, 6, 6), (5, 6, 6), lambda d, h, w, at: _nan_holes(swirl3(_pos(d, h, w, at), d, h, w))),
    "far_outside": ((5, 5, 5), (4, 4, 5), lambda d, h, w, at: _far(_pos(d, h, w, at))),
    "all_outside": ((4, 4, 4), (3, 4, 3), lambda d, h, w, at: _pos(d, h, w, at) + [-50.0, 100.0, 3.0]),
    "magnify": ((4, 7, 9), (6, 5, 4), lambda d, h, w, at: _pos(d, h, w, at) * 0.55 + [1.3, 0.8, 0.4]),
    "minify": ((9, 10, 11), (3, 4, 3), lambda d, h, w, at: _pos(d, h, w, at) * [3.1, 2.3, 2.7] + 0.2),
}

METHODS_AT = [("grid", "corners"), ("grid", "centers"), ("particle", "centers"),
              ("particle", "corners")]


@pytest.mark.parametrize("channels", [1, 4, 17])
@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("method,at", METHODS_AT)
def test_warp_kernels_match_numpy_3d(cp, method, at, name, channels):
    src, (d, h, w), make = MAPS[name]
    pos = make(d, h, w, at)
    seed = 100 * channels + sorted(MAPS).index(name)
    _compare(cp, _prior(src, channels, seed), pos, method, at, seed=seed, frame=5)


def test_fold_map_has_mixed_cells():
    """The 'fold' map exercises the per-tetrahedron fail-safe (cells of both
    orientations), 'mirror' the inverted but consistent cells."""
    from test_grid3d import orientations
    o = orientations(MAPS["fold"][2](6, 6, 6, "corners"))
    assert ((o < 0).any(0) & (o > 0).any(0)).sum() >= 20
    o = orientations(MAPS["mirror"][2](5, 5, 6, "corners"))
    assert (o < 0).all(0).sum() >= 20


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_same_bits_as_numpy(cp, method):
    """Volumes, weights and normals agree to the bit, so the outputs are identical."""
    pos = fold3(corners3(6, 6, 6), 2.0, 5.0)
    prior = _prior((6, 6, 6), 4, 3)
    g = cupy_core.warp(cp.asarray(prior), cp.asarray(pos), method=method, seed=1).get()
    c = cupy_core.warp(prior, pos, method=method, seed=1)
    np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_noise_warper_gpu_matches_cpu_3d(cp, method):
    d = h = w = 6
    maps = [swirl3(corners3(d, h, w), d, h, w, 0.5, 0.5, phase=t) for t in range(3)]
    gpu = cupy_core.NoiseWarper((d, h, w), 5, method=method, seed=9, device="gpu")
    for pos in maps:
        out = gpu.step(pos)
        assert isinstance(out, cp.ndarray)
    cpu = cupy_core.NoiseWarper((d, h, w), 5, method=method, seed=9, device="cpu")
    for pos in maps:
        cpu.step(pos)
    _check(cpu.noise, gpu.noise.get())
    np.testing.assert_array_equal(gpu.noise.get(), cpu.noise)


def test_buffer_reinterpretation_is_only_D_3d(cp):
    pos = swirl3(corners3(4, 4, 4), 4, 4, 4)
    for method in ("grid", "particle"):
        cupy_core.warp(cp.asarray(_prior((4, 4, 4), 3, 0)), cp.asarray(pos), method=method)
        mod = cuda._modules[f"{method}3d.cu"]
        assert mod.reinterpretations == {(f"{method}3d_gather", "D", "uint64", "double")}
