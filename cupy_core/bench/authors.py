"""CPU comparison against Deng et al.'s released code (docs/DESIGN.md 11): their Taichi
particle warper on Taichi's CPU backend, and this package's NumPy path, on the same
input (``bench_map``: subpixel pan, swirl, wobble), frame by frame, in one process.

Their code is never stored here: pass a local copy of their repository (the folder
holding ``src/warp_particle.py``; github.com/yitongdeng-projects/
infinite_resolution_integral_noise_warping_code) and run this with a Python that has
``taichi`` (``pip install taichi`` in a scratch environment) and this package
importable (``PYTHONPATH``):

    python -m cupy_core.bench.authors --authors /path/to/their/repo [--sizes 256,512,1024]
        [--channels 4] [--frames 10] [--threads 2] [--before OLD/cupy_core] [--json out.json]

Without ``--authors`` (or without taichi) only this package is timed, against the
anchors recorded in docs/DESIGN.md 11 (their particle code, 2 cores).

Timing: their ``ParticleWarper.run()`` (one Taichi kernel launch, synchronised by
``ti.sync()``) excluding ``set_noise``/``set_deformation`` uploads, so the comparison
flatters them slightly; ours: one ``cupy_core.warp`` call, input checks and geometry
included. The contenders run interleaved, frame by frame, the order turning by one
each round (theirs, our particle, our grid; then our particle, our grid, theirs; ...),
after two warm-up rounds (Taichi compiles its kernel in the first); medians of
``--frames`` frames, wall and process CPU time, and the load average before and after
each size.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ANCHORS_MS = {256: 54.0, 512: 241.0, 1024: 979.0}   # their particle code, 2 cores (docs/DESIGN.md 11)


def interleaved(fns, frames):
    """Median wall and CPU milliseconds per frame of each callable in ``fns`` (a dict),
    run in turn frame by frame (two warm-up rounds first), so that a change in the
    machine's load hits every contender alike. The order turns by one each round, so
    that every contender takes every place equally often: with a fixed order the
    timings depended on the place (a package before a change looked faster than after
    it, and the other way round with the two swapped; cause not pinned down).
    CPU time is the process's (all threads: Taichi's and NumPy's pools run in this
    process)."""
    keys = list(fns)
    for _ in range(2):
        for fn in fns.values():
            fn()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for i in range(frames):
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:
            t, c = time.perf_counter(), time.process_time()
            fns[k]()
            wall[k].append((time.perf_counter() - t) * 1000.0)
            cpu[k].append((time.process_time() - c) * 1000.0)
    return ({k: statistics.median(v) for k, v in wall.items()},
            {k: statistics.median(v) for k, v in cpu.items()})


def authors_frame(repo, n, channels, threads):
    """One frame of their particle warper at n x n (a callable), or None (no taichi)."""
    try:
        import taichi as ti
    except ImportError:
        return None
    sys.path.insert(0, os.path.join(os.path.abspath(repo), "src"))
    import warp_particle   # their module (imports taichi as ti, numpy as np)

    if not getattr(authors_frame, "_init", False):
        kw = {"cpu_max_num_threads": threads} if threads else {}
        ti.init(arch=ti.cpu, default_fp=ti.f64, random_seed=0, **kw)
        authors_frame._init = True
    from .run import bench_map
    from ..conventions import corners_to_centers

    centres = corners_to_centers(bench_map((n, n)))           # (H, W, 2) as (x, y)
    their_map = np.ascontiguousarray(centres[..., ::-1])       # theirs: (row, col)
    noise = np.random.default_rng(0).standard_normal((n, n, channels))
    warper = warp_particle.ParticleWarper(n, n, channels)
    warper.set_deformation(their_map)
    warper.set_noise(noise)

    def frame():
        warper.run()
        ti.sync()

    return frame


def ours_frame(method, n, channels, package=None):
    """One frame of this package's ``warp`` (or of ``package``'s: an older copy loaded
    by ``load_before``) at n x n (a callable)."""
    import cupy_core
    from .run import bench_map

    pkg = package or cupy_core
    pos = bench_map((n, n))
    prior = cupy_core.white_noise((n, n), channels, seed=1)
    return lambda: pkg.warp(prior, pos, method=method, seed=2, frame=1)


def load_before(path):
    """Another copy of cupy_core (the folder holding its ``__init__.py``, e.g. from
    ``git archive OLD cupy_core | tar -x -C DIR``), imported as ``cupy_core_before`` so
    that it can be timed in the same process as this one."""
    import importlib.util

    path = os.path.abspath(path)
    spec = importlib.util.spec_from_file_location(
        "cupy_core_before", os.path.join(path, "__init__.py"),
        submodule_search_locations=[path])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cupy_core_before"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", help="local copy of their repository (holds src/)")
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0,
                    help="Taichi CPU threads (0: Taichi's default, all cores)")
    ap.add_argument("--before", help="an older copy of the cupy_core package folder, "
                    "timed in the same run (interleaved) for a before/after comparison")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args(argv)
    rows = []
    load0 = os.getloadavg()[0]
    before = load_before(args.before) if args.before else None
    for n in (int(s) for s in args.sizes.split(",")):
        fns = {}
        theirs_fn = (authors_frame(args.authors, n, args.channels, args.threads)
                     if args.authors else None)
        if theirs_fn is not None:
            fns["authors"] = theirs_fn
        fns["particle"] = ours_frame("particle", n, args.channels)
        fns["grid"] = ours_frame("grid", n, args.channels)
        if before is not None:
            fns["particle_before"] = ours_frame("particle", n, args.channels, before)
            fns["grid_before"] = ours_frame("grid", n, args.channels, before)
        la = os.getloadavg()[0]
        wall, cpu = interleaved(fns, args.frames)
        source = "measured" if theirs_fn is not None else "anchor (docs/DESIGN.md 11)"
        theirs = wall.get("authors", ANCHORS_MS.get(n))
        particle, grid = wall["particle"], wall["grid"]
        row = {"size": n, "channels": args.channels, "authors_particle_ms": theirs,
               "authors_source": source, "particle_ms": particle, "grid_ms": grid,
               "cpu_ms": cpu, "load_before": la, "load_after": os.getloadavg()[0]}
        if theirs:
            row["particle_speedup"] = theirs / particle
            row["grid_speedup"] = theirs / grid
        if before is not None:
            row["particle_before_ms"] = wall["particle_before"]
            row["grid_before_ms"] = wall["grid_before"]
        rows.append(row)
        cpu_note = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        print(f"{n} x {n} x {args.channels}: authors particle "
              f"{theirs if theirs is None else round(theirs, 1)} ms ({source}); "
              f"ours particle {particle:.1f} ms"
              + (f" ({theirs / particle:.2f}x faster)" if theirs else "")
              + f", grid {grid:.1f} ms" + (f" ({theirs / grid:.2f}x)" if theirs else "")
              + (f"; before: particle {row['particle_before_ms']:.1f} ms, grid "
                 f"{row['grid_before_ms']:.1f} ms" if before is not None else "")
              + f"; CPU ms per frame: {cpu_note}; load {la:.2f} -> {row['load_after']:.2f}",
              flush=True)
    record = {"rows": rows, "cpu_count": os.cpu_count(),
              "load_average": [load0, os.getloadavg()[0]]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return record


if __name__ == "__main__":
    main()
