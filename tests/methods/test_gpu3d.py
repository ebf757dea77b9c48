"""3-D (voxels): CPU and GPU give the same noise for the same seed (docs/DESIGN.md 4.4
property 6), on a machine with CuPy and a CUDA device; elsewhere each test is skipped
with the reason printed (``pytest -rs``). tests/methods/test_kernels_emulated_3d.py runs the
same kernels through a host-side shim on every machine."""
import numpy as np
import pytest

import cupy_core
from cupy_core.device import gpu_available, gpu_status
from checks import assert_gpu_matches_cpu
from maps import centers3, corners3, fold3, swirl3

if not gpu_available():
    pytest.skip(f"no GPU: {gpu_status().summary()}", allow_module_level=True)

import cupy  # noqa: E402


def _pos(d, h, w, at):
    return corners3(d, h, w) if at == "corners" else centers3(d, h, w)


CASES = {
    "identity": lambda d, h, w, at: _pos(d, h, w, at),
    "swirl": lambda d, h, w, at: swirl3(_pos(d, h, w, at), d, h, w, 0.8, 0.7),
    "fold": lambda d, h, w, at: fold3(_pos(d, h, w, at), 2.0, 5.0),
    "minify+nan": lambda d, h, w, at: np.where(
        (np.arange(d + (at == "corners"))[:, None, None, None] % 7) == 3, np.nan,
        _pos(d, h, w, at) * 1.7 - 3),
}


@pytest.mark.parametrize("method", ["grid", "particle"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("at", ["corners", "centers"])
@pytest.mark.parametrize("channels", [4, 17])
def test_cpu_gpu_agree_3d(method, case, at, channels):
    d, h, w = 20, 22, 24
    prior = cupy_core.white_noise((22, 24, 26), channels, seed=1)
    pos = CASES[case](d, h, w, at)
    assert_gpu_matches_cpu(cupy, prior, pos, method=method, at=at, seed=5, frame=2)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_gpu_runs_are_bitwise_repeatable_3d(method):
    prior = cupy.asarray(cupy_core.white_noise((40, 40, 40), 4, seed=1))
    pos = cupy.asarray(fold3(corners3(40, 40, 40), 2.0, 5.0))
    a = cupy_core.warp(prior, pos, method=method, seed=3)
    b = cupy_core.warp(prior, pos, method=method, seed=3)
    assert bool((a == b).all())


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_chain_agrees_after_many_frames_3d(method):
    n = 16
    cpu = cupy_core.NoiseWarper((n, n, n), 4, method=method, seed=2, device="cpu")
    gpu = cupy_core.NoiseWarper((n, n, n), 4, method=method, seed=2, device="gpu")
    for f in range(15):
        pos = swirl3(corners3(n, n, n), n, n, n, 0.3, 0.4, phase=0.3 * f)
        cpu.step(pos)
        gpu.step(pos)
    np.testing.assert_allclose(gpu.noise.get(), cpu.noise, atol=1e-4)
