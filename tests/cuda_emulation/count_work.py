"""Work per pixel-channel of each kernel pass, counted by the CPU emulation (shim.h's
WORK_COUNT: Philox blocks, normals, geometry evaluations), on the benchmark map.

    python tests/cuda_emulation/count_work.py [--size 64] [--channels 4]

prints a Markdown table (BENCHMARKS.md, "Work per pixel-channel").
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cuda_emulation import fake_cupy  # noqa: E402


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
            rows[name.split("_", 1)[1]] = {kind: v / (n * n * channels) for kind, v in k.work.items()}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=4)
    a = ap.parse_args()
    print("| method | pass | Philox blocks | normals | geometry evaluations |")
    print("|---|---|---|---|---|")
    for method in ("particle", "grid"):
        rows = count(method, a.size, a.channels)
        total = {k: 0.0 for k in ("philox", "normals", "geometry")}
        for name, w in rows.items():
            print(f"| {method} | {name} | {w['philox']:.3f} | {w['normals']:.3f} | {w['geometry']:.3f} |")
            for k in total:
                total[k] += w[k]
        print(f"| {method} | **total** | {total['philox']:.3f} | {total['normals']:.3f} | "
              f"{total['geometry']:.3f} |")


if __name__ == "__main__":
    main()
