"""CPU comparison against Deng et al.'s released code (DESIGN.md 11): their Taichi
particle warper on Taichi's CPU backend, and this package's NumPy path, on the same
input (``bench_map``: subpixel pan, swirl, wobble), frame by frame, in one process.

Their code is never stored here: pass a local copy of their repository (the folder
holding ``src/warp_particle.py``; github.com/yitongdeng-projects/
infinite_resolution_integral_noise_warping_code) and run this with a Python that has
``taichi`` (``pip install taichi`` in a scratch environment) and this package
importable (``PYTHONPATH``):

    python -m cupy_core.bench.authors --authors /path/to/their/repo [--sizes 256,512,1024]
        [--channels 4] [--frames 10] [--threads 2] [--json out.json]

Without ``--authors`` (or without taichi) only this package is timed, against the
anchors recorded in DESIGN.md 11 (their particle code, 2 cores).

Timing: their ``ParticleWarper.run()`` (one Taichi kernel launch, synchronised by
``ti.sync()``) excluding ``set_noise``/``set_deformation`` uploads, so the comparison
flatters them slightly; ours: one ``cupy_core.warp`` call, input checks and geometry
included. Median of ``--frames`` frames after two warm-up frames (Taichi compiles its
kernel in the first).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ANCHORS_MS = {256: 54.0, 512: 241.0, 1024: 979.0}   # their particle code, 2 cores (DESIGN.md 11)


def _median_ms(fn, frames):
    fn()
    fn()
    ts = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(ts)


def time_authors(repo, n, channels, frames, threads):
    """Median ms per frame of their particle warper at n x n, or None (no taichi)."""
    try:
        import taichi as ti
    except ImportError:
        return None
    sys.path.insert(0, os.path.join(os.path.abspath(repo), "src"))
    import warp_particle   # their module (imports taichi as ti, numpy as np)

    if not getattr(time_authors, "_init", False):
        kw = {"cpu_max_num_threads": threads} if threads else {}
        ti.init(arch=ti.cpu, default_fp=ti.f64, random_seed=0, **kw)
        time_authors._init = True
    from .run import bench_map
    from ..conventions import corners_to_centers

    centres = corners_to_centers(bench_map((n, n)))           # (H, W, 2) as (x, y)
    their_map = np.ascontiguousarray(centres[..., ::-1])       # theirs: (row, col)
    noise = np.random.default_rng(0).standard_normal((n, n, channels))
    warper = warp_particle.ParticleWarper(n, n, channels)
    warper.set_deformation(their_map)

    def frame():
        warper.run()
        ti.sync()

    warper.set_noise(noise)
    return _median_ms(frame, frames)


def time_ours(method, n, channels, frames):
    import cupy_core
    from .run import bench_map

    pos = bench_map((n, n))
    prior = cupy_core.white_noise((n, n), channels, seed=1)
    return _median_ms(lambda: cupy_core.warp(prior, pos, method=method, seed=2, frame=1), frames)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", help="local copy of their repository (holds src/)")
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0,
                    help="Taichi CPU threads (0: Taichi's default, all cores)")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args(argv)
    rows = []
    load0 = os.getloadavg()[0]
    for n in (int(s) for s in args.sizes.split(",")):
        theirs = (time_authors(args.authors, n, args.channels, args.frames, args.threads)
                  if args.authors else None)
        source = "measured" if theirs is not None else "anchor (DESIGN.md 11)"
        if theirs is None:
            theirs = ANCHORS_MS.get(n)
        particle = time_ours("particle", n, args.channels, args.frames)
        grid = time_ours("grid", n, args.channels, args.frames)
        row = {"size": n, "channels": args.channels, "authors_particle_ms": theirs,
               "authors_source": source, "particle_ms": particle, "grid_ms": grid}
        if theirs:
            row["particle_speedup"] = theirs / particle
            row["grid_speedup"] = theirs / grid
        rows.append(row)
        print(f"{n} x {n} x {args.channels}: authors particle "
              f"{theirs if theirs is None else round(theirs, 1)} ms ({source}); "
              f"ours particle {particle:.1f} ms"
              + (f" ({theirs / particle:.2f}x faster)" if theirs else "")
              + f", grid {grid:.1f} ms" + (f" ({theirs / grid:.2f}x)" if theirs else ""),
              flush=True)
    record = {"rows": rows, "cpu_count": os.cpu_count(),
              "load_average": [load0, os.getloadavg()[0]]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return record


if __name__ == "__main__":
    main()
