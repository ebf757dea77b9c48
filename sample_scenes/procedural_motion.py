"""A procedural motion sequence: backward flows of a smooth animated scene.

The background swirls about the image centre (a vortex whose angular speed falls off
with the distance and breathes over time) while the camera pans slowly; a disk
translates across it. Pixels the disk uncovers have no source in the previous frame:
their flow is NaN, which the warp answers with fresh noise. Displacements are a
couple of pixels per frame.

    python sample_scenes/procedural_motion.py flows.npy [--frames T] [--height H] [--width W]
    python -m cupy_core flows.npy --out baked/ --preview
"""
import argparse
import sys

import numpy as np


def disk_centre(t, T, H, W):
    """Centre (x, y) of the disk in frame t: from upper left to lower right."""
    return 0.2 * W + 0.6 * W * t / max(T, 1), 0.35 * H + 0.3 * H * t / max(T, 1)


def make_flows(T=48, H=256, W=256):
    """Backward flows ``(T, H, W, 2)`` float32: ``flows[t]`` holds, at each pixel centre
    of frame t + 1, the displacement ``(dx, dy)`` to where that point was in frame t
    (x right, y down, pixels). NaN where the disk uncovered the background."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5  # pixel centres
    cx, cy = W / 2.0, H / 2.0
    sigma = 0.3 * min(H, W)
    falloff = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma ** 2))
    pan = np.array([0.6, 0.25])            # camera pan, pixels per frame
    radius = min(H, W) / 8.0
    flows = np.empty((T, H, W, 2), dtype=np.float32)
    for t in range(T):
        # Background: forward, q -> R(theta) (q - centre) + centre + pan; backward,
        # undo the pan, then rotate back by the swirl's angle (radians per frame).
        theta = 0.02 * (1.0 + 0.5 * np.sin(2.0 * np.pi * t / max(T, 1))) * falloff
        c, s = np.cos(theta), np.sin(theta)
        ux, uy = x - pan[0] - cx, y - pan[1] - cy
        bx = cx + c * ux + s * uy
        by = cy - s * ux + c * uy
        # The disk: a rigid translation from frame t to frame t + 1.
        x0, y0 = disk_centre(t, T, H, W)
        x1, y1 = disk_centre(t + 1, T, H, W)
        inside_now = (x - x1) ** 2 + (y - y1) ** 2 <= radius ** 2
        uncovered = ~inside_now & ((bx - x0) ** 2 + (by - y0) ** 2 <= radius ** 2)
        px = np.where(inside_now, x - (x1 - x0), bx)
        py = np.where(inside_now, y - (y1 - y0), by)
        px[uncovered] = np.nan
        py[uncovered] = np.nan
        flows[t, :, :, 0] = px - x
        flows[t, :, :, 1] = py - y
    return flows


def main(argv=None):
    p = argparse.ArgumentParser(description="Write the procedural backward flows to a .npy")
    p.add_argument("out", help="output .npy file")
    p.add_argument("--frames", type=int, default=48, help="number of flows T (default 48)")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    args = p.parse_args(argv)
    if min(args.frames, args.height, args.width) < 1:
        p.error("--frames, --height and --width must be >= 1")
    flows = make_flows(args.frames, args.height, args.width)
    np.save(args.out, flows)
    print(f"wrote {args.out}: backward flows {flows.shape} float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
