"""The demo: bake the procedural motion with the grid method and compare.

    python sample_scenes/demo.py [--out demo_output] [--frames 48] [--size 256]

(``python build.py demo`` runs it in the project's virtual environment.)

Writes into the output folder the bake itself (noise_XXXX.npy, preview_XXXX.png,
latents.npy pooled by 8, bake.json) and comparison.png: three rows of crops, every
8th frame from left to right:

* FIXED: the same noise every frame: it sticks to the screen while things move;
* FRESH: new noise every frame: it flickers;
* WARPED: the baked noise: it moves with the swirl, the pan and the disk, and is
  fresh only where the disk uncovers the background.

Then prints the whiteness of the last warped frame (it should look like N(0, 1)),
and ends with the pictures of ``cupy_core.preview`` (issue 16), drawn with the moving
shapes themselves:

* comparison.gif: the animated side-by-side: the scene, warped, fixed and fresh noise,
  a window of pixels enlarged and the whole frame softened (blobs travel);
* space_time.png: one line of pixels along the disk's path, stacked over the frames
  (warped: slanted streaks; fixed: vertical lines; fresh: static);
* flicker.json and the printed flicker figures: the warping error of each kind of
  noise on the disk and on the background (0 = moves with the scene, 2 = unrelated).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for procedural_motion, beside this file

import cupy_core  # noqa: E402
from cupy_core.bake.files import noise_to_preview, write_png_atomic  # noqa: E402
from cupy_core.bake.loop import bake_flow_sequence, flow_positions  # noqa: E402
from procedural_motion import disk_centre, make_flows  # noqa: E402

# A 3 x 5 pixel font, just enough for the labels.
GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", "A": "010101111101101", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "H": "101101111101101",
    "I": "111010010010111", "P": "110101110100100", "R": "110101110101101",
    "S": "011100010001110", "W": "101101101111101", "X": "101101010101101",
    " ": "000000000000000",
}


def text_image(text, scale=3, colour=230, background=20):
    """uint8 (5 * scale, len(text) * 4 * scale) picture of ``text``."""
    out = np.full((5, 4 * len(text)), background, dtype=np.uint8)
    for k, ch in enumerate(text.upper()):
        bits = np.array([int(b) for b in GLYPHS.get(ch, GLYPHS[" "])]).reshape(5, 3)
        out[:, 4 * k:4 * k + 3][bits == 1] = colour
    return np.kron(out, np.ones((scale, scale), dtype=np.uint8))


def paste(canvas, image, top, left):
    """Paste ``image`` (H, W) grey or (H, W, 3) into the RGB ``canvas``."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    canvas[top:top + image.shape[0], left:left + image.shape[1]] = image


def comparison(rows, columns, labels, crop, zoom=2, gap=3, margin=8):
    """One RGB picture: ``rows`` of tiles (lists of noise frames), labelled; each tile
    is the ``crop`` of a frame, enlarged ``zoom`` times so single pixels show."""
    (y0, y1), (x0, x1) = crop
    th, tw = zoom * (y1 - y0), zoom * (x1 - x0)
    label_w = max(text_image(lab).shape[1] for lab in labels) + 2 * margin
    head_h = text_image("0").shape[0] + 2 * margin
    height = head_h + len(rows) * th + (len(rows) - 1) * gap + margin
    width = label_w + len(columns) * tw + (len(columns) - 1) * gap + margin
    canvas = np.full((height, width, 3), 20, dtype=np.uint8)  # dark separators
    for c, frame in enumerate(columns):
        left = label_w + c * (tw + gap)
        paste(canvas, text_image(str(frame)), margin, left)
    for r, (label, tiles) in enumerate(zip(labels, rows)):
        top = head_h + r * (th + gap)
        lab = text_image(label)
        paste(canvas, lab, top + (th - lab.shape[0]) // 2, margin)
        for c, noise in enumerate(tiles):
            tile = noise_to_preview(noise[y0:y1, x0:x1]).repeat(zoom, 0).repeat(zoom, 1)
            paste(canvas, tile, top, label_w + c * (tw + gap))
    return canvas


def whiteness(noise):
    """Mean, standard deviation and neighbour correlations of a frame (all channels)."""
    x = np.asarray(noise, dtype=np.float64)
    x = (x - x.mean()) / x.std()
    right = float((x[:, 1:] * x[:, :-1]).mean())
    down = float((x[1:] * x[:-1]).mean())
    return float(np.mean(noise)), float(np.std(noise)), right, down


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE.parent / "demo_output"), help="output folder")
    p.add_argument("--frames", type=int, default=48, help="number of flows (frames - 1)")
    p.add_argument("--size", type=int, default=256, help="frame height and width")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=8, help="frames between columns")
    p.add_argument("--no-pictures", action="store_true",
                   help="skip comparison.gif, space_time.png and the flicker figures")
    args = p.parse_args(argv)
    out = Path(args.out)
    size, seed, channels = args.size, args.seed, args.channels

    flows = make_flows(args.frames, size, size)
    print(f"procedural motion: {args.frames} backward flows of {size}x{size}, "
          f"up to {np.nanmax(np.hypot(flows[..., 0], flows[..., 1])):.1f} px per frame")
    start = time.perf_counter()
    result = bake_flow_sequence(
        flow_positions(flows), out, method="grid", seed=seed, channels=channels,
        latent_factor=8 if size >= 8 else 1, at="centers", preview=True, resume=False,
        source={"procedural": "sample_scenes/procedural_motion.py", "frames": args.frames,
                "size": size})
    seconds = time.perf_counter() - start
    print(f"baked {len(result.frames)} frames into {result.out_dir} in {seconds:.1f} s "
          f"({1000 * seconds / len(result.frames):.0f} ms per frame, grid method)")

    columns = list(range(0, args.frames + 1, max(1, args.every)))
    half = min(size, 64) // 2
    crop = ((size // 2 - half, size // 2 + half),) * 2  # the centre, where things move
    fixed = np.load(out / "noise_0000.npy")
    rows = [
        [fixed for _ in columns],
        [cupy_core.white_noise((size, size), channels, seed=seed, frame=t) for t in columns],
        [np.load(out / f"noise_{t:04d}.npy") for t in columns],
    ]
    picture = comparison(rows, columns, ["FIXED", "FRESH", "WARPED"], crop)
    write_png_atomic(out / "comparison.png", picture)
    print(f"comparison: {out / 'comparison.png'} (rows: fixed, fresh, warped noise; "
          f"columns: frames {', '.join(map(str, columns))}; centre {2 * half}x{2 * half} "
          "crop, enlarged 2x)")

    last = np.load(out / f"noise_{result.frames[-1]:04d}.npy")
    mean, std, right, down = whiteness(last)
    print(f"last frame ({result.frames[-1]}) whiteness: mean {mean:+.4f}, std {std:.4f}, "
          f"neighbour correlation right {right:+.4f}, down {down:+.4f} "
          f"(white noise: 0, 1, 0, 0 within about {3 / np.sqrt(last.size):.3f})")
    latents = np.load(out / "latents.npy", mmap_mode="r")
    print(f"latents.npy: {latents.shape} {latents.dtype}")
    show(out, flows, result.frames, seed, args.no_pictures)
    return 0


# --------------------------------------------------------------------------- the pictures

def _fill_nan(disp, invalid):
    """Displacements ``(H, W, 2)`` with the ``invalid`` pixels (the disk, the uncovered
    trail) filled by a quadratic fitted to the valid ones around them: the background's
    motion (swirl and pan) is smooth."""
    d = np.where(invalid[..., None], 0.0, disp)
    if not invalid.any():
        return d
    h, w = invalid.shape
    rows, cols = np.nonzero(invalid)
    t, b = max(rows.min() - 12, 0), min(rows.max() + 13, h)
    l, r = max(cols.min() - 12, 0), min(cols.max() + 13, w)
    y, x = np.mgrid[t:b, l:r] + 0.5
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1) / \
        np.array([1.0, w, h, w * w, w * h, h * h])
    known = ~invalid[t:b, l:r]
    coef, *_ = np.linalg.lstsq(basis[known], d[t:b, l:r][known], rcond=None)
    box = d[t:b, l:r]
    box[~known] = basis[~known] @ coef
    return d


def _sample(field, pos):
    """Bilinear sample of ``field`` ``(H, W, K)`` at positions ``(H, W, 2)``."""
    h, w = field.shape[:2]
    u = np.clip(pos[..., 0] - 0.5, 0, w - 1)
    v = np.clip(pos[..., 1] - 0.5, 0, h - 1)
    j0, i0 = np.floor(u).astype(int), np.floor(v).astype(int)
    j1, i1 = np.minimum(j0 + 1, w - 1), np.minimum(i0 + 1, h - 1)
    fu, fv = (u - j0)[..., None], (v - i0)[..., None]
    return ((1 - fv) * ((1 - fu) * field[i0, j0] + fu * field[i0, j1])
            + fv * ((1 - fu) * field[i1, j0] + fu * field[i1, j1]))


def disk_masks(frames, size):
    """Inside the moving disk, frame by frame (the flow's own disk)."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    radius = size / 8.0
    out = []
    for t in range(frames):
        cx, cy = disk_centre(t, frames - 1, size, size)
        out.append((x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2)
    return out


def scene_images(flows, size):
    """RGB pictures of the moving shapes: a checkerboard carried by the background's
    swirl and pan (its texture coordinates advected through the flows), and the disk
    (a ringed, striped target) translating over it."""
    from cupy_core.conventions import pixel_centers

    count = len(flows) + 1
    centres = pixel_centers((size, size))
    disks = disk_masks(count, size)
    coords = centres.copy()          # where each pixel's background was at frame 0
    radius = size / 8.0
    images = []
    for t in range(count):
        if t > 0:
            disp = flows[t - 1].astype(np.float64)
            bad = disks[t] | ~np.isfinite(disp).all(axis=-1)
            coords = _sample(coords, centres + _fill_nan(disp, bad))
        u, v = coords[..., 0], coords[..., 1]
        cell = max(size // 16, 2)
        check = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(bool)
        img = np.where(check[..., None], np.array([70, 110, 160]), np.array([200, 210, 220]))
        line = (np.abs(((u + cell / 2) % cell) - cell / 2) < 0.6) | \
               (np.abs(((v + cell / 2) % cell) - cell / 2) < 0.6)
        img = np.where(line[..., None], np.array([40, 60, 90]), img)
        cx, cy = disk_centre(t, count - 1, size, size)
        dx, dy = centres[..., 0] - cx, centres[..., 1] - cy
        r = np.hypot(dx, dy)
        stripes = (np.floor((dx + dy) / (radius / 3)) % 2).astype(bool)
        disk = np.where(stripes[..., None], np.array([235, 120, 30]), np.array([250, 200, 60]))
        disk = np.where((r > 0.8 * radius)[..., None], np.array([160, 40, 30]), disk)
        img = np.where(disks[t][..., None], disk, img)
        images.append(img.astype(np.uint8))
    return images


def show(out, flows, frames, seed, skip=False):
    """The end of the demo: comparison.gif, space_time.png and the flicker figures."""
    if skip:
        return None
    from cupy_core.preview import preview_sequences
    from cupy_core.bake.loop import flow_positions

    start = time.perf_counter()
    count = len(frames)
    size = flows.shape[1]
    disks = disk_masks(count, size)
    positions = flow_positions(flows)
    warped = [np.load(out / f"noise_{f:04d}.npy", mmap_mode="r") for f in frames]
    shape, channels = warped[0].shape[:2], warped[0].shape[2]
    fresh_seed = seed + 1
    fresh = [cupy_core.white_noise(shape, channels, seed=fresh_seed, frame=f) for f in frames]
    # The slice: along the disk's path, end to end across the frame.
    (x0, y0), (x1, y1) = disk_centre(0, count - 1, size, size), \
        disk_centre(count - 1, count - 1, size, size)
    from cupy_core.preview.slices import auto_line
    line = auto_line((size, size), focus=((x0 + x1) / 2, (y0 + y1) / 2),
                     direction=(x1 - x0, y1 - y0))
    result = preview_sequences(
        out, warped, fresh=fresh, positions=positions, scene=scene_images(flows, size),
        regions={"disk": disks, "background": [~m for m in disks]},
        frame_labels=frames, focus=((x0 + x1) / 2, (y0 + y1) / 2), line=line, zoom=3,
        panel=192, blur=2.0, delay_ms=100,
        title="PROCEDURAL SCENE: WARPED, FIXED, FRESH NOISE")
    print("flicker (warping error: mean of (frame t - frame t-1 moved by the scene's "
          "motion)^2 over pixels visible in both, nearest sampling; 0 = moves with the "
          "scene, 2 = unrelated noise):")
    for line_ in result.lines:
        print("  " + line_)
    print(f"pictures in {time.perf_counter() - start:.1f} s: {result.gif} (animated: "
          f"scene, warped, fixed, fresh), {result.slices} (space-time slices along the "
          f"disk's path), {result.flicker_json}")
    return result


if __name__ == "__main__":
    sys.exit(main())
