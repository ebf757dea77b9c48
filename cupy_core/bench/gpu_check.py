"""One call that checks a GPU machine: ``python build.py gpu-check --out DIR``.

Runs with the interpreter that starts it (no virtual environment, no network) and uses
its CuPy and NumPy:

1. the probe (``cupy_core.device.gpu_status``: CuPy imports, sees a device, compiles and
   launches a kernel that gives the CPU's bits); without a usable GPU it stops at once
   with the reason, a non-zero exit and nothing written;
2. the GPU tests (``tests/methods/test_gpu.py``, ``tests/methods/test_gpu3d.py``: the CPU/GPU agreement,
   repeatability, long chains) with pytest, under a time cap;
3. the GPU benchmark (``cupy_core.bench.run``'s measurement: CUDA events, the memory-pool
   peak, the bandwidth floor of docs/DESIGN.md 11) at 1024 x 1024 x 4 and 1920 x 1080 x 16
   (grid, particle, upsample N = 4) and 128^3 x 4 (grid, particle).

``DIR/results.json`` (the machine, the tests, one record per configuration),
``DIR/gpu-check.log`` and ``DIR/BENCHMARKS-gpu.md`` are rewritten, atomically, after
every step and configuration, so that a run cut short still leaves what it measured;
an exception in one configuration is recorded and the next one runs. The whole run
keeps to a deadline (7.5 minutes by default): configurations that no longer fit are
recorded as not run, and a watchdog writes the state and exits (124) should a call hang
past it. ``DIR/pytest.log`` has pytest's full output.

``python build.py gpu-check --render DIR`` merges the section rendered from
``DIR/results.json`` into BENCHMARKS.md, between the markers below (no GPU needed).

Exit status: 0 all passed; 1 a test failed, the tests did not run or were all
skipped, or a configuration failed; 2 no usable GPU (nothing run); 124 the deadline.
"""
import argparse
import datetime
import importlib.util
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cupy_core
from . import run as bench
from .sections import BEGIN, END, merge_section
from ..device import gpu_status
from ..bake.files import atomic_path, write_json_atomic

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "cupy_core.bench.gpu_check/1"
COMMAND = "python build.py gpu-check"
TEST_FILES = ("tests/methods/test_gpu.py", "tests/methods/test_gpu3d.py")
# (method, factor, shape, channels), shape (H, W) or (D, H, W), as bench.SpeedRun's.
CONFIGS = {
    "full": [
        ("grid", None, (1024, 1024), 4), ("particle", None, (1024, 1024), 4),
        ("upsample", 4, (1024, 1024), 4),
        ("grid", None, (1080, 1920), 16), ("particle", None, (1080, 1920), 16),
        ("upsample", 4, (1080, 1920), 16),
        ("grid", None, (128, 128, 128), 4), ("particle", None, (128, 128, 128), 4),
    ],
    # For the tests (on the emulated CuPy): seconds, not minutes.
    "tiny": [
        ("grid", None, (12, 10), 4), ("particle", None, (12, 10), 4),
        ("upsample", 2, (12, 10), 4), ("particle", None, (4, 5, 6), 4),
    ],
}
# Sized for one H100/H200 in 8 minutes with room to spare: the whole run keeps to
# DEADLINE_S; the tests get at most PYTEST_TIMEOUT_S of it and leave at least
# BENCH_RESERVE_S to the benchmark; a configuration starts only with MIN_CONFIG_S left.
DEADLINE_S = 450.0
PYTEST_TIMEOUT_S = 240.0
BENCH_RESERVE_S = 120.0
MIN_CONFIG_S = 20.0
# Timed frames per configuration (median), fewer where a frame is so slow that they
# would exceed the configuration's budget (CONFIG_BUDGET_S for the baseline, twice that
# for grid and particle: bench.PRODUCT_BUDGET).
FRAMES = 30
CONFIG_BUDGET_S = 10.0
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU, EXIT_DEADLINE = 0, 1, 2, 124


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------- probe

@dataclass(frozen=True)
class Probe:
    ok: bool
    name: str = None
    reason: str = None
    advice: str = None
    summary: str = ""


def probe():
    """Whether the GPU path runs here: ``cupy_core.device.gpu_status`` (a kernel
    compiled and launched)."""
    try:
        st = gpu_status()
    except Exception as exc:  # the probe itself broke: that is a "no" with the reason
        return Probe(False, reason=f"the GPU probe raised {type(exc).__name__}: {exc}",
                     summary=f"GPU unavailable: {exc}")
    summary = st.summary() if callable(getattr(st, "summary", None)) else ""
    return Probe(bool(st.ok), name=getattr(st, "name", None), reason=getattr(st, "reason", None),
                 advice=getattr(st, "advice", None), summary=summary)


# ----------------------------------------------------------------------------- machine

def _try(fn):
    try:
        return fn()
    except Exception as exc:
        return f"unavailable ({type(exc).__name__}: {exc})"


def _cuda_version(v):
    """CUDA's integer version (13000) as "13.0"."""
    return f"{v // 1000}.{v % 1000 // 10}" if isinstance(v, int) and v > 0 else v


def _nvidia_smi():
    """(driver version, name) from nvidia-smi for device 0, or the reason there is none."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name",
                          "--format=csv,noheader", "-i", "0"],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise RuntimeError((out.stderr or out.stdout).strip() or f"exit {out.returncode}")
    return [s.strip() for s in out.stdout.strip().splitlines()[0].split(",", 1)]


def _git_commit():
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError("not a git checkout")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def environment():
    """The machine and the software: device, driver, CUDA, CuPy, NumPy, Python."""
    import cupy
    rt = cupy.cuda.runtime
    env = {"python": platform.python_version(), "python_executable": sys.executable,
           "numpy": np.__version__, "cupy": getattr(cupy, "__version__", "?"),
           "cupy_core": cupy_core.__version__, "platform": platform.platform(),
           "cpu": _try(bench.cpu_name), "git_commit": _try(_git_commit)}
    spec = importlib.util.find_spec("pytest")
    env["pytest"] = _try(lambda: __import__("pytest").__version__) if spec else "not installed"
    dev = _try(lambda: cupy.cuda.Device().id)
    env["device_id"] = dev
    props = _try(lambda: rt.getDeviceProperties(dev if isinstance(dev, int) else 0))
    if isinstance(props, dict):
        name = props.get("name", "?")
        env["device"] = name.decode() if isinstance(name, bytes) else str(name)
        if "major" in props:
            env["compute_capability"] = f"{props['major']}.{props.get('minor', 0)}"
        if "totalGlobalMem" in props:
            env["memory_bytes"] = int(props["totalGlobalMem"])
        if "multiProcessorCount" in props:
            env["multiprocessors"] = int(props["multiProcessorCount"])
    else:
        env["device"] = props
    env["cuda_runtime"] = _try(lambda: _cuda_version(rt.runtimeGetVersion()))
    env["cuda_driver_api"] = _try(lambda: _cuda_version(rt.driverGetVersion()))
    smi = _try(_nvidia_smi)
    env["driver"] = smi[0] if isinstance(smi, list) else smi
    env["nvrtc"] = _try(lambda: ".".join(str(v) for v in cupy.cuda.nvrtc.getVersion()))
    bw = _try(bench.gpu_info)
    if isinstance(bw, tuple):
        env["bandwidth_bytes_per_s"] = bw[1]
        env["bandwidth_from"] = _bandwidth_source(rt, env.get("device", ""), bw[1])
    else:
        env["bandwidth_bytes_per_s"] = None
        env["bandwidth_from"] = bw
    return env


def _bandwidth_source(rt, name, bw):
    if bw is None:
        return "unknown: CUDA reports no memory clock and the name is not in bench.BANDWIDTH"
    try:
        dev = 0
        clock, bus = rt.deviceGetAttribute(36, dev), rt.deviceGetAttribute(37, dev)
        if clock > 0 and bus > 0 and abs(2.0 * clock * 1e3 * bus / 8.0 - bw) < 1:
            return f"memory clock {clock / 1e3:.0f} MHz x 2 x {bus}-bit bus"
    except Exception:
        pass
    return f"bench.BANDWIDTH (data sheet) for {name!r}"


# ----------------------------------------------------------------------------- tests

_SUMMARY = re.compile(r"^=+ (.*\bin [\d.]+s.*?) =+$")
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")
_VERBOSE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def parse_pytest(text):
    """Counts, the summary line and the failed node ids from pytest's ``-v -rfEs``
    output; from the per-test lines when the run was cut before its summary."""
    res = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "summary": None}
    lines = text.splitlines()
    summary = next((m.group(1) for m in map(_SUMMARY.match, reversed(lines)) if m), None)
    if summary is not None:
        res["summary"] = summary
        for n, kind in _COUNT.findall(summary):
            key = {"error": "errors", "xfailed": "passed", "xpassed": "passed"}.get(kind, kind)
            if key in res:
                res[key] += int(n)
    else:
        for m in filter(None, map(_VERBOSE.match, lines)):
            key = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped",
                   "ERROR": "errors"}.get(m.group(2), "passed")
            res[key] += 1
    res["failed_tests"] = sorted({ln.split()[1] for ln in lines
                                  if ln.startswith(("FAILED ", "ERROR ")) and len(ln.split()) > 1})[:50]
    res["skip_reasons"] = sorted({ln for ln in lines if ln.startswith("SKIPPED [")})[:20]
    return res


def run_tests(out, files=TEST_FILES, timeout=PYTEST_TIMEOUT_S, log=print, extra=(),
              track=None):
    """pytest on ``files`` under this interpreter, killed after ``timeout`` seconds;
    output in ``out/pytest.log``. Returns the tests' record."""
    rec = {"files": list(files), "timeout_s": round(float(timeout), 1)}
    if importlib.util.find_spec("pytest") is None:
        rec.update(status="not run", reason=f"pytest is not installed for {sys.executable}")
        return rec
    if timeout < 5:
        rec.update(status="not run", reason="no time left before the deadline")
        return rec
    cmd = [sys.executable, "-m", "pytest", *files, "-v", "-rfEs", "--color=no",
           "-p", "no:cacheprovider", *extra]
    rec["command"] = " ".join(str(c) for c in cmd[1:])
    log_path = Path(out) / "pytest.log"
    t0 = time.monotonic()
    with open(log_path, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        if track is not None:
            track(proc)
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, timed_out = None, True
        except BaseException:   # SIGTERM, Ctrl-C: the tests must not outlive us
            _kill(proc)
            raise
        finally:
            if track is not None:
                track(None)
    rec["seconds"] = round(time.monotonic() - t0, 1)
    text = log_path.read_text(errors="replace")
    rec.update(parse_pytest(text))
    rec["returncode"] = rc
    if timed_out:
        rec["status"] = "timed out"
        rec["reason"] = (f"killed after {timeout:.0f} s; the counts are of the tests that "
                         "finished")
    elif rc == 0 and rec["passed"] > 0:
        rec["status"] = "passed"
    elif rc in (0, 5) and rec["passed"] == 0 and rec["skipped"] > 0:   # 5: all skipped at import
        rec["status"] = "all skipped"
        rec["reason"] = ("no test ran: pytest's interpreter sees no usable GPU ("
                         + "; ".join(rec["skip_reasons"][:3]) + ")")
    elif rc == 1:
        rec["status"] = "failed"
    else:
        rec["status"] = "error"
        rec["reason"] = {2: "interrupted (or a collection error)", 3: "pytest internal error",
                         4: "pytest usage error", 5: "no tests collected"}.get(rc, f"exit {rc}")
    rec["output_tail"] = text.splitlines()[-40:] if rec["status"] != "passed" else []
    log(f"tests: {rec['status']}: {rec.get('summary') or ''} ({rec['seconds']} s; "
        f"full output in {log_path.name})")
    for name in rec["failed_tests"][:10]:
        log(f"  failed: {name}")
    if rec.get("reason"):
        log(f"  {rec['reason']}")
    return rec


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ----------------------------------------------------------------------------- benchmark

def config_label(cfg):
    method, factor, shape, channels = cfg
    return f"{bench._label(method, factor)} {bench._shape_str(shape)} x {channels}"


class _Run(bench.SpeedRun):
    gpu_frames = FRAMES


def measure(cfg, budget=CONFIG_BUDGET_S, frames=FRAMES):
    """One GPU configuration through ``bench.SpeedRun.measure``, with the floor
    comparison spelled out."""
    method, factor, shape, channels = cfg
    run = _Run(["cupy"], quick=False, budget=budget, log=lambda m: None)
    run.gpu_frames = frames
    rec = run.measure("cupy", bench.gpu_info()[0], method, factor, tuple(shape), channels)
    fb = bench.floor_bytes(shape, channels)
    rec["floor_bytes"] = fb
    ms = rec.get("ms_per_frame")
    if ms:
        rec["floor_bytes_per_s_achieved"] = round(fb / (ms / 1e3))
        if rec.get("floor_ms"):
            rec["fraction_of_peak"] = float(f"{rec['floor_ms'] / ms:.4g}")
    return rec


def _free_gpu_memory():
    try:
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:
        pass


# ----------------------------------------------------------------------------- the run

class Check:
    """The state of one run and its files; every ``flush`` rewrites them atomically."""

    def __init__(self, out, argv_text):
        self.out = Path(out)
        self.t0 = time.monotonic()
        self.lock = threading.RLock()
        self.lines = []
        self.child = None
        self.current = None
        self.state = {"schema": SCHEMA, "command": argv_text, "started": _now(),
                      "finished": None, "status": "running", "seconds": 0.0,
                      "environment": None, "tests": None, "planned": [], "benchmark": []}

    def log(self, msg):
        line = f"[gpu-check {time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        with self.lock:
            self.lines.append(line)

    def flush(self):
        with self.lock:
            self.state["seconds"] = round(time.monotonic() - self.t0, 1)
            write_json_atomic(self.out / "results.json", self.state)
            _write_text_atomic(self.out / "gpu-check.log", "\n".join(self.lines) + "\n")
            _write_text_atomic(self.out / "BENCHMARKS-gpu.md", render_section(self.state))

    def finish(self, status):
        with self.lock:
            self.state["status"] = status
            self.state["finished"] = _now()
            self.flush()


def _write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def run_check(out, configs="full", tests=TEST_FILES, pytest_args=(),
              deadline=DEADLINE_S, pytest_timeout=PYTEST_TIMEOUT_S,
              budget=CONFIG_BUDGET_S, frames=FRAMES, command=COMMAND, watchdog=True):
    """The whole check into ``out``; returns the exit status. ``configs``: a name in
    ``CONFIGS`` or a list of (method, factor, shape, channels); ``tests``: the test
    files (None or empty: not run)."""
    st = probe()
    if not st.ok:
        print(f"gpu-check: no usable GPU here: {st.reason or 'unknown reason'}"
              + (f"; {st.advice}" if st.advice else "")
              + ". Nothing was run or written.", file=sys.stderr, flush=True)
        return EXIT_NO_GPU
    plan = CONFIGS[configs] if isinstance(configs, str) else list(configs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("results.json", "gpu-check.log", "BENCHMARKS-gpu.md", "pytest.log"):
        (out / stale).unlink(missing_ok=True)   # no old run's file may pass for this one's
    chk = Check(out, command)
    chk.state["planned"] = [config_label(c) for c in plan]
    chk.state["limits"] = {"deadline_s": deadline, "pytest_timeout_s": pytest_timeout,
                           "config_budget_s": budget, "frames": frames}
    chk.log(f"{st.summary or 'GPU found'}; writing to {out}")
    end = chk.t0 + deadline
    timer = None
    if watchdog:
        timer = threading.Timer(max(deadline, 1.0), _on_deadline, (chk,))
        timer.daemon = True
        timer.start()
    status = "failed"
    try:
        chk.state["environment"] = env = environment()
        chk.log("device {device} (compute capability {cc}), driver {driver}, CUDA runtime "
                "{rt}, CuPy {cupy}, NumPy {numpy}, Python {python}".format(
                    device=env.get("device"), cc=env.get("compute_capability", "?"),
                    driver=env.get("driver"), rt=env.get("cuda_runtime"), cupy=env["cupy"],
                    numpy=env["numpy"], python=env["python"]))
        chk.flush()
        if tests:
            left = end - time.monotonic()
            cap = min(pytest_timeout, left - min(BENCH_RESERVE_S, left / 2))
            chk.log(f"running the GPU tests ({', '.join(tests)}) for at most {cap:.0f} s")

            def track(proc):
                chk.child = proc
            chk.state["tests"] = run_tests(out, tests, cap, chk.log, pytest_args, track)
        else:
            chk.state["tests"] = {"status": "not run", "reason": "skipped by request"}
            chk.log("tests not run (skipped by request)")
        chk.flush()
        for cfg in plan:
            rec = _run_config(chk, cfg, end, budget, frames)
            with chk.lock:
                chk.current = None
                chk.state["benchmark"].append(rec)
            chk.flush()
        status = "complete"
    except BaseException as exc:   # a bug here, Ctrl-C, SIGTERM: keep what was measured
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed"
        chk.state["error"] = _error_text(exc)
        chk.log(f"stopped: {chk.state['error']}")
        if not isinstance(exc, Exception):
            chk.finish(status)
            raise
    finally:
        if timer is not None:
            timer.cancel()
    chk.finish(status)
    code = exit_status(chk.state)
    chk.log(f"done in {chk.state['seconds']:.0f} s: " + overall_line(chk.state))
    chk.flush()
    return code


def _run_config(chk, cfg, end, budget, frames):
    label = config_label(cfg)
    method, factor, shape, channels = cfg
    base = {"method": method, "dims": len(shape), "shape": list(shape),
            "channels": channels, "backend": "cupy", "label": label}
    if factor is not None:
        base["factor"] = factor
    left = end - time.monotonic()
    if left < MIN_CONFIG_S:
        chk.log(f"{label}: not run, {left:.0f} s left before the deadline")
        return dict(base, status="not run", ms_per_frame=None,
                    reason=f"{left:.0f} s left before the deadline, under {MIN_CONFIG_S:.0f} s")
    with chk.lock:
        chk.current = dict(base, started=_now())
    t0 = time.monotonic()
    try:
        rec = measure(cfg, budget, frames)
        rec["label"] = label
    except Exception as exc:   # recorded; the next configuration runs
        rec = dict(base, status="error", ms_per_frame=None, error=_error_text(exc),
                   traceback=traceback.format_exc().splitlines()[-12:])
    finally:
        _free_gpu_memory()
    rec["seconds"] = round(time.monotonic() - t0, 2)
    if rec.get("ms_per_frame") is not None:
        fl = rec.get("floor_ms")
        chk.log(f"{label}: {rec['ms_per_frame']:.4f} ms/frame ({rec['frames']} frames)"
                + (f", floor {fl:.4g} ms, {rec['x_floor']:.1f}x the floor" if fl else
                   ", no bandwidth floor (peak bandwidth unknown)"))
    else:
        chk.log(f"{label}: {rec['status']}: {rec.get('error') or rec.get('reason')}")
    return rec


def _error_text(exc):
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def _on_deadline(chk):
    """The watchdog: a call has hung past the deadline. Record it, write the files and
    leave (the hung call cannot be interrupted from Python)."""
    with chk.lock:
        if chk.current is not None:
            chk.state["benchmark"].append(dict(chk.current, status="timed out", ms_per_frame=None,
                                               reason="still running at the deadline"))
        if chk.child is not None:
            _kill(chk.child)
            if chk.state["tests"] is None:
                chk.state["tests"] = {"status": "timed out",
                                      "reason": "still running at the deadline"}
        chk.log("deadline reached: results written, exiting")
        chk.finish("timed out")
    os._exit(EXIT_DEADLINE)


def exit_status(state):
    if state["status"] == "timed out":
        return EXIT_DEADLINE
    tests = state.get("tests") or {}
    bad_tests = tests.get("status") not in ("passed", "not run") or (
        tests.get("status") == "not run" and tests.get("reason") != "skipped by request")
    bad_bench = any(r.get("status") != "ok" for r in state["benchmark"])
    return EXIT_FAILED if bad_tests or bad_bench or state["status"] != "complete" else EXIT_OK


def overall_line(state):
    tests = state.get("tests") or {}
    recs = state["benchmark"]
    ok = sum(r.get("status") == "ok" for r in recs)
    return (f"tests {tests.get('status', 'not run')}; benchmark {ok} of "
            f"{len(state['planned'])} configurations measured")


# ----------------------------------------------------------------------------- markdown

def _gib(n):
    return f"{n / 2**30:.1f} GiB"


def render_section(state=None):
    """The GPU section of BENCHMARKS.md, markers included, from a results.json's
    contents; without one, the section says there are no GPU results yet and how to
    make them."""
    L = [BEGIN, "## GPU check (CuPy)", ""]
    if not state:
        L += ["**No GPU results yet.** Every number above is the NumPy path. On a machine "
              "with an NVIDIA GPU and CuPy, `python build.py gpu-check --out DIR` (that "
              "machine's own Python, CuPy and NumPy: no virtual environment, no network; "
              "under 8 minutes on one H100 or H200) runs the GPU tests "
              "(`tests/methods/test_gpu.py`, `tests/methods/test_gpu3d.py`: the CPU/GPU agreement) and "
              "times grid, particle and upsample N = 4 at 1024 x 1024 x 4 and "
              "1920 x 1080 x 16, and grid and particle at 128^3 x 4, against the "
              "bandwidth floor of docs/DESIGN.md 11; it writes `DIR/results.json`, "
              "`DIR/gpu-check.log` and `DIR/BENCHMARKS-gpu.md`. "
              "`python build.py gpu-check --render DIR` puts this section here.", "", END]
        return "\n".join(L) + "\n"
    env = state.get("environment") or {}
    bw = env.get("bandwidth_bytes_per_s")
    machine = [f"compute capability {env['compute_capability']}"] if "compute_capability" in env else []
    if isinstance(env.get("memory_bytes"), int):
        machine.append(_gib(env["memory_bytes"]))
    machine.append(f"peak bandwidth {bw / 1e12:.2f} TB/s: {env.get('bandwidth_from')}"
                   if isinstance(bw, (int, float)) else "peak bandwidth unknown")
    driver = str(env.get("driver", "?"))
    driver = (f"NVIDIA driver {driver} (CUDA {env.get('cuda_driver_api', '?')})"
              if not driver.startswith("unavailable") else
              f"NVIDIA driver for CUDA {env.get('cuda_driver_api', '?')} (nvidia-smi {driver})")
    L += [f"Generated by `{state.get('command', COMMAND)}` on {state.get('started')}: "
          f"**{env.get('device', '?')}** ({'; '.join(machine)}); {driver}, CUDA runtime "
          f"{env.get('cuda_runtime', '?')}, CuPy {env.get('cupy', '?')}, NumPy "
          f"{env.get('numpy', '?')}, Python {env.get('python', '?')}, cupy_core "
          f"{env.get('cupy_core', '?')}"
          + (f" at {env['git_commit']}" if env.get("git_commit") and
             not str(env["git_commit"]).startswith("unavailable") else "") + ".", "",
          f"Run status: **{state.get('status')}** after {state.get('seconds', 0):.0f} s"
          + (f" ({state['error']})" if state.get("error") else "") + ".", ""]
    tests = state.get("tests") or {"status": "not run"}
    counts = ", ".join(f"{tests.get(k, 0)} {k}" for k in ("passed", "failed", "skipped", "errors"))
    line = (f"**Tests** ({', '.join(f'`{f}`' for f in tests.get('files', TEST_FILES))}: the "
            f"GPU's noise against the CPU's for the same seed, repeatability, long chains): "
            f"**{tests['status']}**")
    if "passed" in tests:
        line += f", {counts} in {tests.get('seconds', 0):.0f} s"
    if tests.get("reason"):
        line += f" ({tests['reason']})"
    L += [line + ".", ""]
    for t in tests.get("failed_tests", [])[:20]:
        L.append(f"* failed: `{t}`")
    if tests.get("failed_tests"):
        L.append("")
    recs = state.get("benchmark") or []
    L += ["**Speed.** One frame is one `cupy_core.warp` call (`cupy_core.bench.run.bench_map`'s "
          "input, on the device); the time is the median of the timed frames (CUDA events) "
          "after three untimed ones (compilation, warm-up, memory); peak memory is the CuPy memory pool's peak over one "
          "frame. The floor is docs/DESIGN.md 11's: (d + 2C) x 4 bytes per pixel (positions and "
          "prior in, noise out) at the device's peak bandwidth; `x floor` is the time over "
          "the floor, `% of peak` the floor's bytes per second achieved over the peak.", "",
          "| input | C | method | ms/frame | frames | floor ms | x floor | % of peak | "
          "peak MiB | target MiB (2 prior + out) | within |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        shape = bench._shape_str(r["shape"])
        label = bench._label(r["method"], r.get("factor"))
        if r.get("ms_per_frame") is None:
            L.append(f"| {shape} | {r['channels']} | {label} | {r.get('status')} | | | | | | | |")
            continue
        fl = r.get("floor_ms")
        frac = r.get("fraction_of_peak")
        tgt = r.get("memory_target_bytes")
        within = r.get("within_memory_target")
        L.append(f"| {shape} | {r['channels']} | {label} | {r['ms_per_frame']:.4f} | "
                 f"{r.get('frames', '?')} | " + (f"{fl:.4g} | {r['x_floor']:,.1f} | "
                                                if fl else "- | - | ")
                 + (f"{100 * frac:.3g}% | " if frac else "- | ")
                 + f"{r.get('peak_bytes', 0) / 2**20:,.1f} | "
                 + (f"{tgt / 2**20:,.1f} | " if tgt else "- | ")
                 + ("- |" if within is None else ("yes |" if within else "no |")))
    missing = [c for c in state.get("planned", []) if c not in {r.get("label") for r in recs}]
    L += [""]
    notes = [r for r in recs if r.get("ms_per_frame") is None or r.get("note")]
    if notes or missing:
        for r in notes:
            why = r.get("error") or r.get("reason") or r.get("note")
            L.append(f"* {r.get('label') or config_label((r['method'], r.get('factor'), r['shape'], r['channels']))}"
                     f": {r.get('status')}: {why}")
        for c in missing:
            L.append(f"* {c}: not reached (the run stopped first)")
        L.append("")
    L += ["Anchors (docs/DESIGN.md 11, A100, 1024 x 1024): " + ", ".join(
        f"{k} {v} ms" for k, v in bench.ANCHORS_GPU.items()) + ".", "",
        f"Reproduce: `{COMMAND} --out DIR` on the GPU machine, then "
        f"`{COMMAND} --render DIR` here.", "", END]
    return "\n".join(L) + "\n"


def render(out, markdown=ROOT / "BENCHMARKS.md"):
    """``out/results.json`` -> the GPU section in ``markdown``."""
    import json
    results = Path(out) / "results.json"
    if not results.is_file():
        print(f"gpu-check --render: {results} does not exist (make it with "
              f"'{COMMAND} --out {out}' on the GPU machine)", file=sys.stderr)
        return EXIT_FAILED
    state = json.loads(results.read_text())
    if state.get("schema") != SCHEMA:
        print(f"gpu-check --render: {results} is not a gpu-check result "
              f"(schema {state.get('schema')!r})", file=sys.stderr)
        return EXIT_FAILED
    section = render_section(state)   # DIR may be read-only (fetched results): not written
    md = Path(markdown)
    _write_text_atomic(md, merge_section(md.read_text() if md.exists() else "", section))
    print(f"gpu-check: merged the GPU section of {results} into {md}")
    return EXIT_OK


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="folder for results.json, gpu-check.log, "
                                                "BENCHMARKS-gpu.md and pytest.log")
    what.add_argument("--render", type=Path, metavar="DIR",
                      help="merge the section from DIR/results.json into BENCHMARKS.md "
                           "(no GPU needed)")
    ap.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md",
                    help="with --render: the file to merge into (default BENCHMARKS.md)")
    ap.add_argument("--deadline", type=float, default=DEADLINE_S,
                    help=f"seconds the whole run may take (default {DEADLINE_S:.0f})")
    ap.add_argument("--pytest-timeout", type=float, default=PYTEST_TIMEOUT_S,
                    help=f"seconds the GPU tests may take (default {PYTEST_TIMEOUT_S:.0f})")
    ap.add_argument("--skip-tests", action="store_true", help="benchmark only")
    # For the tests: the configuration set, and what pytest runs.
    ap.add_argument("--configs", choices=sorted(CONFIGS), default="full", help=argparse.SUPPRESS)
    ap.add_argument("--pytest-args", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.render is not None:
        return render(args.render, args.markdown)
    argv_text = " ".join([COMMAND] + list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _sigterm)   # results written, then exit
    try:
        return run_check(args.out, configs=args.configs,
                         tests=() if args.skip_tests else TEST_FILES,
                         pytest_args=args.pytest_args.split(), deadline=args.deadline,
                         pytest_timeout=args.pytest_timeout, command=argv_text)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
