"""Command line: bake warped noise from a flow file.

    python -m cupy_core FLOWS.npy --out DIR [--method grid|particle] [--seed S]
        [--channels C] [--latent-factor F] [--forward] [--preview] [--no-resume]

FLOWS.npy is ``(T, H, W, 2)`` float: the backward flow ``(dx, dy)`` in pixels at pixel
centres, x right and y down: pixel (i, j) of frame t + 1 came from
``(j + 0.5 + dx, i + 0.5 + dy)`` in frame t. NaN means "no source" (fresh noise).
Writes frames 0..T to DIR (docs/DESIGN.md 9).

    python -m cupy_core surface MESH_SEQUENCE --camera CAMERA.json --out DIR [...]

bakes surface noise from a mesh sequence (``cupy_core/surface/cli.py``).
Exit codes: 0 done, 2 bad input or output folder (nothing written), 1 other error
(disk full...), 130 interrupted by Ctrl-C, 143 by SIGTERM (rerun to resume).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from .common import (add_bake_options, add_run_options, array_module_for, check_memory,
                     listed_targets, print_summary, resolve_target, run_command)

NPY_MAGIC = b"\x93NUMPY"
# --preview animates at most this many frames (a GIF of thousands would be unwatchable).
PREVIEW_FRAMES = 240


class UsageError(ValueError):
    """Bad input on the command line; the message names the problem."""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m cupy_core",
        description="Bake temporally coherent Gaussian noise (Deng et al. 2024 integral "
                    "noise warping) from a sequence of optical flows.",
        epilog="Outputs in DIR: noise_XXXX.npy (H, W, C) float32 per frame 0..T, "
               "latents.npy (T+1, H/F, W/F, C), bake.json, and preview_XXXX.png with "
               "--preview. An interrupted bake resumes when the same command is rerun.")
    p.add_argument("flows", metavar="FLOWS.npy",
                   help="(T, H, W, 2) float array: backward flow (dx, dy) in pixels at "
                        "pixel centres, x right, y down; NaN = no source (fresh noise)")
    add_bake_options(p)
    p.add_argument("--forward", action="store_true",
                   help="FLOWS are forward flows (frame t -> t + 1); they are negated, "
                        "the usual video-pipeline approximation of the backward flow")
    add_run_options(p)
    return p


def load_flows(path):
    """Memory-map and check the flow file; raise UsageError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"flow file {str(path)!r} not found")
    if not path.is_file():
        raise UsageError(f"flow file {str(path)!r} is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as exc:
        raise UsageError(f"cannot read flow file {str(path)!r}: {exc.strerror}") from None
    if magic != NPY_MAGIC:
        kind = " (a .npz archive?)" if magic.startswith(b"PK") else ""
        raise UsageError(f"flow file {str(path)!r} is not a .npy file{kind}")
    try:
        flows = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays, broken headers
        raise UsageError(f"cannot load flow file {str(path)!r}: {exc}") from None
    if flows.ndim != 4 or flows.shape[-1] != 2:
        raise UsageError(f"flow file {str(path)!r} has shape {flows.shape}, expected "
                         "(T, H, W, 2)")
    if flows.dtype.kind != "f":
        raise UsageError(f"flow file {str(path)!r} has dtype {flows.dtype}, expected a "
                         "float type (float32 or float64)")
    if flows.shape[1] < 1 or flows.shape[2] < 1:
        raise UsageError(f"flow file {str(path)!r} has empty frames of 0 pixels (shape "
                         f"{flows.shape}): its frames must be at least 1x1")
    for t in range(flows.shape[0]):  # frame by frame: the file may be larger than memory
        if np.isinf(flows[t]).any():
            raise UsageError(f"flow file {str(path)!r} has infinite values in flow {t} "
                             "(NaN is allowed: it means fresh noise)")
    return flows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "surface":  # python -m cupy_core surface MESHES --camera ...
        from .surface import main as surface_main
        return surface_main(argv[1:])
    if listed_targets(argv):
        return 0
    return run_command(_run, build_parser().parse_args(argv))


def _run(args):
    from ..bake.loop import bake_flow_sequence, flow_positions

    flows = load_flows(args.flows)
    target, channels, latent_factor = resolve_target(args, flows.shape[0] + 1,
                                                     flows.shape[1], flows.shape[2])
    if latent_factor > min(flows.shape[1:3]):
        raise UsageError(f"--latent-factor {latent_factor} is larger than the "
                         f"{flows.shape[1]}x{flows.shape[2]} frames")
    xp = array_module_for(args.device)
    max_memory = check_memory(args, flows.shape[1:3], channels, xp=xp)

    from ..bake.fingerprint import hash_file
    source = {"flows": str(Path(args.flows).resolve()),
              "flow": "forward (negated)" if args.forward else "backward"}
    inputs = {"flows": hash_file(args.flows)}
    result = bake_flow_sequence(
        flow_positions(flows, forward=args.forward), args.out,
        method=args.method, seed=args.seed, channels=channels,
        latent_factor=latent_factor, at="centers", shape=flows.shape[1:3], source=source,
        progress=not args.quiet, preview=args.preview, resume=not args.no_resume, xp=xp,
        target=target, inputs=inputs, max_memory=max_memory)
    if args.preview:   # the animated side-by-side, the slice picture, the flicker figure
        from ..conventions import forward_to_backward
        from ..preview import preview_bake
        shown = preview_bake(result.out_dir, flows=flows if not args.forward else
                             forward_to_backward(np.asarray(flows[:PREVIEW_FRAMES])),
                             max_frames=PREVIEW_FRAMES)
        from ..bake.loop import record_written
        record_written(result.out_dir, [p for p in (shown.gif, shown.slices,
                                                    shown.flicker_json) if p is not None])
        if not args.quiet:
            print("\n".join(shown.lines))
    if not args.quiet:
        print_summary(result)
    return 0

