"""Work per pixel-channel of each kernel pass, counted by the CPU emulation, on the
benchmark map: Philox blocks, normals and geometry walks (shim.h's WORK_COUNT), and
float64 operations by kind (shim.h's counted double, EMU_COUNT_FP64: every ``double``
of the kernel source counts its + -, *, /, sqrt, fmin/fmax/compares, conversions and
floor/ceil/copysign/fabs/isfinite as written, FMA contraction off as on the GPU).

    python tests/cuda_emulation/count_work.py [--size 64] [--channels 16] [--json F]

prints Markdown tables (BENCHMARKS.md, "Work per pixel-channel") and a roofline-style
estimate of a 1920 x 1080 frame on an H100 and an RTX 4090 from the counts (the
assumptions are printed with it). Run it with ``PYTHONPATH`` at another checkout to
count that code with these counters.
"""
import argparse
import json
import os
import sys

os.environ["CUPY_CORE_EMULATION_COUNT_FP64"] = "1"   # before emulate.py is imported

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cuda_emulation import fake_cupy  # noqa: E402

F64 = ("f64_add", "f64_mul", "f64_div", "f64_sqrt", "f64_cmp", "f64_cvt", "f64_other")
PASSES = ("sum_weights", "sum_pieces", "remainder", "gather")

# The estimate's assumptions (per operation as counted; instruction rates, an FMA
# counted as one instruction since the kernels are compiled with --fmad=false).
# A float64 division or square root is a sequence of about 10 float64 instructions
# (reciprocal estimate and Newton steps); everything else counted is one.
F64_WEIGHT = {"f64_add": 1, "f64_mul": 1, "f64_div": 10, "f64_sqrt": 10, "f64_cmp": 1,
              "f64_cvt": 1, "f64_other": 1}
PHILOX_INT_OPS = 80          # integer instructions per Philox4x32-10 block
NORMAL_F32_OPS = 45          # float32 instructions per normal (90 per Box-Muller pair)
GPUS = {
    # name: (float32 instr/s, float64 instr/s, int32 instr/s, bytes/s)
    "H100 SXM": (33.5e12, 16.75e12, 16.75e12, 3.35e12),      # float64 = 1/2 float32
    "RTX 4090": (41.3e12, 41.3e12 / 64, 20.6e12, 1.01e12),  # float64 = 1/64 float32
}


def count(method, n, channels):
    import cupy_core
    from cupy_core.bench.run import bench_map
    from cupy_core.methods import cuda

    pos = bench_map((n, n))
    prior = cupy_core.white_noise((n, n), channels, seed=1)
    with fake_cupy.installed() as cp:
        cupy_core.warp(cp.asarray(prior), cp.asarray(pos), method=method, seed=2, frame=1)
        mod = cuda._modules[f"{method}2d.cu"]
        rows = {}
        for name, k in mod._functions.items():
            rows[name.split("_", 1)[1]] = {kind: v / (n * n * channels)
                                           for kind, v in k.work.items()}
    import importlib
    w = importlib.import_module("cupy_core.warp")
    geom, valid = w._geometry(method, pos, "corners")
    t = w._pieces_numpy(method, geom, valid, (n, n))[0]
    return rows, t.size / (n * n)


def f64_instr(w):
    return sum(F64_WEIGHT[k] * w.get(k, 0.0) for k in F64)


def bytes_per_pixel_channel(name, pieces, channels, cached):
    """Memory traffic of a pass per pixel-channel (the buffers it reads and writes;
    caches ignored, every access a full 8- or 4-byte word)."""
    pc = pieces / channels                  # pieces per pixel-channel
    geom = (12 * pc if cached else 16 / channels)   # cache (uint32 + double) or corners
    if name == "sum_weights":
        return 16 / channels + 8 * pc + (12 * pc + 4 / channels if cached else 0)
    if name == "sum_pieces":
        return geom + 8 * pc + 8 * pieces + 8        # S per piece, T atomics, G
    if name == "remainder":
        return 4 + 8 / channels + 16                 # prior, S, T read and D written
    if name == "gather":
        return geom + 8 * pc + 8 * pieces + 8 + 4    # S, D per piece, G, out
    return 0.0


def estimate(rows, pieces, channels, cached, pixels=1920 * 1080):
    """Milliseconds per frame of ``pixels`` x ``channels`` on each GPU: per pass the
    larger of its compute time (float64 + float32 + integer instructions, issued one
    after the other) and its memory time, summed over the passes."""
    out = {}
    for gpu, (f32, f64, i32, bw) in GPUS.items():
        total = 0.0
        for name, w in rows.items():
            compute = (f64_instr(w) / f64 + w["normals"] * NORMAL_F32_OPS / f32
                       + w["philox"] * PHILOX_INT_OPS / i32)
            memory = bytes_per_pixel_channel(name, pieces, channels, cached) / bw
            total += max(compute, memory) * pixels * channels
        out[gpu] = total * 1e3
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--json", help="write the counts here")
    a = ap.parse_args()
    from cupy_core.methods import bridge
    record = {}
    print(f"Per pixel-channel, {a.size} x {a.size} x {a.channels}, benchmark map.\n")
    print("| method | pass | Philox blocks | normals | geometry walks | f64 add/sub | mul | "
          "div | sqrt | min/max/cmp | cvt | other | f64 total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for method in ("particle", "grid"):
        rows, pieces = count(method, a.size, a.channels)
        cached = bool(getattr(bridge, "CACHE_SLOTS", {}).get(f"{method}2d"))
        record[method] = {"passes": rows, "pieces_per_pixel": pieces, "cached": cached}
        total = {}
        for name in PASSES:
            w = rows.get(name)
            if w is None:
                continue
            for k, v in w.items():
                total[k] = total.get(k, 0.0) + v
            f64 = sum(w[k] for k in F64)
            print(f"| {method} | {name} | {w['philox']:.3f} | {w['normals']:.3f} | "
                  f"{w['geometry']:.3f} | " + " | ".join(f"{w[k]:.1f}" for k in F64)
                  + f" | {f64:.1f} |")
        f64 = sum(total[k] for k in F64)
        print(f"| {method} | **total** | {total['philox']:.3f} | {total['normals']:.3f} | "
              f"{total['geometry']:.3f} | " + " | ".join(f"{total[k]:.1f}" for k in F64)
              + f" | **{f64:.1f}** |")
        record[method]["estimate_ms_1920x1080"] = estimate(rows, pieces, a.channels, cached)
    print(f"\nEstimated ms per 1920 x 1080 x {a.channels} frame (per pass max(compute, "
          "memory), summed; assumptions in count_work.py):\n")
    print("| method | " + " | ".join(GPUS) + " |")
    print("|---|" + "---|" * len(GPUS))
    for method, r in record.items():
        print(f"| {method} | " + " | ".join(f"{r['estimate_ms_1920x1080'][g]:.2f}"
                                          for g in GPUS) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
