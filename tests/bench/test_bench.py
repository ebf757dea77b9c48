"""The benchmark harness (cupy_core/bench.py): records, the GPU path (on the fake CuPy
of tests/cuda_emulation, with stand-ins for CUDA events and memory hooks), the report,
and the analytic values its quality tables quote."""
import json
import math
import os
import sys

import numpy as np
import pytest

import cupy_core
from cupy_core.bench import run as bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import fake_gpu_device  # noqa: E402
from cuda_emulation import emulate, fake_cupy  # noqa: E402

KEYS = {"method", "dims", "shape", "channels", "backend", "device", "ms_per_frame",
        "peak_bytes", "frames", "status"}


class TinyRun(bench.SpeedRun):
    def configs(self, backend):
        return [("grid", None, (12, 10), 4), ("particle", None, (12, 10), 4),
                ("upsample", 2, (12, 10), 4), ("upsample", 4, (12, 10), 5)]


def test_bench_map_is_smooth_subpixel_motion():
    for shape in ((20, 30), (6, 7, 8)):
        pos = bench.bench_map(shape)
        assert pos.shape == tuple(s + 1 for s in shape) + (len(shape),)
        disp = pos - cupy_core.conventions.pixel_corners(shape)
        assert np.isfinite(pos).all() and 0.05 < np.abs(disp).max() < 1.5


def test_cpu_records(capsys):
    recs = TinyRun(["numpy"], quick=True, budget=10.0, log=print).run()
    assert len(recs) == 4
    for r in recs:
        assert KEYS <= set(r), KEYS - set(r)
        assert r["status"] == "ok" and r["backend"] == "numpy" and r["dims"] == 2
        assert r["frames"] >= bench.MIN_FRAMES and r["ms_per_frame"] > 0
        assert r["peak_bytes"] >= r["output_bytes"]   # the output is allocated in the frame
        assert ("factor" in r) == (r["method"] == "upsample")
    json.dumps(recs, allow_nan=False)


def test_slow_configuration_is_skipped_with_reason():
    run = TinyRun(["numpy"], quick=True, budget=1e-9, log=lambda m: None)
    recs = run.run()
    # the first of each kind runs (with fewer frames), later ones are estimated and skipped
    assert recs[0]["frames"] == 1 and "note" in recs[0]
    up = [r for r in recs if r["method"] == "upsample"]
    assert all(r["status"] == "ok" for r in up)    # different factors: no estimate yet
    again = run.measure("numpy", "cpu", "upsample", 4, (24, 20), 4)
    assert again["status"] == "skipped" and "estimated" in again["reason"]
    assert again["ms_per_frame"] is None and again["estimated_ms_per_frame"] > 0


def test_not_implemented_is_recorded():
    run = bench.SpeedRun(["numpy"], quick=True, budget=10.0, log=lambda m: None)
    rec = run.measure("numpy", "cpu", "upsample", 2, (4, 5, 6), 4)
    assert rec["status"] == "skipped" and "not implemented" in rec["reason"]


@pytest.mark.skipif(not emulate.compiler_available(), reason="CUDA emulation needs g++")
def test_gpu_path_on_emulated_cupy(monkeypatch):
    """The CuPy branch of the harness, on the fake CuPy with stand-ins for what it lacks
    (events, memory hooks, device attributes); real GPUs run the same code."""
    with fake_cupy.installed() as cp:
        fake_gpu_device(monkeypatch, cp, {"name": b"NVIDIA H100 80GB HBM3"})
        name, bw = bench.gpu_info()
        assert name == "NVIDIA H100 80GB HBM3" and bw == pytest.approx(3.352e12, rel=1e-3)
        recs = TinyRun(["cupy"], quick=True, budget=10.0, log=lambda m: None).run()
    for r in recs:
        assert KEYS <= set(r) and r["status"] == "ok" and r["backend"] == "cupy"
        assert r["timing"] == "CUDA events" and r["frames"] == bench.GPU_FRAMES
        assert r["ms_per_frame"] == 0.5
        fl = bench.floor_bytes(r["shape"], r["channels"]) / bw * 1e3
        assert r["floor_ms"] == pytest.approx(fl, rel=1e-3)
        assert r["memory_target_bytes"] == 3 * 120 * r["channels"] * 4
    text = "\n".join(bench.gpu_tables(recs))
    assert "upsample N=4" in text and "x floor" in text


def test_floor_bytes_matches_design():
    # docs/DESIGN.md 11: 1024 x 1024 x 4 reads and writes about 40 MB
    assert bench.floor_bytes((1024, 1024), 4) == (2 + 8) * 4 * 1024 * 1024


@pytest.mark.parametrize("d", [0.0, 0.2, 0.3, 0.37, 0.5, 0.99])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 16])
def test_axis_share_by_counting(d, n):
    centres = (np.arange(n) + 0.5) / n          # of source pixel [0, 1)
    # the target [0, 1) reads [d, 1 + d): the centres of [0, 1) at or right of d
    assert bench._axis_share(d, n) == np.mean(centres >= d)
    assert abs(bench._axis_share(d, n) - (1 - d)) <= 0.5 / n + 1e-12


def test_markdown_report(tmp_path):
    recs = TinyRun(["numpy"], quick=True, budget=10.0, log=lambda m: None).run()
    recs.append({"method": "grid", "dims": 3, "shape": [4, 5, 6], "channels": 4,
                 "backend": "numpy", "device": "cpu", "ms_per_frame": None, "frames": 0,
                 "status": "skipped", "reason": "not implemented: test"})
    meta = {"date": "today", "version": "0", "python": "3", "numpy": np.__version__,
            "cpu": "cpu", "budget": 10.0, "gpu": None, "command": "python build.py bench",
            "root_md": False}
    q = {"shape": [8, 8], "channels": 4, "frames": 4, "seed": 0, "measured_from_frame": 2,
         "motions": {"translate": {"about": "t", "infinite_resolution": 0.56,
                                   "infinite_resolution_from": "analytic", "methods": {
                                       "grid": {"carried": 0.56, "carried_se": 0.01, "error": 0.0,
                                                "ks_D": 0.01, "ks_p": 0.5, "morans_I": 0.0,
                                                "morans_I_z": 0.1},
                                       "particle": {"carried": 0.56, "carried_se": 0.01,
                                                    "error": 0.0, "ks_D": 0.01, "ks_p": 0.5,
                                                    "morans_I": 0.0, "morans_I_z": 0.1},
                                       "upsample N=2": {"carried": 0.5, "carried_se": 0.01,
                                                        "error": -0.06, "analytic": 0.5,
                                                        "factor": 2, "ks_D": 0.01, "ks_p": 0.5,
                                                        "morans_I": 0.0, "morans_I_z": 0.1}}}}}
    bench.write_markdown(tmp_path / "B.md", recs, q, meta)
    text = (tmp_path / "B.md").read_text()
    assert "this run had no GPU" in text and "upsample N=4" in text
    assert "Speed-up against the baseline" in text and "not implemented: test" in text
    assert "| upsample N=2 | 0.5000 |" in text
    pytest.importorskip("matplotlib")
    bench.plot_convergence(q, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_infinite_resolution_translation():
    """The exact-area value equals (1 - dx)(1 - dy) for a translation."""
    shape = (12, 14)
    pos = cupy_core.conventions.pixel_corners(shape) + [0.3, 0.2]
    inner = np.zeros(shape, bool)
    inner[2:-2, 2:-2] = True
    assert bench.infinite_resolution_carried(pos, shape, inner) == pytest.approx(0.56, abs=1e-12)
    assert math.isclose(bench.quality_motions(shape)["translate"]["analytic"]["infinite"], 0.56)
