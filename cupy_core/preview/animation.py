"""The animated side-by-side: for every frame, the scene and each kind of noise
(warped, fixed, fresh), in two rows: the pixels of a window enlarged (nearest
neighbour, so single noise pixels show as squares that travel), and the whole frame
softened (channel 0 blurred by a Gaussian), in which blobs visibly travel with the
scene. Every panel is labelled; the flicker figures are written under the panels.

``make_layout`` places everything (tested on its own); ``render_frames`` draws palette
frames; ``write_gif`` encodes them (``gif.py``).
"""
import dataclasses

import numpy as np

from .font import GLYPH_H, draw_text, text_size
from .gif import encode_gif
from .images import Palette, noise_grey, resize_bilinear, resize_nearest, softened, to_rgb8

__all__ = ["Layout", "make_layout", "panel_shapes", "render_frames", "write_gif",
           "ROW_PIXELS", "ROW_SOFT"]

ROW_PIXELS, ROW_SOFT = "pixels", "softened"
MARGIN, GAP, CAPTION = 8, 8, GLYPH_H + 4
TITLE_SCALE = 2


@dataclasses.dataclass
class Layout:
    """Where everything goes, in canvas pixels: ``panels[(row, column)] = (top, left,
    height, width)``; ``captions[(row, column)] = (top, left)`` of the label above the
    panel; ``title = (top, left)``; ``footer = (top, left, height, width)``."""
    height: int
    width: int
    rows: tuple
    columns: tuple
    panels: dict
    captions: dict
    title: tuple
    footer: tuple


def panel_shapes(frame_shape, panel=192, zoom=4):
    """``(pixels_shape, soft_shape, crop_shape)`` for frames of ``frame_shape`` (H, W):
    the softened panel shows the whole frame with its longer side ``panel`` pixels
    (enlarged by a whole factor when the frame is smaller, resized down when larger);
    the pixel panel shows a ``crop_shape`` window enlarged ``zoom`` times, as large as
    the softened panel allows."""
    h, w = (int(s) for s in frame_shape)
    zoom = max(1, int(zoom))
    side = max(h, w)
    if side <= panel:
        z = max(1, panel // side)
        soft = (h * z, w * z)
    else:
        s = panel / side
        soft = (max(1, int(round(h * s))), max(1, int(round(w * s))))
    crop = (max(1, min(h, soft[0] // zoom)), max(1, min(w, soft[1] // zoom)))
    pixels = (crop[0] * zoom, crop[1] * zoom)
    return pixels, soft, crop


def make_layout(columns, pixels_shape, soft_shape, *, footer_lines=0, title=True,
                min_width=0):
    """The ``Layout`` of one animation frame: a title line, then for each of the two
    rows (``ROW_PIXELS``, ``ROW_SOFT``) a caption line and the panels of ``columns``
    side by side, then ``footer_lines`` lines of text; at least ``min_width`` wide
    (room for the footer's text)."""
    columns = tuple(columns)
    col_w = max(pixels_shape[1], soft_shape[1],
                max(text_size(f"{c} SOFTENED X", 1)[1] for c in columns))
    width = max(2 * MARGIN + len(columns) * col_w + (len(columns) - 1) * GAP,
                int(min_width))
    top = MARGIN
    title_pos = (top, MARGIN)
    if title:
        top += GLYPH_H * TITLE_SCALE + GAP
    panels, captions = {}, {}
    for row, shape in ((ROW_PIXELS, pixels_shape), (ROW_SOFT, soft_shape)):
        for k, col in enumerate(columns):
            left = MARGIN + k * (col_w + GAP)
            captions[(row, col)] = (top, left)
            panels[(row, col)] = (top + CAPTION, left, int(shape[0]), int(shape[1]))
        top += CAPTION + int(shape[0]) + GAP
    footer_h = footer_lines * (GLYPH_H + 4)
    footer = (top, MARGIN, footer_h, width - 2 * MARGIN)
    height = top + footer_h + (MARGIN - GAP if footer_lines == 0 else MARGIN)
    return Layout(height=height, width=width, rows=(ROW_PIXELS, ROW_SOFT),
                  columns=columns, panels=panels, captions=captions, title=title_pos,
                  footer=footer)


def _channel0(frame):
    a = np.asarray(frame)
    return np.asarray(a[..., 0] if a.ndim == 3 else a, dtype=np.float64)


def _outline(canvas, top, left, h, w, colour):
    H, W = canvas.shape[:2]
    b, r = min(top + h - 1, H - 1), min(left + w - 1, W - 1)
    top, left = max(top, 0), max(left, 0)
    canvas[top, left:r + 1] = colour
    canvas[b, left:r + 1] = colour
    canvas[top:b + 1, left] = colour
    canvas[top:b + 1, r] = colour


def render_frames(kinds, scene=None, *, crop=None, focus=None, zoom=4, panel=192,
                  blur=2.0, captions=None, footer=(), title="", frame_labels=None,
                  palette=None):
    """Draw the animation: returns ``(frames, palette, layout, crop)`` with ``frames``
    a list of uint8 palette-index images.

    ``kinds``: ``{name: frames}``, each a sequence of F noise frames ``(H, W, C)`` (only
    channel 0 is shown); ``scene``: None or a sequence of F images (uint8 or [0, 1]
    float RGB, any size: resized to the frames'); ``crop``: the enlarged window
    ``(top, left)`` in frame pixels (its size follows from ``panel`` and ``zoom``), or
    None to centre it on ``focus`` (``(x, y)``, default the frame's centre);
    ``blur``: the softening's sigma in frame pixels; ``captions``: ``{name: text}``
    added to each column's label (flicker figures); ``footer``: lines of text under
    the panels; ``frame_labels``: the frame numbers to print (default 0, 1, ...).
    """
    names = list(kinds)
    if not names:
        raise ValueError("nothing to show: no noise sequences")
    count = len(kinds[names[0]])
    for n in names:
        if len(kinds[n]) != count:
            raise ValueError(f"{n!r} has {len(kinds[n])} frames, {names[0]!r} has {count}")
    if scene is not None and len(scene) != count:
        raise ValueError(f"the scene has {len(scene)} frames, the noise {count}")
    shape = np.asarray(kinds[names[0]][0]).shape[:2]
    pixels_shape, soft_shape, crop_shape = panel_shapes(shape, panel, zoom)
    if crop is None:
        fx, fy = focus if focus is not None else (shape[1] / 2.0, shape[0] / 2.0)
        crop = (int(round(fy - crop_shape[0] / 2.0)), int(round(fx - crop_shape[1] / 2.0)))
    ct = int(np.clip(crop[0], 0, shape[0] - crop_shape[0]))
    cl = int(np.clip(crop[1], 0, shape[1] - crop_shape[1]))
    crop = (ct, cl)
    columns = (["SCENE"] if scene is not None else []) + [n.upper() for n in names]
    footer = list(footer)
    text_w = max([text_size(f, 1)[1] for f in footer] + [0]) + 2 * MARGIN
    layout = make_layout(columns, pixels_shape, soft_shape, footer_lines=len(footer),
                         title=True, min_width=text_w)
    (y0, x0), (ch, cw) = crop, crop_shape
    sh, sw = soft_shape

    def scene_parts(t):
        """The scene's enlarged window and whole-frame panel of frame t (RGB)."""
        img = to_rgb8(scene[t])
        if img.shape[:2] != tuple(shape):
            img = to_rgb8(resize_bilinear(img / 255.0, shape))
        window = img[y0:y0 + ch, x0:x0 + cw].repeat(zoom, axis=0).repeat(zoom, axis=1)
        whole = (resize_nearest(img, (sh, sw)) if sh >= shape[0] else
                 to_rgb8(resize_bilinear(img / 255.0, (sh, sw))))
        return window, whole

    if palette is None:
        if scene is not None:   # colours from up to 12 frames spread over the sequence
            picks = np.unique(np.linspace(0, count - 1, min(count, 12)).astype(int))
            palette = Palette.for_scenes([p for t in picks for p in scene_parts(int(t))])
        else:
            palette = Palette()
    bg = palette.index["panel"]
    white = palette.grey(1.0)
    dim = palette.index["dim"]
    yellow = palette.index["yellow"]
    captions = {k.upper(): v for k, v in (captions or {}).items()}
    labels = list(frame_labels) if frame_labels is not None else list(range(count))

    base = np.full((layout.height, layout.width), bg, dtype=np.uint8)
    for (row, col), (top, left) in layout.captions.items():
        text = col if row == ROW_PIXELS else f"{col} SOFTENED"
        if row == ROW_PIXELS and col == "SCENE":
            text = f"SCENE X{zoom}"
        elif row == ROW_PIXELS:
            text = f"{col} X{zoom}"
            if col in captions:
                text += f"  {captions[col]}"
        elif col == "SCENE":
            text = "SCENE, WHOLE FRAME"
        draw_text(base, text, top, left, white if row == ROW_PIXELS else dim)
    for i, line in enumerate(footer):
        draw_text(base, line, layout.footer[0] + i * (GLYPH_H + 4), layout.footer[1],
                  white if i == 0 else dim)

    frames = []
    soft_note = f"SIGMA {blur:g} PX" if blur > 0 else ""
    for t in range(count):
        canvas = base.copy()
        head = f"{title}  FRAME {labels[t]}" if title else f"FRAME {labels[t]}"
        if soft_note:
            head += f"   (SOFTENED: GAUSSIAN {soft_note})"
        draw_text(canvas, head, layout.title[0], layout.title[1], white, TITLE_SCALE
                  if text_size(head, TITLE_SCALE)[1] <= layout.width - 2 * MARGIN else 1)
        for col in columns:
            pt, pl, ph, pw = layout.panels[(ROW_PIXELS, col)]
            st, sl, sh, sw = layout.panels[(ROW_SOFT, col)]
            if col == "SCENE":
                window, whole = scene_parts(t)
                canvas[pt:pt + ph, pl:pl + pw] = palette.rgb(window)
                canvas[st:st + sh, sl:sl + sw] = palette.rgb(whole)
            else:
                c0 = _channel0(kinds[names[columns.index(col) - (scene is not None)]][t])
                window = c0[y0:y0 + ch, x0:x0 + cw]
                canvas[pt:pt + ph, pl:pl + pw] = palette.grey(noise_grey(
                    window.repeat(zoom, axis=0).repeat(zoom, axis=1)))
                soft = softened(c0, blur) if blur > 0 else c0
                soft = (resize_nearest(soft, (sh, sw)) if sh >= shape[0] else
                        resize_bilinear(soft, (sh, sw)))
                canvas[st:st + sh, sl:sl + sw] = palette.grey(noise_grey(soft, 2.5))
            # where the enlarged window is, on the whole-frame panels
            fy, fx = sh / shape[0], sw / shape[1]
            _outline(canvas, st + int(round(y0 * fy)) - 1, sl + int(round(x0 * fx)) - 1,
                     int(round(ch * fy)) + 2, int(round(cw * fx)) + 2, yellow)
        frames.append(canvas)
    return frames, palette, layout, crop


def write_gif(path, frames, palette, *, delay_ms=100):
    """Write palette frames (``render_frames``) as an animated GIF, atomically."""
    from ._files import atomic_write_bytes
    data = encode_gif(frames, palette.colours if isinstance(palette, Palette) else palette,
                      delay_ms=delay_ms)
    return atomic_write_bytes(path, data)
