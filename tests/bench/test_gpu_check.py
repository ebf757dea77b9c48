"""``python build.py gpu-check`` (cupy_core/gpu_check.py): without a GPU it stops at once
and writes nothing; the whole pipeline (tests step, benchmark, results.json after each
configuration, the markdown section) runs on the CPU-emulated CuPy of
tests/cuda_emulation at tiny sizes; the pytest step, the deadline and the BENCHMARKS.md
section."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cupy_core.bench import gpu_check, run as bench, sections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import fake_gpu_device  # noqa: E402
from cuda_emulation import emulate, fake_cupy  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAKE_OK = gpu_check.Probe(True, name="NVIDIA H100 80GB HBM3 (emulated)",
                          summary="GPU: emulated on the CPU")


def _no_gpu_here():
    return not gpu_check.probe().ok


@pytest.mark.skipif(not _no_gpu_here(), reason="this machine has a usable GPU")
def test_without_gpu_stops_at_once_and_writes_nothing(tmp_path):
    out = tmp_path / "check"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "build.py"), "gpu-check", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == gpu_check.EXIT_NO_GPU, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60
    assert "no usable GPU" in proc.stderr and "Nothing was run or written" in proc.stderr
    assert not out.exists()


def _install_fake_device(monkeypatch, cp):
    """An emulated H100 for the benchmark's GPU path (checks.fake_gpu_device)."""
    props = {"name": b"NVIDIA H100 80GB HBM3", "major": 9, "minor": 0,
             "totalGlobalMem": 80 * 2**30, "multiProcessorCount": 132}
    fake_gpu_device(monkeypatch, cp, props, runtimeGetVersion=lambda: 13000,
                    driverGetVersion=lambda: 13010)
    monkeypatch.setattr(gpu_check, "probe", lambda: FAKE_OK)


@pytest.mark.skipif(not emulate.compiler_available(), reason="CUDA emulation needs g++")
def test_pipeline_on_emulated_cupy(tmp_path, monkeypatch):
    out = tmp_path / "check"
    configs = list(gpu_check.CONFIGS["tiny"])
    configs.insert(1, ("no-such-method", None, (12, 10), 4))   # raises: recorded, next runs
    seen = []
    measure = gpu_check.measure

    def spy(cfg, *a, **kw):
        # results.json already holds every configuration before this one
        seen.append(json.loads((out / "results.json").read_text())["benchmark"])
        return measure(cfg, *a, **kw)

    monkeypatch.setattr(gpu_check, "measure", spy)
    with fake_cupy.installed() as cp:
        _install_fake_device(monkeypatch, cp)
        code = gpu_check.run_check(out, configs=configs, tests=None, watchdog=False)
        cupy_version = cp.__version__
    assert code == gpu_check.EXIT_FAILED          # the broken configuration fails the run
    assert [len(s) for s in seen] == list(range(len(configs)))
    state = json.loads((out / "results.json").read_text())
    assert state["schema"] == gpu_check.SCHEMA and state["status"] == "complete"
    env = state["environment"]
    assert env["device"] == "NVIDIA H100 80GB HBM3" and env["compute_capability"] == "9.0"
    assert env["cuda_runtime"] == "13.0" and env["cuda_driver_api"] == "13.1"
    assert env["numpy"] == np.__version__ and env["cupy"] == cupy_version
    assert env["python"] and "driver" in env
    assert env["bandwidth_bytes_per_s"] == pytest.approx(3.352e12, rel=1e-3)
    assert state["tests"]["status"] == "not run"
    recs = state["benchmark"]
    assert [r["label"] for r in recs] == [gpu_check.config_label(c) for c in configs]
    assert state["planned"] == [r["label"] for r in recs]
    bad = recs[1]
    assert bad["status"] == "error" and "no-such-method" in bad["error"] and bad["traceback"]
    for r in recs[:1] + recs[2:]:
        assert r["status"] == "ok" and r["timing"] == "CUDA events", r
        assert r["ms_per_frame"] == 0.5 and r["frames"] == gpu_check.FRAMES
        fl = bench.floor_bytes(r["shape"], r["channels"]) / env["bandwidth_bytes_per_s"] * 1e3
        assert r["floor_ms"] == pytest.approx(fl, rel=1e-3)
        assert r["x_floor"] == pytest.approx(0.5 / fl, rel=1e-2)
        assert r["fraction_of_peak"] == pytest.approx(fl / 0.5, rel=1e-2)
    assert any(r["dims"] == 3 for r in recs)
    log = (out / "gpu-check.log").read_text()
    assert "no-such-method" in log and "x the floor" in log and "done in" in log
    md = (out / "BENCHMARKS-gpu.md").read_text()
    assert md.startswith(sections.BEGIN) and md.rstrip().endswith(sections.END)
    assert "NVIDIA H100 80GB HBM3" in md and "| 10 x 12 | 4 | grid | 0.5000 | 30 |" in md
    assert "no-such-method" in md and "CUDA runtime 13.0" in md

    # --render merges the section into a BENCHMARKS.md, replacing an older one
    target = tmp_path / "B.md"
    target.write_text("# Benchmarks\n\ntext\n\n" + gpu_check.render_section(None) + "\ntail\n")
    assert gpu_check.main(["--render", str(out), "--markdown", str(target)]) == 0
    text = target.read_text()
    assert text.count(sections.END) == 1 and "No GPU results yet" not in text
    assert "NVIDIA H100 80GB HBM3" in text and text.endswith("tail\n")
    assert text.startswith("# Benchmarks\n\ntext\n\n")


def test_deadline_leaves_configurations_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "probe", lambda: FAKE_OK)
    monkeypatch.setattr(gpu_check, "environment", lambda: {"device": "x", "cupy": "0",
                                                           "numpy": "0", "python": "3"})
    code = gpu_check.main(["--out", str(tmp_path), "--configs", "tiny", "--skip-tests",
                           "--deadline", "5"])
    state = json.loads((tmp_path / "results.json").read_text())
    assert code == gpu_check.EXIT_FAILED
    assert [r["status"] for r in state["benchmark"]] == ["not run"] * 4
    assert "deadline" in state["benchmark"][0]["reason"]
    assert "not run" in (tmp_path / "BENCHMARKS-gpu.md").read_text()
    assert state["command"].endswith("--deadline 5") and state["limits"]["deadline_s"] == 5


def test_watchdog_writes_results_and_exits_on_a_hang(tmp_path):
    """A configuration that hangs past the deadline: the watchdog records it, writes the
    files and exits 124 (in a child process: it ends its process)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from cupy_core.bench import gpu_check
        gpu_check.probe = lambda: gpu_check.Probe(True, summary="fake")
        gpu_check.environment = lambda: {{"device": "x", "cupy": "0", "numpy": "0",
                                          "python": "3"}}
        gpu_check.MIN_CONFIG_S = 0
        gpu_check.measure = lambda cfg, *a, **k: time.sleep(60)
        sys.exit(gpu_check.run_check({str(tmp_path)!r}, configs="tiny", tests=None,
                                     deadline=2))
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == gpu_check.EXIT_DEADLINE, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 30
    state = json.loads((tmp_path / "results.json").read_text())
    assert state["status"] == "timed out"
    assert state["benchmark"][0]["status"] == "timed out"
    assert "deadline" in (tmp_path / "gpu-check.log").read_text()


def test_pytest_step_counts_failures_and_times_out(tmp_path):
    tests = tmp_path / "test_tiny.py"
    tests.write_text(textwrap.dedent("""
        import time, pytest
        def test_ok(): pass
        def test_bad(): assert 1 == 2
        @pytest.mark.skip(reason="because")
        def test_skipped(): pass
    """))
    logs = []
    rec = gpu_check.run_tests(tmp_path, [str(tests)], timeout=60, log=logs.append)
    assert rec["status"] == "failed" and rec["returncode"] == 1
    assert (rec["passed"], rec["failed"], rec["skipped"]) == (1, 1, 1)
    assert any("test_bad" in t for t in rec["failed_tests"])
    assert (tmp_path / "pytest.log").exists() and logs
    slow = tmp_path / "test_slow.py"
    slow.write_text("import time\ndef test_a(): pass\ndef test_b(): time.sleep(60)\n")
    rec = gpu_check.run_tests(tmp_path, [str(slow)], timeout=6, log=logs.append)
    assert rec["status"] == "timed out" and rec["passed"] == 1 and rec["seconds"] < 30


@pytest.mark.skipif(not _no_gpu_here(), reason="this machine has a usable GPU")
def test_gpu_tests_collect_and_skip_without_gpu(tmp_path):
    """The real GPU test files import and skip here: a run where all skip is reported
    as such, not as a pass."""
    rec = gpu_check.run_tests(tmp_path, gpu_check.TEST_FILES, timeout=120, log=lambda m: None)
    assert rec["status"] == "all skipped", rec
    assert rec["passed"] == 0 and rec["skipped"] >= 1 and "no GPU" in rec["reason"]
    assert gpu_check.exit_status({"status": "complete", "tests": rec, "benchmark": []}) == 1


def test_parse_pytest_summary():
    text = ("tests/a.py::t[1] PASSED [ 50%]\nFAILED tests/a.py::t[2] - assert\n"
            "==== 1 failed, 3 passed, 2 skipped, 1 error in 4.20s ====")
    res = gpu_check.parse_pytest(text)
    assert (res["passed"], res["failed"], res["skipped"], res["errors"]) == (3, 1, 2, 1)
    assert res["failed_tests"] == ["tests/a.py::t[2]"]
    cut = gpu_check.parse_pytest("tests/a.py::t[1] PASSED [ 50%]\ntests/a.py::t[2] FAILED")
    assert (cut["passed"], cut["failed"], cut["summary"]) == (1, 1, None)


def test_placeholder_section_and_benchmarks_md(tmp_path):
    section = gpu_check.render_section(None)
    assert "No GPU results yet" in section and "python build.py gpu-check --out DIR" in section
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert text.count("<!-- gpu-check:begin") == 1 and text.count(sections.END) == 1
    assert sections.merge_section(text, section) == sections.merge_section(
        sections.merge_section(text, section), section)
    # a rerun of the CPU benchmark keeps the section
    md = tmp_path / "B.md"
    md.write_text("# old\n\n" + section.replace("No GPU results yet", "KEEP ME"))
    meta = {"date": "today", "version": "0", "python": "3", "numpy": np.__version__,
            "cpu": "cpu", "budget": 10.0, "gpu": None, "command": "python build.py bench",
            "root_md": False}
    bench.write_markdown(md, [], None, meta)
    new = md.read_text()
    assert "KEEP ME" in new and "# old" not in new and new.count(sections.END) == 1
    assert gpu_check.main(["--render", str(tmp_path / "nothing")]) == 1


def test_bench_rerun_keeps_every_marked_section(tmp_path):
    """A rerun of the CPU benchmark regenerates BENCHMARKS.md but keeps the GPU check's
    section and the counted-work section, each where the new text has it or appended."""
    old = tmp_path / "B.md"
    old.write_text("# old\n\n<!-- work-count:begin x -->\nWORK\n<!-- work-count:end -->\n\n"
                   + sections.BEGIN + "\nGPU\n" + sections.END + "\n")
    new = sections.carry_section(old, "# new\n\n" + sections.BEGIN + "\nnone yet\n"
                                 + sections.END + "\n")
    assert "WORK" in new and "GPU" in new and "none yet" not in new and "# old" not in new
    assert new.count(sections.END) == 1 and new.count("work-count:end") == 1
