"""CPU and GPU give the same noise for the same seed (docs/DESIGN.md 4.4 property 6).

Runs on a machine with CuPy and a CUDA device; elsewhere each test is skipped with the
reason printed (``pytest -rs``). tests/methods/test_kernels_emulated.py runs the same kernels
through a host-side shim on every machine.
"""
import numpy as np
import pytest

import cupy_core
from cupy_core.device import gpu_available, gpu_status
from checks import assert_gpu_matches_cpu
from maps import centers, corners, fold, swirl

if not gpu_available():
    pytest.skip(f"no GPU: {gpu_status().summary()}", allow_module_level=True)

import cupy  # noqa: E402


@pytest.mark.parametrize("channels", [1, 4, 16, 19])
def test_white_noise_same_bits(channels):
    a = cupy_core.white_noise((37, 53), channels, seed=12, frame=3)
    b = cupy_core.white_noise((37, 53), channels, seed=12, frame=3, xp=cupy)
    np.testing.assert_array_equal(a, b.get())


CASES = {
    "identity": lambda h, w, at: corners(h, w) if at == "corners" else centers(h, w),
    "swirl": lambda h, w, at: swirl(corners(h, w) if at == "corners" else centers(h, w), h, w),
    "fold": lambda h, w, at: fold(corners(h, w) if at == "corners" else centers(h, w), w, 2.5, 4.0),
    "minify+nan": lambda h, w, at: np.where(
        (np.arange(h + (at == "corners"))[:, None, None] % 9) == 4, np.nan,
        (corners(h, w) if at == "corners" else centers(h, w)) * 1.7 - 5),
}


@pytest.mark.parametrize("method", ["grid", "particle"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("at", ["corners", "centers"])
@pytest.mark.parametrize("channels", [4, 16, 17])
def test_cpu_gpu_agree(method, case, at, channels):
    h, w = 64, 72
    prior = cupy_core.white_noise((70, 80), channels, seed=1)
    pos = CASES[case](h, w, at)
    assert_gpu_matches_cpu(cupy, prior, pos, method=method, at=at, seed=5, frame=2)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_gpu_runs_are_bitwise_repeatable(method):
    prior = cupy.asarray(cupy_core.white_noise((128, 128), 4, seed=1))
    pos = cupy.asarray(fold(corners(128, 128), 128, 2.5, 4.0))
    a = cupy_core.warp(prior, pos, method=method, seed=3)
    b = cupy_core.warp(prior, pos, method=method, seed=3)
    assert bool((a == b).all())


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_chain_agrees_after_many_frames(method):
    cpu = cupy_core.NoiseWarper((48, 48), 4, method=method, seed=2, device="cpu")
    gpu = cupy_core.NoiseWarper((48, 48), 4, method=method, seed=2, device="gpu")
    for f in range(30):
        pos = swirl(corners(48, 48), 48, 48, phase=0.3 * f)
        cpu.step(pos)
        gpu.step(pos)
    np.testing.assert_allclose(gpu.noise.get(), cpu.noise, atol=1e-4)
