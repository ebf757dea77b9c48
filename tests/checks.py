"""Assertions shared by the warp tests (2-D, 3-D, CPU, GPU)."""
import numpy as np

import cupy_core


def assert_fresh_normal(border, prior_same=None, min_n=1):
    """``border`` (values of targets with no source) looks like fresh N(0, 1): mean and
    variance within 5 standard errors, and, given ``prior_same`` (the prior at the same
    places), uncorrelated with it: fresh, not copied."""
    border = np.asarray(border, np.float64).ravel()
    n = border.size
    assert n >= min_n, (n, min_n)
    assert abs(border.mean()) < 5 / np.sqrt(n)
    assert abs(border.var() - 1) < 5 * np.sqrt(2 / n)
    if prior_same is not None:
        r = np.corrcoef(border, np.asarray(prior_same).ravel())[0, 1]
        assert abs(r) < 5 / np.sqrt(n)


def assert_gpu_matches_cpu(cupy, prior, pos, tol=1e-5, **kw):
    """``warp`` on the GPU gives float32 CuPy noise within ``tol`` of the CPU's."""
    cpu = cupy_core.warp(prior, pos, **kw)
    gpu = cupy_core.warp(cupy.asarray(prior), cupy.asarray(pos), **kw)
    assert isinstance(gpu, cupy.ndarray) and gpu.dtype == cupy.float32
    gpu = gpu.get()
    assert np.isfinite(gpu).all() and np.isfinite(cpu).all()
    np.testing.assert_allclose(gpu, cpu, atol=tol, rtol=0)


def fake_gpu_device(monkeypatch, cp, props, **runtime):
    """What the emulated CuPy lacks for the benchmark's GPU path, for a test: CUDA
    events timing every frame at 0.5 ms, memory hooks, and ``cp.cuda.runtime`` answering
    with ``props`` (device properties) and ``runtime`` (more runtime functions); the
    memory clock and bus width of an H100 (3.352 TB/s)."""
    import types

    class Event:
        def record(self):
            pass

        def synchronize(self):
            pass

    class MemoryHook:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(cp.cuda, "Event", Event, raising=False)
    monkeypatch.setattr(cp.cuda, "MemoryHook", MemoryHook, raising=False)
    monkeypatch.setattr(cp.cuda, "get_elapsed_time", lambda a, b: 0.5, raising=False)
    rt = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda d: props,
                               deviceGetAttribute=lambda a, d: {36: 2619000, 37: 5120}[a],
                               **runtime)
    monkeypatch.setattr(cp.cuda, "runtime", rt)
