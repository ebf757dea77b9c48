"""Pictures that let a person see the noise move with the scene, and a number for how
much it flickers (issue 16).

* ``preview_bake(bake_dir)``: from any bake folder (``noise_XXXX.npy`` and
  ``bake.json``), optionally with the backward positions (or flows) of the frames and a
  render per frame, write ``comparison.gif`` (the animated side-by-side: scene, warped,
  fixed and fresh noise, enlarged pixels and softened), ``space_time.png`` (one line of
  pixels across the moving object, stacked over the frames) and ``flicker.json`` (the
  warping error of each kind of noise, per region), and return them.
* ``preview_sequences(out_dir, warped, ...)``: the same from frames in memory.
* ``flicker.warping_error`` / ``flicker.flicker_table``: the flicker figures alone.

Fixed noise is the first frame's noise repeated; fresh noise is
``cupy_core.white_noise(shape, C, seed=fresh_seed, frame=f)`` with a seed other than
the bake's. Nothing here needs more than NumPy: the GIF encoder, the PNG writer and the
bitmap font are the package's own.
"""
import dataclasses
import json
from pathlib import Path

import numpy as np

from ..bake.files import FLICKER_NAME, GIF_NAME, SLICES_NAME
from .animation import make_layout, panel_shapes, render_frames, write_gif
from .flicker import (FlickerStat, backward_sample, flicker_table, format_flicker,
                      warping_error)
from .slices import auto_line, motion_focus, slice_picture, space_time

__all__ = ["preview_bake", "preview_sequences", "PreviewResult", "motion_regions",
           "warping_error", "flicker_table", "format_flicker", "backward_sample",
           "FlickerStat", "render_frames", "make_layout", "panel_shapes", "write_gif",
           "slice_picture", "space_time", "auto_line", "GIF_NAME", "SLICES_NAME",
           "FLICKER_NAME", "FLICKER_MEANING"]

FLICKER_MEANING = ("flicker = mean over pixels visible in both frames of (frame t - frame "
                   "t-1 moved by the scene's motion)^2: 0 = moves with the scene, 2 = "
                   "unrelated noise")


@dataclasses.dataclass
class PreviewResult:
    gif: Path                # the animated side-by-side
    slices: Path             # the space-time slice picture
    flicker_json: Path       # None without motion (nothing to measure against)
    flicker: dict            # {kind: {region: FlickerStat}}, {} without motion
    lines: list              # the flicker figures as printed and drawn
    frames: int              # frames shown


class _Frames:
    """Lazy sequence of frames: ``get(i)`` for i < n, the last one kept."""

    def __init__(self, n, get):
        self.n, self.get = n, get
        self._last = (None, None)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        if self._last[0] != i:
            self._last = (i, self.get(i))
        return self._last[1]


def motion_regions(positions, threshold=0.5):
    """Default regions for the flicker: every pixel, those that moved at least
    ``threshold`` pixels since the frame before ("moving") and the others ("still")."""
    from ..conventions import pixel_centers

    cache = {}

    def disp(t):
        if t not in cache:
            p = np.asarray(positions[t - 1], dtype=np.float64)
            d = np.hypot(*(p - pixel_centers(p.shape[:2])).transpose(2, 0, 1))
            cache.clear()
            cache[t] = np.where(np.isfinite(d), d, 0.0)
        return cache[t]

    return {"all": None,
            f"moving (>= {threshold:g} px/frame)": lambda t: disp(t) >= threshold,
            f"still (< {threshold:g} px/frame)": lambda t: disp(t) < threshold}


def preview_sequences(out_dir, warped, *, fixed=None, fresh=None, positions=None,
                      scene=None, regions=None, frame_labels=None, crop=None, focus=None,
                      line=None, zoom=4, panel=192, blur=2.0, delay_ms=100,
                      mode="nearest", title="WARPED VS FIXED VS FRESH NOISE",
                      gif_name=GIF_NAME, slices_name=SLICES_NAME,
                      flicker_name=FLICKER_NAME):
    """Write the animation, the slice picture and the flicker figures of noise frames.

    ``warped``, ``fixed``, ``fresh``: sequences of F noise frames ``(H, W, C)`` (lazy
    sequences are fine); ``fixed`` defaults to frame 0 repeated, ``fresh`` must be given
    (the caller knows the seed to avoid) or is left out. ``positions``: F - 1 backward
    maps (``positions[t]`` takes frame t + 1 to frame t, at pixel centres, NaN where
    disoccluded); without them there is no flicker figure and the crop/line sit in
    the middle. ``scene``: None or F images. ``regions``: ``{name: masks}`` as in
    ``flicker.warping_error`` (default ``motion_regions``). ``crop``: ``(top, left)``
    of the enlarged window, ``focus``: ``(x, y)`` its centre instead; ``line``:
    ``((x0, y0), (x1, y1))`` of the slice (default: across the moving object along its
    motion). Returns a ``PreviewResult``.
    """
    from ._files import write_png_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(warped)
    if n < 1:
        raise ValueError("no frames to preview")
    first = np.asarray(warped[0])
    shape = first.shape[:2]
    kinds = {"warped": warped,
             "fixed": fixed if fixed is not None else _Frames(n, lambda i: first)}
    if fresh is not None:
        kinds["fresh"] = fresh
    if positions is not None and len(positions) < n - 1:
        raise ValueError(f"{n} frames need {n - 1} backward maps, got {len(positions)}")

    table, lines = {}, []
    if positions is not None and n > 1:
        regions = motion_regions(positions) if regions is None else regions
        table = flicker_table(kinds, positions, regions, mode=mode)
        lines = format_flicker(table)
    if focus is None and crop is None and positions is not None and n > 1:
        focus, _ = motion_focus(shape, positions)
    if line is None:
        line = auto_line(shape, positions if n > 1 else None)

    first_region = next(iter(next(iter(table.values())))) if table else None
    captions = ({k: f"FLICKER {table[k][first_region].value:.2f}" for k in table}
                if table else {})
    footer = ([f"FLICKER ({first_region.upper()} ABOVE): MEAN (FRAME T - FRAME T-1 MOVED "
               "BY THE MOTION)^2,", "0 = MOVES WITH THE SCENE, 2 = UNRELATED NOISE"]
              + [ln.upper() for ln in lines] if lines else
              ["NO MOTION GIVEN: NO FLICKER FIGURE"])
    frames, palette, layout, crop = render_frames(
        kinds, scene, crop=crop, focus=focus, zoom=zoom, panel=panel, blur=blur,
        captions=captions, footer=footer, title=title, frame_labels=frame_labels)
    gif = write_gif(out_dir / gif_name, frames, palette, delay_ms=delay_ms)

    where = None
    mid = n // 2
    if scene is not None:
        where = scene[mid]
    slice_foot = ["TIME RUNS DOWN (ONE BAND PER FRAME); ACROSS: THE YELLOW LINE, LEFT TO "
                  "RIGHT.", "MOVES WITH THE OBJECT: SLANTED STREAKS.  FIXED: VERTICAL "
                  "LINES.  FRESH: NO LINES."] + [ln.upper() for ln in lines]
    if where is None:
        from .images import noise_grey
        where = noise_grey(np.asarray(warped[mid])[..., 0])
    picture = slice_picture(kinds, line, scene, captions=captions, footer=slice_foot,
                            blur=blur, where=where,
                            title=f"SPACE-TIME SLICES, {n} FRAMES (TOP: PIXELS; BOTTOM: "
                            f"SOFTENED, GAUSSIAN SIGMA {blur:g} PX)")
    slices = write_png_atomic(out_dir / slices_name, picture)

    flicker_json = None
    if table:
        from ._files import atomic_write_bytes
        record = {"meaning": FLICKER_MEANING, "sampling": mode, "frames": n,
                  "kinds": {k: {r: {"flicker": (None if not np.isfinite(s.value)
                                                else round(float(s.value), 6)),
                                    "values": s.count} for r, s in v.items()}
                            for k, v in table.items()}}
        flicker_json = atomic_write_bytes(out_dir / flicker_name,
                                          (json.dumps(record, indent=2) + "\n").encode())
    return PreviewResult(gif=Path(gif), slices=Path(slices),
                         flicker_json=None if flicker_json is None else Path(flicker_json),
                         flicker=table, lines=lines, frames=n)


def _read_bake(bake_dir):
    from ._files import BAKE_JSON_NAME, parse_frame_name

    bake_dir = Path(bake_dir)
    record = {}
    path = bake_dir / BAKE_JSON_NAME
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
    found = sorted(f for f in (parse_frame_name("noise", e.name, "npy")
                               for e in bake_dir.iterdir()) if f is not None)
    if not found:
        raise ValueError(f"{str(bake_dir)!r} holds no noise_XXXX.npy frames")
    # The longest run of consecutive frames from the first.
    frames = [found[0]]
    for f in found[1:]:
        if f != frames[-1] + 1:
            break
        frames.append(f)
    return record, frames


def preview_bake(bake_dir, out_dir=None, *, positions=None, flows=None, renders=None,
                 regions=None, fresh_seed=None, max_frames=240, **options):
    """The previews of a bake folder: ``comparison.gif``, ``space_time.png`` and (with
    motion) ``flicker.json`` written into ``out_dir`` (default: the bake folder).

    ``positions``: the backward positions of the frames after the first (a
    ``(T, H, W, 2)`` array or a sequence of ``(H, W, 2)`` maps at pixel centres, item t
    taking frame first + t + 1 to frame first + t, NaN where disoccluded), or
    ``flows``: the backward flows ``(T, H, W, 2)`` as the command line reads them; with
    neither, no flicker figure. ``renders``: None, or one image per frame (arrays, or
    file names read with Pillow). ``fresh_seed``: the fresh noise's seed (default the
    bake's seed + 1). ``max_frames``: show at most this many frames from the first.
    Other keyword arguments go to ``preview_sequences``. Returns a ``PreviewResult``.
    """
    import cupy_core
    from ._files import frame_name

    bake_dir = Path(bake_dir)
    record, frames = _read_bake(bake_dir)
    if max_frames is not None:
        frames = frames[:max(1, int(max_frames))]
    n = len(frames)
    first = np.load(bake_dir / frame_name("noise", frames[0], "npy"), mmap_mode="r")
    if first.ndim != 3:
        raise ValueError(f"the bake's frames are {first.shape}, not (H, W, C) images "
                         "(volumes have no preview)")
    shape, channels = first.shape[:2], first.shape[2]
    seed = int(record.get("seed", 0) or 0)
    if fresh_seed is None:
        fresh_seed = (seed + 1) % 2 ** 64
    elif int(fresh_seed) == seed:
        raise ValueError(f"fresh_seed {fresh_seed} is the bake's own seed: fresh noise "
                         "would be the bake's first frame")

    def load(i):
        return np.load(bake_dir / frame_name("noise", frames[i], "npy"), mmap_mode="r")

    warped = _Frames(n, load)
    fixed0 = np.asarray(first)
    fixed = _Frames(n, lambda i: fixed0)
    fresh = _Frames(n, lambda i: cupy_core.white_noise(shape, channels, seed=fresh_seed,
                                                      frame=frames[i]))
    if positions is None and flows is not None:
        from ..bake.loop import flow_positions
        positions = flow_positions(flows)
    if positions is not None:
        if len(positions) < n - 1:
            raise ValueError(f"{n} frames need {n - 1} backward maps, got {len(positions)}")
        p0 = np.asarray(positions[0]) if n > 1 else None
        if p0 is not None and p0.shape[:2] != tuple(shape):
            raise ValueError(f"positions are {p0.shape[:2]}, the noise frames {shape}")
    scene = None
    if renders is not None:
        if len(renders) < n:
            raise ValueError(f"{n} frames need {n} renders, got {len(renders)}")
        scene = _Frames(n, lambda i: _load_image(renders[i]))
    return preview_sequences(bake_dir if out_dir is None else out_dir, warped, fixed=fixed,
                             fresh=fresh, positions=positions, scene=scene,
                             regions=regions, frame_labels=frames, **options)


def _load_image(item):
    if isinstance(item, (str, Path)):
        try:
            from PIL import Image
        except ImportError:
            raise ValueError(f"reading the render {str(item)!r} needs Pillow (pip install "
                             "pillow), or pass the renders as arrays") from None
        with Image.open(item) as im:
            return np.asarray(im.convert("RGB"))
    return np.asarray(item)
