"""Benchmarks: speed, memory and quality of the grid and particle variants against the
Chang et al. upsampling baseline (docs/DESIGN.md 5, 11). Run through ``python build.py
bench [--quick]``, or ``python -m cupy_core.bench --help``.

Writes, into ``--out`` (``benchmarks/``; ``benchmarks/quick/`` with ``--quick``):

* ``results.json``: one record per measurement (method, factor, dims, shape, channels,
  backend, device, ms_per_frame, peak_bytes, and how they were taken);
* ``quality.json`` and ``convergence.png``: the quality protocol (below);
* ``BENCHMARKS.md`` (at the repository root for a full run): the tables, the machine,
  the date and how to reproduce.

Speed. Every method warps the same input: white noise and one smooth backward map
with subpixel motion (``bench_map``). A frame is one ``cupy_core.warp`` call, input
checks and geometry included. CPU: ``time.perf_counter`` around each call; GPU: CUDA
events around it. The median of at least 10 timed frames after warm-up, except where
one CPU frame is so slow that 10 would exceed the per-configuration budget: then
fewer frames (the record says how many and why), or, when the estimate from the same
method at a smaller size exceeds the budget, no run, recorded with the reason and the
estimate.

Memory. CPU: ``tracemalloc`` (NumPy reports its allocations to it) over one untimed
frame; GPU: a CuPy memory-pool hook. ``peak_bytes`` is the peak of what the frame
allocated beyond its inputs, the output included; ``input_bytes`` the prior and the
positions it was given.

Quality (the published protocol, the same input for every method): long chains of
warps of one noise field under a subpixel translation and under a smooth swirl; the
Kolmogorov-Smirnov test and Moran's I of the last frame, and the frame-to-frame carried
correlation (each pixel with itself in the frame before) against its infinite-
resolution value: the overlap areas of the exact partition (the grid variant's
expectation), analytic for the translation.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import cupy_core
from .. import stats
from ..device import gpu_available, gpu_status
from ..conventions import pixel_corners
from ..bake.files import write_json_atomic
from .sections import carry_section   # a CPU rerun keeps the GPU check's section

ROOT = Path(__file__).resolve().parents[2]
FACTORS = (4, 8, 16)
SHAPES_2D = ((256, 256), (1024, 1024), (1080, 1920))
SHAPES_3D = ((64, 64, 64), (128, 128, 128))
SHAPES_3D_GPU = SHAPES_3D + ((256, 256, 256),)
CHANNELS = (4, 16)
MIN_FRAMES = 10
# The product's methods (grid, particle) get this many times the baseline's CPU budget,
# so that they keep their 10 frames at every 2-D size.
PRODUCT_BUDGET = 2.0
GPU_FRAMES = 20
# Peak DRAM bandwidth by device name, where CUDA does not report the memory clock
# (bytes/s; vendor data sheets).
BANDWIDTH = {"H100 SXM": 3.35e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12,
             "H200": 4.8e12, "A100-SXM4-80GB": 2.039e12, "A100-SXM4-40GB": 1.555e12,
             "A100 80GB PCIe": 1.935e12, "A100-PCIE-40GB": 1.555e12, "L40S": 8.64e11,
             "RTX 4090": 1.008e12}

# docs/DESIGN.md 11: anchors measured elsewhere, quoted for comparison.
ANCHORS_CPU = {(256, 256): 54.0, (512, 512): 241.0, (1024, 1024): 979.0}   # Taichi particle, 2 cores
ANCHORS_GPU = {"Chang et al. (A100)": 55.2, "Deng et al. Taichi (A100)": 2.61,
               "Go-with-the-Flow (A100)": 2.14}                          # 1024 x 1024


# ----------------------------------------------------------------------------- inputs

def bench_map(shape, frame=0):
    """Backward positions at corners of a smooth map with subpixel motion, the same for
    every method: a pan by (0.3, 0.2[, 0.1]) pixels, a rotation about the centre that
    fades with the radius (a swirl, at most ~0.06 rad) and a small wobble."""
    shape = tuple(int(s) for s in shape)
    c = pixel_corners(shape)
    dims = len(shape)
    centre = np.array([s / 2.0 for s in shape[::-1]])          # (x, y[, z])
    rel = c - centre
    r = np.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2)
    ang = 0.06 * np.exp(-(r / (0.35 * min(shape[-2:]))) ** 2)
    cos, sin = np.cos(ang), np.sin(ang)
    out = c.copy()
    out[..., 0] = centre[0] + cos * rel[..., 0] - sin * rel[..., 1]
    out[..., 1] = centre[1] + sin * rel[..., 0] + cos * rel[..., 1]
    pan = (0.3, 0.2, 0.1)[:dims]
    out += np.array(pan)
    out[..., 0] += 0.25 * np.sin(2 * np.pi * (c[..., 1] / shape[-2] * 2 + 0.1 * frame))
    out[..., 1] += 0.25 * np.sin(2 * np.pi * (c[..., 0] / shape[-1] * 3 + 0.1 * frame))
    return out


def cpu_name():
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{name} ({cores} cores)"


def gpu_info():
    """(name, peak bandwidth in bytes/s or None) of the current CUDA device."""
    import cupy
    rt = cupy.cuda.runtime
    dev = cupy.cuda.Device().id
    props = rt.getDeviceProperties(dev)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    bw = None
    try:   # memory clock (kHz) x 2 (double data rate) x bus width (bits) / 8
        clock = rt.deviceGetAttribute(36, dev)   # cudaDevAttrMemoryClockRate
        bus = rt.deviceGetAttribute(37, dev)     # cudaDevAttrGlobalMemoryBusWidth
        if clock > 0 and bus > 0:
            bw = 2.0 * clock * 1e3 * bus / 8.0
    except Exception:  # attribute missing in this CUDA: fall back to the table
        bw = None
    if bw is None:
        for key, value in BANDWIDTH.items():
            if key.lower() in name.lower():
                bw = value
                break
    return name, bw


def floor_bytes(shape, channels):
    """docs/DESIGN.md 11: positions (float32) in, prior in, noise out: (d + 2C) x 4 bytes
    per pixel."""
    return (len(shape) + 2 * channels) * 4 * int(np.prod(shape))


# ----------------------------------------------------------------------------- timing

def _cpu_frame_memory(fn):
    """Peak bytes allocated during one call beyond what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del out
    return peak, elapsed


def _cpu_times(fn, frames):
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _gpu_peak_hook():
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        """Bytes handed out by the memory pool: current and peak since the start."""
        name = "cupy_core_bench_peak"

        def __init__(self):
            self.current = 0
            self.peak = 0

        def malloc_postprocess(self, **kw):
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw):
            self.current -= kw["mem_size"]

    return PeakHook()


def _gpu_frame_memory(fn):
    import cupy
    cupy.cuda.Device().synchronize()
    hook = _gpu_peak_hook()
    with hook:
        out = fn()
        cupy.cuda.Device().synchronize()
    del out
    return hook.peak


def _gpu_times(fn, frames):
    import cupy
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(frames):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(float(cupy.cuda.get_elapsed_time(start, end)))
    return times


# ----------------------------------------------------------------------------- speed

def _label(method, factor):
    return f"upsample N={factor}" if method == "upsample" else method


def _units(shape, channels):
    """What a frame's cost is scaled by to estimate a larger one: pixels x channel groups."""
    return int(np.prod(shape)) * (1 + (channels + 3) // 4)


class SpeedRun:
    gpu_frames = GPU_FRAMES   # timed GPU frames per configuration (gpu_check sets its own)

    def __init__(self, backends, quick, budget, log, dims=(2, 3)):
        self.backends = backends
        self.quick = quick
        self.budget = budget
        self.dims = dims
        self.log = log
        self.records = []
        self.cost = {}     # (backend, method, factor, dims) -> seconds per unit, largest run

    def configs(self, backend):
        if self.quick:
            shapes2, shapes3, channels = ((256, 256),), ((64, 64, 64),), CHANNELS
        else:
            shapes2 = SHAPES_2D
            shapes3 = SHAPES_3D_GPU if backend == "cupy" else SHAPES_3D
            channels = CHANNELS
        out = []
        if 2 not in self.dims:
            shapes2 = ()
        if 3 not in self.dims:
            shapes3 = ()
        for shape in shapes2:
            for c in channels:
                out += [(m, None, shape, c) for m in ("grid", "particle")]
                out += [("upsample", f, shape, c) for f in FACTORS]
        for shape in shapes3:
            for c in channels:
                if self.quick and c != 4:
                    continue
                out += [(m, None, shape, c) for m in ("grid", "particle")]
        return out

    def run(self):
        for backend in self.backends:
            device = cpu_name() if backend == "numpy" else gpu_info()[0]
            for method, factor, shape, channels in self.configs(backend):
                rec = self.measure(backend, device, method, factor, shape, channels)
                self.records.append(rec)
                ms = rec.get("ms_per_frame")
                what = f"{ms:10.2f} ms/frame ({rec['frames']} frames)" if ms is not None \
                    else f"skipped: {rec['reason']}"
                self.log(f"{backend:5s} {_label(method, factor):16s} {'x'.join(map(str, shape)):>14s}"
                         f" C={channels:<2d} {what}")
        return self.records

    def measure(self, backend, device, method, factor, shape, channels):
        dims = len(shape)
        rec = {"method": method, "dims": dims, "shape": list(shape), "channels": channels,
               "backend": backend, "device": device,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}
        if method == "upsample":
            rec["factor"] = factor
        key = (backend, method, factor, dims)
        budget = self.budget * (1 if method == "upsample" else PRODUCT_BUDGET)
        units = _units(shape, channels)
        est = self.cost[key] * units if key in self.cost else None
        if est is not None:
            rec["estimated_ms_per_frame"] = round(est * 1e3, 3)
        if backend == "numpy" and est is not None and est > budget:
            rec.update(ms_per_frame=None, frames=0, status="skipped",
                       reason=f"one CPU frame is estimated at {est:.0f} s (from the same method "
                              f"at a smaller size, scaled by pixels x channel groups), over the "
                              f"{budget:.0f} s budget of one configuration")
            return rec
        xp = np
        if backend == "cupy":
            import cupy
            xp = cupy
        prior = cupy_core.white_noise(shape, channels, seed=0, xp=xp)
        pos = xp.asarray(bench_map(shape))
        rec["input_bytes"] = int(prior.nbytes + pos.nbytes)
        rec["output_bytes"] = int(np.prod(shape)) * channels * 4

        def fn():
            return cupy_core.warp(prior, pos, method=method, factor=factor, seed=1, frame=1)

        try:
            if backend == "numpy":
                # Warm-up and memory in one untimed frame; its time sets the frame count.
                peak, first = _cpu_frame_memory(fn)
                frames = MIN_FRAMES
                if first > budget / 2:
                    # Another frame would blow the budget: the warm-up frame is the
                    # measurement (NumPy has nothing to warm up; tracemalloc costs little
                    # next to a frame this long).
                    frames = 0
                    rec["note"] = (f"one frame, the untimed warm-up's own time ({first:.1f} s, "
                                   f"with tracemalloc on): a second would exceed the budget "
                                   f"of one configuration, {budget:.0f} s")
                elif first * MIN_FRAMES > budget:
                    frames = max(1, int(budget // first))
                    rec["note"] = (f"{frames} timed frame(s), not {MIN_FRAMES}: the warm-up "
                                   f"frame took {first:.1f} s and the budget of one "
                                   f"configuration is {budget:.0f} s")
                times = _cpu_times(fn, frames) if frames else [first * 1e3]
                rec.update(timing="time.perf_counter", memory="tracemalloc (one untimed frame)")
            else:
                import cupy
                fn()   # the first call compiles the kernels
                cupy.cuda.Device().synchronize()
                t0 = time.perf_counter()
                fn()
                cupy.cuda.Device().synchronize()
                second = time.perf_counter() - t0
                peak = _gpu_frame_memory(fn)
                frames = self.gpu_frames
                if second * frames > budget:
                    frames = max(1, int(budget // second))
                    rec["note"] = (f"{frames} timed frame(s), not {self.gpu_frames}: the "
                                   f"second warm-up frame took {second:.2f} s and the "
                                   f"budget of one configuration is {budget:.0f} s")
                times = _gpu_times(fn, frames)
                rec.update(timing="CUDA events", memory="CuPy memory pool hook (one untimed frame)")
        except NotImplementedError as e:
            rec.update(ms_per_frame=None, frames=0, status="skipped", reason=f"not implemented: {e}")
            return rec
        ms = statistics.median(times)
        rec.update(ms_per_frame=round(ms, 4), frames=len(times), warmup=frames > 0,
                   ms_all=[round(t, 4) for t in times], peak_bytes=int(peak), status="ok")
        if backend == "cupy":
            name, bw = gpu_info()
            target = 2 * int(np.prod(shape)) * channels * 4 + rec["output_bytes"]
            rec["memory_target_bytes"] = target   # twice the prior (float32) plus the output
            rec["within_memory_target"] = bool(peak <= target)
            if bw:
                fl = floor_bytes(shape, channels) / bw * 1e3
                rec.update(bandwidth_bytes_per_s=bw, floor_ms=fl, x_floor=round(ms / fl, 2))
        self.cost[key] = ms / 1e3 / units
        return rec


# ----------------------------------------------------------------------------- quality

def _axis_share(d, n):
    """Share of the n sub-pixel centres of [0, 1) inside [d, 1 + d), 0 <= d < 1."""
    return (n - math.ceil(d * n - 0.5)) / n


def _chain_se(per_frame, window=10):
    """Standard error of the mean of per-frame correlations taken along one chain.
    Successive frames carry the same noise along, so their correlations are correlated
    over several frames: the naive spread / sqrt(T) is inflated by the integrated
    autocorrelation time tau = 1 + 2 sum_{k <= window} max(acf_k, 0) (measured ~3 for
    the translation chain, where batch means over 400 frames agree)."""
    r = np.asarray(per_frame, np.float64)
    if r.size < 3:
        return float("nan")
    d = r - r.mean()
    den = float(d @ d)
    tau = 1.0
    if den > 0:
        for k in range(1, min(window, r.size - 1) + 1):
            tau += 2.0 * max(float(d[:-k] @ d[k:]) / den, 0.0)
    return float(r.std(ddof=1) / math.sqrt(r.size) * math.sqrt(tau))


def quality_motions(shape):
    h, w = shape
    dx, dy = 0.3, 0.2
    c = pixel_corners(shape)
    centre = np.array([w / 2.0, h / 2.0])
    rel = c - centre
    r = np.hypot(rel[..., 0], rel[..., 1])
    ang = 0.05 * np.exp(-(r / (0.3 * min(shape))) ** 2)   # ~1.6 px at the fastest ring
    swirl = np.stack([centre[0] + np.cos(ang) * rel[..., 0] - np.sin(ang) * rel[..., 1],
                      centre[1] + np.sin(ang) * rel[..., 0] + np.cos(ang) * rel[..., 1]], -1)
    inner = np.zeros(shape, bool)
    inner[2:-2, 2:-2] = True
    return {
        "translate": {"positions": c + [dx, dy], "inner": inner,
                      "about": f"translation by ({dx}, {dy}) pixels per frame",
                      "analytic": {"infinite": (1 - dx) * (1 - dy),
                                   "upsample": lambda n: _axis_share(dx, n) * _axis_share(dy, n)}},
        "swirl": {"positions": swirl, "inner": inner,
                  "about": "rotation about the centre fading with the radius (0.05 rad at "
                           "the centre), the same map every frame"},
    }


def infinite_resolution_carried(pos, shape, inner):
    """Mean over ``inner`` pixels of a[p, p] / sqrt(A_p): the correlation of a pixel with
    itself in the frame before, for integral noise (the exact overlap areas)."""
    t, s, a = cupy_core.partition_record(pos, shape, method="grid")
    n = int(np.prod(shape))
    A = np.bincount(t, a, minlength=n)
    own = np.bincount(t[t == s], a[t == s], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(A > 0, own / np.sqrt(A), 0.0)
    return float(rho.reshape(shape)[inner].mean())


def run_quality(quick, log):
    shape = (64, 64) if quick else (128, 128)
    channels, frames = 4, (40 if quick else 100)
    factors = (1, 2, 4, 8, 16)
    methods = [("grid", None), ("particle", None)] + [("upsample", f) for f in factors]
    out = {"shape": list(shape), "channels": channels, "frames": frames,
           "seed": 0, "measured_from_frame": frames // 10, "motions": {}}
    for name, mo in quality_motions(shape).items():
        pos, inner = mo["positions"], mo["inner"]
        inf = (mo["analytic"]["infinite"] if "analytic" in mo
               else infinite_resolution_carried(pos, shape, inner))
        res = {"about": mo["about"], "infinite_resolution": inf,
               "infinite_resolution_from": "analytic (1 - dx)(1 - dy)" if "analytic" in mo
               else "exact overlap areas (partition_record, grid)", "methods": {}}
        for method, factor in methods:
            t0 = time.perf_counter()
            noise = cupy_core.white_noise(shape, channels, seed=0)
            sums = np.zeros(5)   # x, y, xx, yy, xy over the carried pairs
            n = 0
            per_frame = []
            for f in range(1, frames + 1):
                new = cupy_core.warp(noise, pos, method=method, factor=factor, seed=0, frame=f)
                if f >= frames // 10:
                    x = noise[inner].astype(np.float64).ravel()
                    y = new[inner].astype(np.float64).ravel()
                    sums += (x.sum(), y.sum(), x @ x, y @ y, x @ y)
                    n += x.size
                    per_frame.append(np.corrcoef(x, y)[0, 1])
                noise = new
            mx, my = sums[0] / n, sums[1] / n
            cov = sums[4] / n - mx * my
            rho = cov / math.sqrt((sums[2] / n - mx * mx) * (sums[3] / n - my * my))
            rep = stats.whiteness_report(noise)
            mi = stats.morans_i(noise)
            row = {"carried": rho, "carried_se": _chain_se(per_frame), "pairs": n,
                   "error": rho - inf,
                   "ks_D": rep["ks_D"], "ks_p": rep["ks_p"], "morans_I": mi.I,
                   "morans_I_expected": mi.expected, "morans_I_z": mi.z,
                   "mean": rep["mean"], "var": rep["var"], "lag_corr": rep["lag_corr"],
                   "seconds": round(time.perf_counter() - t0, 2)}
            if method == "upsample":
                row["factor"] = factor
                if "analytic" in mo:
                    row["analytic"] = mo["analytic"]["upsample"](factor)
            res["methods"][_label(method, factor)] = row
            log(f"quality {name:9s} {_label(method, factor):16s} carried {rho:.4f} "
                f"(infinite resolution {inf:.4f})  KS D {rep['ks_D']:.4f} p {rep['ks_p']:.3f}  "
                f"Moran z {mi.z:+.2f}  {row['seconds']:.1f} s")
        out["motions"][name] = res
    return out


def plot_convergence(quality, path):
    """Carried correlation of the baseline against N, with the grid, particle and
    infinite-resolution values; and its error against N on log axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    motions = quality["motions"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    colours = {"translate": "tab:blue", "swirl": "tab:orange"}
    for name, res in motions.items():
        ups = [(r["factor"], r) for r in res["methods"].values() if "factor" in r]
        n = np.array([f for f, _ in ups])
        rho = np.array([r["carried"] for _, r in ups])
        se = np.array([r["carried_se"] for _, r in ups])
        col = colours.get(name)
        ax = axes[0]
        ax.errorbar(n, rho, yerr=2 * se, marker="o", color=col, label=f"upsample, {name}")
        ax.axhline(res["infinite_resolution"], color=col, ls="--", lw=1,
                   label=f"infinite resolution, {name}")
        ax.plot([64], [res["methods"]["grid"]["carried"]], marker="s", color=col,
                ls="none", label=f"grid, {name}")
        ax.plot([128], [res["methods"]["particle"]["carried"]], marker="^", color=col,
                ls="none", label=f"particle, {name}")
        err = np.abs(rho - res["infinite_resolution"])
        axes[1].loglog(n, np.maximum(err, 1e-5), marker="o", color=col, label=f"upsample, {name}")
        g = abs(res["methods"]["grid"]["carried"] - res["infinite_resolution"])
        axes[1].axhline(max(g, 1e-5), color=col, ls=":", lw=1, label=f"grid, {name}")
    axes[1].loglog(n, 0.5 / n, color="grey", ls="--", lw=1, label="1 / (2N)")
    se = max(r["carried_se"] for res in motions.values() for r in res["methods"].values())
    axes[1].axhline(2 * se, color="grey", ls=":", lw=1, label="2 SE of a measurement")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("upsampling factor N (sub-pixels per pixel side)")
        ax.grid(True, alpha=0.3)
    axes[0].set_xticks([1, 2, 4, 8, 16, 64, 128])
    axes[0].set_xticklabels(["1", "2", "4", "8", "16", "grid", "particle"])
    axes[1].set_xticks([1, 2, 4, 8, 16])
    axes[1].set_xticklabels(["1", "2", "4", "8", "16"])
    axes[0].set_ylabel("carried correlation, frame to frame")
    axes[0].set_title("Carried correlation; dashed: infinite resolution")
    axes[1].set_ylabel("|carried - infinite-resolution value|")
    axes[1].set_title("Error of the upsampling baseline")
    axes[0].legend(fontsize=7, loc="best")
    axes[1].legend(fontsize=7, loc="best")
    shape = quality["shape"]
    fig.suptitle(f"Chang et al. upsampling converges to integral noise: {shape[0]}x{shape[1]}"
                 f"x{quality['channels']}, {quality['frames']} chained frames", fontsize=10)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- report

def _fmt_ms(r):
    if r is None:
        return "-"
    if r.get("ms_per_frame") is None:
        est = r.get("estimated_ms_per_frame")
        return f"(~{est / 1e3:,.0f} s est.)" if est else "n/a"
    ms = r["ms_per_frame"]
    text = f"{ms:,.0f}" if ms >= 100 else f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"
    if r["frames"] < MIN_FRAMES and r["backend"] == "numpy":
        text += f" [{r['frames']}]" if r.get("warmup", True) else " [w]"
    return text


def _time_of(r):
    if r is None:
        return None
    if r.get("ms_per_frame") is not None:
        return r["ms_per_frame"], False
    if r.get("estimated_ms_per_frame"):
        return r["estimated_ms_per_frame"], True
    return None


def _find(records, **kw):
    for r in records:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _groups(records, backend, dims):
    seen = []
    for r in records:
        if r["backend"] == backend and r["dims"] == dims:
            k = (tuple(r["shape"]), r["channels"])
            if k not in seen:
                seen.append(k)
    return seen


def _shape_str(shape):
    return " x ".join(str(s) for s in (shape[::-1] if len(shape) == 2 else shape))


def speed_tables(records, backend):
    lines = []
    cols = ["grid", "particle"] + [f"upsample N={f}" for f in FACTORS]
    groups = _groups(records, backend, 2)
    if groups:
        lines += ["| W x H | C | " + " | ".join(cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for shape, c in groups:
            cells = []
            for m in cols:
                kw = dict(backend=backend, dims=2, shape=list(shape), channels=c)
                if m.startswith("upsample"):
                    kw.update(method="upsample", factor=int(m.split("=")[1]))
                else:
                    kw["method"] = m
                cells.append(_fmt_ms(_find(records, **kw)))
            lines.append(f"| {_shape_str(shape)} | {c} | " + " | ".join(cells) + " |")
        lines += ["", "Speed-up against the baseline at the same input (upsample time / "
                  "method time; ~ where the baseline's time is an estimate):", "",
                  "| W x H | C | " + " | ".join(f"{m} vs N={f}" for m in ("grid", "particle")
                                                for f in FACTORS) + " |",
                  "|---|---|" + "---|" * (2 * len(FACTORS))]
        for shape, c in groups:
            cells = []
            for m in ("grid", "particle"):
                base = dict(backend=backend, dims=2, shape=list(shape), channels=c)
                mt = _time_of(_find(records, method=m, **base))
                for f in FACTORS:
                    ut = _time_of(_find(records, method="upsample", factor=f, **base))
                    if mt is None or ut is None:
                        cells.append("-")
                    else:
                        cells.append(("~" if ut[1] or mt[1] else "") + f"{ut[0] / mt[0]:,.1f}x")
            lines.append(f"| {_shape_str(shape)} | {c} | " + " | ".join(cells) + " |")
    groups3 = _groups(records, backend, 3)
    if groups3:
        lines += ["", "3-D (voxels):", "", "| D x H x W | C | grid | particle |", "|---|---|---|---|"]
        for shape, c in groups3:
            cells = []
            for m in ("grid", "particle"):
                r = _find(records, backend=backend, dims=3, shape=list(shape), channels=c, method=m)
                cells.append(_fmt_ms(r) if r is None or r.get("status") != "skipped"
                             or "estimated_ms_per_frame" in r else "skipped")
            lines.append(f"| {_shape_str(shape)} | {c} | " + " | ".join(cells) + " |")
    return lines


def memory_table(records, backend):
    lines = ["| input | C | method | peak bytes | / input | / output |", "|---|---|---|---|---|---|"]
    for r in records:
        if r["backend"] != backend or r.get("peak_bytes") is None:
            continue
        lines.append(f"| {_shape_str(r['shape'])} | {r['channels']} | "
                     f"{_label(r['method'], r.get('factor'))} | {r['peak_bytes'] / 2**20:,.1f} MiB | "
                     f"{r['peak_bytes'] / r['input_bytes']:.2f} | {r['peak_bytes'] / r['output_bytes']:.2f} |")
    return lines


def gpu_tables(records):
    lines = ["| input | C | method | ms/frame | floor ms | x floor | peak MiB | "
             "target MiB (2 prior + out) | within |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["backend"] != "cupy" or r.get("ms_per_frame") is None:
            continue
        lines.append(f"| {_shape_str(r['shape'])} | {r['channels']} | {_label(r['method'], r.get('factor'))} | "
                     f"{r['ms_per_frame']:.3f} | {r.get('floor_ms', float('nan')):.4f} | "
                     f"{r.get('x_floor', float('nan')):,.0f} | {r['peak_bytes'] / 2**20:,.1f} | "
                     f"{r['memory_target_bytes'] / 2**20:,.1f} | {'yes' if r['within_memory_target'] else 'no'} |")
    return lines


def quality_tables(q):
    lines = []
    for name, res in q["motions"].items():
        lines += [f"**{name}**: {res['about']}. Infinite-resolution carried correlation "
                  f"{res['infinite_resolution']:.4f} ({res['infinite_resolution_from']}).", "",
                  "| method | carried corr. | +- SE | minus infinite res. | "
                  + ("analytic | " if name == "translate" else "")
                  + "KS D | KS p | Moran's I | Moran z |",
                  "|---|---|---|---|" + ("---|" if name == "translate" else "") + "---|---|---|---|"]
        for label, r in res["methods"].items():
            an = f"{r['analytic']:.4f} | " if "analytic" in r else ("- | " if name == "translate" else "")
            lines.append(f"| {label} | {r['carried']:.4f} | {r['carried_se']:.4f} | {r['error']:+.4f} | "
                         f"{an}{r['ks_D']:.4f} | {r['ks_p']:.3f} | {r['morans_I']:+.5f} | {r['morans_I_z']:+.2f} |")
        lines.append("")
    return lines


def key_ratios(records, backend):
    """Bullets: each method against the baseline at every measured input (the speed-up
    range over sizes and channels), per factor."""
    lines = []
    for m in ("grid", "particle"):
        for f in FACTORS:
            vals, est = [], False
            for shape, c in _groups(records, backend, 2):
                base = dict(backend=backend, dims=2, shape=list(shape), channels=c)
                mt = _time_of(_find(records, method=m, **base))
                ut = _time_of(_find(records, method="upsample", factor=f, **base))
                if mt and ut:
                    vals.append(ut[0] / mt[0])
                    est |= ut[1] or mt[1]
            if vals:
                lines.append(f"* {m} is {min(vals):,.1f}x to {max(vals):,.1f}x faster than the "
                             f"baseline with N = {f} over the {len(vals)} inputs"
                             + (" (some baseline times estimated, see the table)" if est else "")
                             + ".")
    return lines


def write_markdown(path, records, quality, meta):
    backends = sorted({r["backend"] for r in records})
    has_gpu = "cupy" in backends
    meta = dict(meta, gpu=next((r["device"] for r in records if r["backend"] == "cupy"),
                               meta.get("gpu")))
    dates = {b: sorted({r.get("date", "?") for r in records if r["backend"] == b}) for b in backends}
    cpu = next((r["device"] for r in records if r["backend"] == "numpy"), meta["cpu"])
    L = ["# Benchmarks", "",
         f"Generated by `{meta['command']}` on {meta['date']} (cupy_core {meta['version']}, "
         f"Python {meta['python']}, NumPy {meta['numpy']}).", "",
         "* Speed records taken on: " + "; ".join(f"{b} {', '.join(d)}" for b, d in dates.items()) + ".",
         f"* CPU: {cpu}; 1-minute load average {meta.get('load_average_start')} at the start "
         f"and {meta.get('load_average_end')} at the end of the run (above 0 means other "
         "jobs shared the cores, which inflates the CPU times).",
         f"* GPU: {meta['gpu']}." if has_gpu else
         "* GPU: **none: this run had no GPU**, so every number below is the NumPy path. "
         "The GPU path of the bench (CUDA-event timing, memory-pool peaks, the bandwidth "
         "floor of docs/DESIGN.md 11) is ready: on a machine with CuPy and a CUDA device, "
         "`python build.py gpu-check --out DIR` runs it with that machine's own Python "
         "and CuPy (the GPU check section below).",
         "", "Reproduce: `python build.py bench` (full, about 30 minutes on two cores), "
         "`python build.py bench --quick` (a subset, under five minutes; writes "
         "benchmarks/quick/). Options: `python -m cupy_core.bench --help`.", "",
         "## What is measured", "",
         "Every method warps the same input: white noise and one smooth backward map with "
         "subpixel motion (`cupy_core.bench.run.bench_map`: a pan by (0.3, 0.2) px, a swirl and a "
         "wobble), positions at pixel corners. One frame is one `cupy_core.warp` call, input "
         "checks and geometry included. The time is the median of at least 10 timed frames "
         "after a warm-up frame (CPU: `time.perf_counter`; GPU: CUDA events), except where "
         "noted: `[n]` after a CPU time means only n frames fit in the per-configuration "
         f"budget ({meta['budget']:.0f} s for the baseline, "
         f"{meta['budget'] * PRODUCT_BUDGET:.0f} s for grid and particle; the record has "
         "`frames` and a `note`; `[w]`: one frame, the warm-up itself, as a second would "
         "not fit), "
         "`(~X s est.)` means the run was skipped because one frame was estimated over that "
         "budget (from the same method at a smaller size, scaled by pixels x channel groups; "
         "the record has `status: skipped`, the `reason` and the estimate). Peak memory: "
         "what one frame allocates beyond its inputs, output included (CPU: tracemalloc; "
         "GPU: a CuPy memory-pool hook).", "",
         "The baseline (`method=\"upsample\"`, `factor=N`, docs/DESIGN.md 5) splits every source "
         "pixel into N x N sub-pixels conditioned on its value and sums the sub-pixels whose "
         "centres fall in the warped pixel. Its cost is N^2 normal draws per pixel and "
         "channel; this implementation redraws sub-pixels from counters instead of storing "
         "the N^2-times larger field (the CPU draws each once, walking the source in bands; "
         "the GPU draws each twice, once for its pixel's mean and once in the gather), so "
         "its memory stays small and its times are, if anything, flattering to it.", ""]
    for backend in backends:
        title = "CPU (NumPy)" if backend == "numpy" else f"GPU (CuPy, {meta['gpu']})"
        L += [f"## Key ratios, {title}", ""] + key_ratios(records, backend) + [""]
    for backend in backends:
        title = "CPU (NumPy)" if backend == "numpy" else f"GPU (CuPy, {meta['gpu']})"
        L += [f"## Speed, {title}: milliseconds per frame", ""]
        L += speed_tables(records, backend)
        L += [""]
        if backend == "cupy":
            L += ["Against the bandwidth floor of docs/DESIGN.md 11 ((d + 2C) x 4 bytes per pixel "
                  "at the device's peak bandwidth) and the memory target (twice the prior "
                  "plus the output):", ""] + gpu_tables(records) + [""]
            L += ["Anchors (docs/DESIGN.md 11, A100 40GB, 1024 x 1024): " + ", ".join(
                f"{k} {v} ms" for k, v in ANCHORS_GPU.items()) + ".", ""]
        else:
            rows = []
            for shape, anchor in ANCHORS_CPU.items():
                for m in ("particle", "grid"):
                    r = _find(records, backend="numpy", dims=2, shape=list(shape), channels=4, method=m)
                    if r is not None and r.get("ms_per_frame"):
                        rows.append(f"{m} {_shape_str(shape)} x 4: {r['ms_per_frame']:,.0f} ms "
                                    f"vs {anchor:,.0f} ms ({r['ms_per_frame'] / anchor:.2f}x)")
            if rows:
                L += ["Against the CPU anchor of docs/DESIGN.md 11 (Deng et al.'s released Taichi "
                      "particle code, float64, on a 2-core machine of this project's kind): "
                      + "; ".join(rows) + ".", ""]
        L += [f"### Peak memory, {title}", ""] + memory_table(records, backend) + [""]
    skipped = [r for r in records if r.get("status") == "skipped"]
    if skipped:
        L += ["### Not measured", ""]
        for r in skipped:
            L.append(f"* {r['backend']} {_label(r['method'], r.get('factor'))} "
                     f"{_shape_str(r['shape'])} x {r['channels']}: {r['reason']}.")
        L.append("")
    if quality is not None:
        L += ["## Quality: convergence of the baseline to integral noise", "",
              f"The same input for every method: {quality['shape'][1]} x {quality['shape'][0]} x "
              f"{quality['channels']} white noise (seed {quality['seed']}) warped "
              f"{quality['frames']} times in a chain. KS (against N(0, 1)) and Moran's I "
              "(rook weights; z in null standard errors) are of the last frame; the carried "
              "correlation pools each pixel with itself in the frame before over the inner "
              f"pixels and channels from frame {quality['measured_from_frame']} on; its SE "
              "allows for the correlation of successive frames (integrated autocorrelation "
              "time). All methods start from the same noise and the baseline's factors share "
              "their sub-pixel draws, so the KS and Moran values of different rows are "
              "correlated: one low p-value repeated across rows is one event, not several. The "
              "infinite-resolution value of the carried correlation is that of integral noise, "
              "a[p, p] / sqrt(A_p) averaged over the pixels: the grid variant is that "
              "limit, and the baseline approaches it as N grows (for the translation each "
              "axis is off by at most 1/(2N), the analytic column). N = 1 copies the nearest "
              "pixel: under slow motion the noise sticks.", ""]
        L += quality_tables(quality)
        L += ["![convergence](benchmarks/convergence.png)" if meta.get("root_md")
              else "![convergence](convergence.png)", ""]
    Path(path).write_text(carry_section(path, "\n".join(L)))


# ----------------------------------------------------------------------------- main

def _load():
    """The 1-minute load average (None where the OS has none): other jobs on the machine
    slow the CPU timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cupy_core.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small subset, under five minutes")
    ap.add_argument("--out", type=Path, help="output folder (default benchmarks/, or "
                                             "benchmarks/quick/ with --quick)")
    ap.add_argument("--backends", default="auto",
                    help="comma-separated numpy,gpu; 'auto' (default): numpy, and gpu when "
                         "CuPy sees a CUDA device")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds one CPU configuration may take (default 60, 10 with --quick)")
    ap.add_argument("--dims", default="2,3", help="which rows: 2, 3 or 2,3 (default)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the records in results.json of the backends and dims not "
                         "measured in this run (add GPU rows, or 3-D rows, to a CPU run)")
    ap.add_argument("--no-quality", action="store_true", help="skip the quality protocol")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed runs")
    args = ap.parse_args(argv)

    out = args.out or (ROOT / "benchmarks" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget if args.budget is not None else (10.0 if args.quick else 60.0)
    if args.backends == "auto":
        backends = ["numpy"] + (["cupy"] if gpu_available() else [])
    else:
        names = {"numpy": "numpy", "cpu": "numpy", "gpu": "cupy", "cupy": "cupy"}
        try:
            backends = [names[b.strip()] for b in args.backends.split(",") if b.strip()]
        except KeyError as e:
            ap.error(f"unknown backend {e.args[0]!r}: use numpy and/or gpu")
        if "cupy" in backends and not gpu_available():
            ap.error(f"--backends gpu, but the {gpu_status().summary()}")

    try:
        dims = tuple(sorted({int(d) for d in args.dims.split(",") if d.strip()}))
    except ValueError:
        dims = ()
    if not dims or not set(dims) <= {2, 3}:
        ap.error(f"--dims must be 2, 3 or 2,3, got {args.dims!r}")

    def log(msg):
        print(f"[bench] {msg}", flush=True)

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "version": cupy_core.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "cpu": cpu_name(), "budget": budget,
            "gpu": gpu_info()[0] if "cupy" in backends else None,
            "command": " ".join(["python build.py bench"] + list(sys.argv[1:] if argv is None else argv)),
            "root_md": not args.quick and args.out is None,
            "load_average_start": _load()}
    log(f"CPU {meta['cpu']}; GPU {meta['gpu'] or 'none'}; writing to {out}")
    results_path = out / "results.json"
    run_path = out / "run.json"   # how the speed records were taken, for later reports
    if args.no_speed and run_path.exists():
        saved = json.loads(run_path.read_text())
        meta.update({k: v for k, v in saved.items() if k != "root_md"})
    records = []
    if not args.no_speed:
        t0 = time.perf_counter()
        records = SpeedRun(backends, args.quick, budget, log, dims).run()
        log(f"speed runs took {time.perf_counter() - t0:.0f} s")
        meta["load_average_end"] = _load()
        write_json_atomic(run_path, meta)
    if args.merge and results_path.exists():
        old = json.loads(results_path.read_text())
        redone = {(b, d) for b in backends for d in dims} if not args.no_speed else set()
        records = [r for r in old if (r["backend"], r["dims"]) not in redone] + records
    elif args.no_speed and results_path.exists():
        records = json.loads(results_path.read_text())
    write_json_atomic(results_path, records)
    quality = None
    q_path = out / "quality.json"
    if not args.no_quality:
        t0 = time.perf_counter()
        quality = run_quality(args.quick, log)
        write_json_atomic(q_path, {"meta": meta, **quality})
        plot_convergence(quality, out / "convergence.png")
        log(f"quality protocol took {time.perf_counter() - t0:.0f} s")
    elif q_path.exists():
        quality = json.loads(q_path.read_text())
    md = ROOT / "BENCHMARKS.md" if meta["root_md"] else out / "BENCHMARKS.md"
    write_markdown(md, records, quality, meta)
    log(f"wrote {results_path}, {md}" + ("" if quality is None else f", {q_path}, "
                                          f"{out / 'convergence.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
