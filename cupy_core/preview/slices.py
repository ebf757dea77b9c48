"""The space-time slice picture: one line of pixels across the moving object, taken
from every frame and stacked downwards (time runs down). Noise that moves with the
object draws slanted streaks along its path; fixed noise draws vertical lines (it
stays where it is on the screen); fresh noise is static (no line at all)."""
import numpy as np

from .font import GLYPH_H, draw_text, text_size
from .images import noise_grey, to_rgb8

__all__ = ["line_samples", "space_time", "slice_picture", "auto_line"]


def line_samples(line, shape):
    """Integer pixel indices ``(rows, cols)`` along ``line = ((x0, y0), (x1, y1))``
    (pixel coordinates: pixel (i, j) is x in [j, j + 1], y in [i, i + 1]), one sample
    per pixel of length, clipped to a frame of ``shape`` (H, W)."""
    (x0, y0), (x1, y1) = line
    length = float(np.hypot(x1 - x0, y1 - y0))
    n = max(1, int(np.floor(length)))
    s = (np.arange(n) + 0.5) / n
    x = x0 + (x1 - x0) * s
    y = y0 + (y1 - y0) * s
    cols = np.floor(x).astype(np.intp)
    rows = np.floor(y).astype(np.intp)
    keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return rows[keep], cols[keep]


def space_time(frames, line):
    """``(F, N)`` (or ``(F, N, C)``) array: the ``line``'s samples in each frame."""
    first = np.asarray(frames[0])
    rows, cols = line_samples(line, first.shape[:2])
    return np.stack([np.asarray(f)[rows, cols] for f in frames], axis=0)


def auto_line(shape, positions=None, focus=None, direction=None):
    """A line through the frame for the slice: through ``focus`` ``(x, y)`` along
    ``direction`` ``(dx, dy)``, end to end. Without them, from ``positions`` (backward
    maps): through the centre of the pixels that move more than the frame's typical
    motion, along their mean motion; with no motion, the middle row."""
    h, w = shape
    if (focus is None or direction is None) and positions is not None and len(positions):
        f, d = motion_focus(shape, positions)
        focus = focus if focus is not None else f
        direction = direction if direction is not None else d
    if focus is None:
        focus = (w / 2.0, h / 2.0)
    if direction is None or not np.isfinite(direction).all() or np.hypot(*direction) == 0:
        direction = (1.0, 0.0)
    dx, dy = np.asarray(direction, dtype=np.float64) / np.hypot(*direction)
    if dx < 0 or (dx == 0 and dy < 0):
        dx, dy = -dx, -dy          # left to right
    fx, fy = focus
    # The segment inside the frame: t from the later entry to the earlier exit.
    lo_t, hi_t = -np.inf, np.inf
    for p, d, size in ((fx, dx, float(w)), (fy, dy, float(h))):
        if abs(d) > 1e-12:
            a, b = (0.0 - p) / d, (size - p) / d
            lo_t, hi_t = max(lo_t, min(a, b)), min(hi_t, max(a, b))
    return ((fx + lo_t * dx, fy + lo_t * dy), (fx + hi_t * dx, fy + hi_t * dy))


def motion_focus(shape, positions, max_maps=64):
    """``((x, y), (dx, dy))``: the centre of the pixels that move more than the frame's
    median motion (weighted by how much more), and their mean forward motion; the
    frame's centre and None when nothing stands out."""
    from ..conventions import pixel_centers

    h, w = shape
    centres = pixel_centers((h, w))
    n = len(positions)
    picks = np.unique(np.linspace(0, n - 1, min(n, max_maps)).astype(int)) if n else []
    acc = np.zeros((h, w))
    vec = np.zeros(2)
    for t in picks:
        disp = np.asarray(positions[t], dtype=np.float64) - centres
        ok = np.isfinite(disp).all(axis=-1)
        mag = np.where(ok, np.hypot(disp[..., 0], disp[..., 1]), 0.0)
        wgt = np.clip(mag - (np.median(mag[ok]) if ok.any() else 0.0), 0.0, None)
        acc += wgt
        vec -= (np.where(ok[..., None], disp, 0.0) * wgt[..., None]).sum(axis=(0, 1))
    total = acc.sum()
    if total <= 1e-9:
        return (w / 2.0, h / 2.0), None
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return ((float((acc * xs).sum() / total), float((acc * ys).sum() / total)),
            tuple(vec / total))


def slice_picture(kinds, line, scene=None, *, zoom_time=3, zoom_space=1, blur=2.0,
                  captions=None, footer=(), title="", where=None):
    """RGB uint8 picture of the space-time slices along ``line``, time downwards
    (``zoom_time`` rows per frame): a column for the scene (if given) and for each kind
    of noise (``{name: frames}``, channel 0), in two rows: the pixels themselves, and
    the noise softened first (Gaussian of ``blur`` pixels, as in the animation), where
    the streaks are easiest to follow. ``where``: an image (the scene, or a noise
    frame) with the line drawn on it, shown first; ``captions``: ``{name: text}`` under
    each label; ``footer``: lines of text at the bottom."""
    from .images import softened

    def grey(st):
        g = np.rint(noise_grey(st) * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, 2)

    def tall(img):
        return img.repeat(zoom_time, 0).repeat(zoom_space, 1)

    columns = []   # (label, caption, top image, bottom image)
    if where is not None:
        img = to_rgb8(where).copy()
        rows, cc = line_samples(line, img.shape[:2])
        img[rows, cc] = (255, 205, 40)
        columns.append(("WHERE", "THE LINE", img, None))
    if scene is not None:
        sc = tall(to_rgb8(space_time([to_rgb8(s) for s in scene], line)))
        columns.append(("SCENE", None, sc, sc))
    for name, frames in kinds.items():
        c0 = [np.asarray(f)[..., 0] if np.asarray(f).ndim == 3 else np.asarray(f)
              for f in frames]
        raw = space_time(c0, line)
        rows_, cols_ = line_samples(line, c0[0].shape[:2])
        soft = np.stack([softened(c, blur)[rows_, cols_] for c in c0]) if blur > 0 else raw
        columns.append((name.upper(), (captions or {}).get(name), tall(grey(raw)),
                        tall(np.repeat(np.rint(noise_grey(soft, 2.5) * 255).astype(
                            np.uint8)[..., None], 3, 2))))
    margin, gap, line_h = 8, 10, GLYPH_H + 4
    tile_h = max([c[2].shape[0] for c in columns if c[0] != "WHERE"] +
                 [c[3].shape[0] for c in columns if c[3] is not None] + [1])
    if columns and columns[0][0] == "WHERE":   # fits beside both rows
        img = columns[0][2]
        room = 2 * tile_h + gap + line_h
        if img.shape[0] > room:
            from .images import resize_nearest
            img = resize_nearest(img, (room, max(1, img.shape[1] * room // img.shape[0])))
            columns[0] = columns[0][:2] + (img, None)
    widths = [max(c[2].shape[1], text_size(c[0], 2)[1], text_size(c[1] or "", 1)[1])
              for c in columns]
    head = GLYPH_H * 2 + 4 + line_h
    top = margin + (line_h + 4 if title else 0)
    bottom_top = top + head + tile_h + gap + line_h
    height = bottom_top + tile_h + margin + len(footer) * line_h + (4 if footer else 0)
    width = 2 * margin + sum(widths) + gap * (len(columns) - 1)
    for text in list(footer) + [title]:
        width = max(width, 2 * margin + text_size(text, 1)[1])
    canvas = np.full((height, width, 3), (24, 24, 28), dtype=np.uint8)
    if title:
        draw_text(canvas, title, margin, margin, (255, 255, 255))
    left = margin
    for (label, cap, upper, lower), w in zip(columns, widths):
        draw_text(canvas, label, top, left, (255, 255, 255), 2)
        if cap:
            draw_text(canvas, cap, top + GLYPH_H * 2 + 4, left, (200, 200, 200))
        canvas[top + head:top + head + upper.shape[0], left:left + upper.shape[1]] = upper
        if lower is not None:
            draw_text(canvas, "SOFTENED" if label != "SCENE" else "SCENE",
                      bottom_top - line_h, left, (150, 150, 160))
            canvas[bottom_top:bottom_top + lower.shape[0],
                   left:left + lower.shape[1]] = lower
        left += w + gap
    y = bottom_top + tile_h + margin
    for i, text in enumerate(footer):
        draw_text(canvas, text, y + i * line_h, margin, (200, 200, 200) if i else
                  (255, 255, 255))
    return canvas
