"""The upsampling baseline's kernels (upsample.cu), run on the CPU through the g++ shim
of tests/cuda_emulation, against the NumPy path (upsample.py): docs/DESIGN.md 4.4 property 6
for method="upsample". tests/methods/test_kernels_emulated.py explains the emulation.
"""
import os
import sys

import numpy as np
import pytest

import cupy_core
from cupy_core.methods import cuda, upsample

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_emulation import emulate, fake_cupy  # noqa: E402
from maps import corners, swirl  # noqa: E402
from test_kernels_emulated import MAPS, _prior  # noqa: E402  (the same hard maps)

if not emulate.compiler_available():
    pytest.skip(f"CUDA emulation needs a C++ compiler ({emulate.CXX!r} not found)",
                allow_module_level=True)


# Both CuPy versions users have: 13.6 (Blender's NumPy 1.26) and 14 take kernel
# arguments by different rules (cuda_emulation/emulate.py).
@pytest.fixture(scope="module", params=["13.6.0", "14.0.1"], ids=["cupy13", "cupy14"])
def cp(request):
    with fake_cupy.installed(version=request.param) as mod:
        yield mod


def _compare(cp, prior, pos, at, factor, seed, frame):
    gpu = cupy_core.warp(cp.asarray(prior), cp.asarray(pos), method="upsample", at=at,
                         factor=factor, seed=seed, frame=frame)
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == np.float32
    cpu = cupy_core.warp(prior, pos, method="upsample", at=at, factor=factor, seed=seed,
                         frame=frame)
    g = gpu.get()
    assert g.shape == cpu.shape
    assert np.isfinite(g).all(), "kernels gave non-finite values"
    np.testing.assert_array_equal(g, cpu)   # bit for bit (fixed-point sums)


@pytest.mark.parametrize("channels", [1, 4, 17])
@pytest.mark.parametrize("factor", [1, 3, 4])
@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("at", ["corners", "centers"])
def test_upsample_kernels_match_numpy(cp, name, factor, channels, at):
    src, (h, w), make = MAPS[name]
    seed = 100 * factor + sorted(MAPS).index(name)
    _compare(cp, _prior(src, channels, seed), make(h, w, at), at, factor, seed, frame=2)


def test_offsets_kernel_matches_reference(cp):
    """Pass 1 alone: X_k / N - mean of the N^2 draws, per source and channel."""
    prior = _prior((5, 6), 6, 0)
    flat = prior.reshape(-1, 6)
    factor, seed, frame = 5, 11, 3
    key = cuda.struct(upsample.KEY_FIELDS, (*cupy_core.methods.rng.seed_key(seed), frame, 6, factor))
    off = cp.empty((30, 6), np.int64)
    cuda.launch("upsample.cu", "upsample_offsets", 30, (cp.asarray(flat), off, key))
    ref = upsample.offsets(flat.T.astype(np.float64), np.arange(30), factor, seed, frame)
    np.testing.assert_array_equal(off.get(), ref.T)


def test_large_factor_and_chain(cp):
    """N = 16 on a swirl, chained three frames through NoiseWarper on both paths."""
    h, w = 9, 10
    gpu = cupy_core.NoiseWarper((h, w), 5, method="upsample", factor=16, seed=4, device="gpu")
    cpu = cupy_core.NoiseWarper((h, w), 5, method="upsample", factor=16, seed=4, device="cpu")
    for t in range(3):
        pos = swirl(corners(h, w), h, w, 0.6, 0.8, phase=t)
        gpu.step(pos)
        cpu.step(pos)
    np.testing.assert_array_equal(gpu.noise.get(), cpu.noise)
