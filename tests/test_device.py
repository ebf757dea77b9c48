"""The GPU probe (cupy_core/device.py): "auto" falls back to the CPU with one warning
naming the cause and what to install; "gpu" is a clear error. Run against the
emulated CuPy (tests/cuda_emulation), whose compiler can be made to fail as CuPy's
does when NVRTC or its headers are missing."""
import os
import sys
import warnings

import numpy as np
import pytest

import cupy_core
from cupy_core import device
from cupy_core.cli.flow import main as cli_main

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # conftest.py does this too
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_emulation import emulate, fake_cupy  # noqa: E402

if not emulate.compiler_available():
    pytest.skip(f"CUDA emulation needs a C++ compiler ({emulate.CXX!r} not found)",
                allow_module_level=True)

NVRTC_MISSING = "nvrtc: error: libnvrtc.so.12: cannot open shared object file"


def test_probe_passes_on_a_working_cupy():
    with fake_cupy.installed(version="13.6.0") as cp:
        status = device.gpu_status()
        assert status.ok and status.reason is None
        assert status.cupy_version == "13.6.0" and status.name.startswith("Emulated")
        assert status.cuda_version == "12.8" and status.driver_version == "13.0"
        assert "Emulated" in status.summary()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warper = cupy_core.NoiseWarper((8, 8), 4, device="auto")
        assert warper.device == "gpu" and isinstance(warper.noise, cp.ndarray)


def test_failed_compile_falls_back_with_one_warning():
    with fake_cupy.installed(compile_error=NVRTC_MISSING):
        with pytest.warns(RuntimeWarning) as caught:
            a = cupy_core.NoiseWarper((8, 8), 4, seed=3, device="auto")
            b = cupy_core.NoiseWarper((8, 8), 4, seed=3, device="auto")
        assert len(caught) == 1, [str(w.message) for w in caught]
        text = str(caught[0].message)
        assert "running on the CPU" in text and "libnvrtc.so.12" in text
        assert "nvidia-cuda-nvrtc-cu12" in text          # what to install
        assert a.device == b.device == "cpu"
        np.testing.assert_array_equal(a.noise, cupy_core.white_noise((8, 8), 4, seed=3))
        status = device.gpu_status()
        assert not status.ok and "cannot be compiled" in status.reason


def test_failed_compile_is_an_error_for_device_gpu():
    with fake_cupy.installed(compile_error=NVRTC_MISSING):
        with pytest.raises(device.GpuUnavailableError, match="nvidia-cuda-nvrtc-cu12") as err:
            cupy_core.NoiseWarper((8, 8), 4, device="gpu")
        assert isinstance(err.value, ValueError) and "libnvrtc.so.12" in str(err.value)


def test_probe_runs_once_per_process():
    with fake_cupy.installed(compile_error=NVRTC_MISSING):
        first = device.gpu_status()
        fake_cupy._config["compile_error"] = None        # fixed, but not probed again ...
        assert device.gpu_status() is first
        assert device.gpu_status(refresh=True).ok        # ... until asked to


def test_driver_error_names_the_driver(monkeypatch):
    with fake_cupy.installed() as cp:
        def no_driver():
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                               "insufficient for CUDA runtime version")
        monkeypatch.setattr(cp.cuda.runtime, "getDeviceCount", no_driver)
        status = device.gpu_status()
        assert not status.ok and "driver" in status.reason and "NVIDIA driver" in status.advice
        with pytest.warns(RuntimeWarning, match="driver"):
            assert device.use_gpu("auto") is False


def test_no_device_counts_as_unavailable(monkeypatch):
    with fake_cupy.installed() as cp:
        monkeypatch.setattr(cp.cuda.runtime, "getDeviceCount", lambda: 0)
        with pytest.warns(RuntimeWarning, match="no CUDA device"):
            assert device.use_gpu("auto") is False


def test_gpu_giving_other_bits_is_not_used(monkeypatch):
    """A GPU whose noise differs from the CPU's breaks the product's promise (the same
    seed, the same bits): the probe compares them."""
    with fake_cupy.installed() as cp:
        real = cupy_core.white_noise

        def off_by_one_ulp(*args, **kwargs):
            out = real(*args, **kwargs)
            if kwargs.get("xp") is cp:
                out = cp.asarray(np.nextafter(out.get(), np.inf, dtype=np.float32))
            return out
        monkeypatch.setattr("cupy_core.methods.white.white_noise", off_by_one_ulp)
        status = device.gpu_status()
        assert not status.ok and "differs" in status.reason


def test_without_cupy_auto_is_the_cpu_quietly(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)       # import cupy -> ImportError
    monkeypatch.setattr(device, "_status", None)
    monkeypatch.setattr(device, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # CPU is the plain choice: no warning
        assert device.use_gpu("auto") is False
    with pytest.raises(device.GpuUnavailableError, match="CuPy is not installed"):
        device.use_gpu("gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        device.use_gpu("cuda")


def test_command_line_device_gpu_is_exit_2(tmp_path, capsys):
    flows = tmp_path / "flows.npy"
    np.save(flows, np.zeros((2, 8, 8, 2), np.float32))
    with fake_cupy.installed(compile_error=NVRTC_MISSING):
        code = cli_main([str(flows), "--out", str(tmp_path / "out"), "--device", "gpu", "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: device 'gpu'")
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        # --gpu is the same as --device gpu
        assert cli_main([str(flows), "--out", str(tmp_path / "out"), "--gpu", "-q"]) == 2
        # auto: the CPU, one warning, a whole bake
        with pytest.warns(RuntimeWarning, match="running on the CPU"):
            code = cli_main([str(flows), "--out", str(tmp_path / "auto"), "-q"])
        assert code == 0 and len(list((tmp_path / "auto").glob("noise_*.npy"))) == 3


def test_status_without_waiting_and_one_probe_at_a_time():
    """``wait=False`` answers at once: None before the probe has run, the status after.
    Probes from two threads at once run one after the other, and the second finds the
    first's result (a panel probes in the background while a bake may start)."""
    import threading
    with fake_cupy.installed(version="13.6.0"):
        assert device.gpu_status(wait=False) is None
        results = []
        threads = [threading.Thread(target=lambda: results.append(device.gpu_status()))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 2 and results[0] is results[1] and results[0].ok
        assert device.gpu_status(wait=False) is results[0]
        assert device.gpu_status(refresh=True, wait=False) is None   # refresh must wait
