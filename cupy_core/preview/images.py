"""Small image helpers for the preview pictures: blur, resizing, grey mapping, the
palette and colour quantisation of the animated GIF (NumPy only)."""
import numpy as np

__all__ = ["gaussian_blur", "softened", "noise_grey", "resize_nearest", "resize_bilinear",
           "to_rgb8", "Palette"]


def _kernel(sigma):
    r = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def gaussian_blur(image, sigma):
    """Separable Gaussian blur of a 2-D array (reflecting borders)."""
    img = np.asarray(image, dtype=np.float64)
    if sigma <= 0:
        return img.copy()
    g = _kernel(sigma)
    r = len(g) // 2
    out = img
    for axis in (0, 1):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (min(r, n - 1), min(r, n - 1))
        p = np.pad(out, pad, mode="reflect") if n > 1 else out
        acc = np.zeros_like(out)
        off = pad[axis][0]
        for k, w in enumerate(g):
            s = off + k - r
            if s < 0 or s + n > p.shape[axis]:
                # very small images: clamp the tap
                idx = np.clip(np.arange(n) + s, 0, p.shape[axis] - 1)
                acc += w * np.take(p, idx, axis=axis)
            else:
                acc += w * (p[s:s + n] if axis == 0 else p[:, s:s + n])
        out = acc
    return out


def softened(channel, sigma):
    """``channel`` (one noise channel, ``(H, W)``) blurred by a Gaussian of ``sigma``
    pixels and rescaled so that white N(0, 1) noise stays at unit variance: its blobs
    are what travels when the noise moves."""
    g = _kernel(sigma)
    return gaussian_blur(channel, sigma) / np.sqrt(np.sum(g ** 2) ** 2)


def noise_grey(values, spread=3.0):
    """Noise values (nominally N(0, 1)) to grey levels in [0, 1]: +-``spread`` standard
    deviations span black to white; NaN is mid-grey."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return np.clip(0.5 + v / (2.0 * spread), 0.0, 1.0)


def resize_nearest(image, shape):
    """Nearest-neighbour resize of ``(H, W[, C])`` to ``shape`` (pixel centres)."""
    h, w = image.shape[:2]
    H, W = shape
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.intp), w - 1)
    return image[rows][:, cols]


def resize_bilinear(image, shape):
    """Bilinear resize of ``(H, W[, C])`` (float) to ``shape``, by pixel centres; when
    shrinking by more than 2 the image is box-filtered first so nothing aliases."""
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape[:2]
    H, W = shape
    f = int(min(h // max(H, 1), w // max(W, 1)))
    if f >= 2:
        hh, ww = (h // f) * f, (w // f) * f
        img = img[:hh, :ww].reshape((hh // f, f, ww // f, f) + img.shape[2:]).mean(axis=(1, 3))
        h, w = img.shape[:2]
    y = np.clip((np.arange(H) + 0.5) * h / H - 0.5, 0, h - 1)
    x = np.clip((np.arange(W) + 0.5) * w / W - 0.5, 0, w - 1)
    y0 = np.floor(y).astype(np.intp)
    x0 = np.floor(x).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = y - y0, x - x0
    if img.ndim == 3:
        fy, fx = fy[:, None, None], fx[None, :, None]
    else:
        fy, fx = fy[:, None], fx[None, :]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def to_rgb8(image):
    """An image as uint8 ``(H, W, 3)``: uint8 as is, floats taken as [0, 1] sRGB,
    grey ``(H, W)`` repeated, alpha dropped."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    if img.shape[2] in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    img = img[:, :, :3]
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    f = np.nan_to_num(img.astype(np.float64), nan=0.0)
    return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)


def _median_cut(pixels, n):
    """Up to ``n`` representative colours of ``pixels`` (``(N, 3)`` uint8) by median cut."""
    def spread(b):
        return int((b.max(axis=0) - b.min(axis=0)).max()) if len(b) > 1 else -1

    boxes = [pixels.astype(np.int32)]
    ranges = [spread(boxes[0])]
    while len(boxes) < n:
        k = int(np.argmax(ranges))
        if ranges[k] <= 0:
            break
        b = boxes.pop(k)
        ranges.pop(k)
        ch = int(np.argmax(b.max(axis=0) - b.min(axis=0)))
        b = b[np.argsort(b[:, ch], kind="stable")]
        half = len(b) // 2
        boxes += [b[:half], b[half:]]
        ranges += [spread(b[:half]), spread(b[half:])]
    return np.array([np.rint(b.mean(axis=0)) for b in boxes if len(b)], dtype=np.uint8)


class Palette:
    """The GIF's palette (at most 255 colours, index 255 is the GIF's transparent):
    ``greys`` levels of grey from black to white (indices 0 .. greys - 1, for noise and
    text), a few named accent colours, and colours chosen by median cut from the scene
    images (``fit``) for the rest."""

    ACCENTS = {"yellow": (255, 205, 40), "red": (235, 70, 55), "green": (90, 210, 110),
               "blue": (90, 160, 255), "panel": (24, 24, 28), "dim": (120, 120, 130)}

    def __init__(self, greys=96, scene_colours=None, size=255):
        self.greys = int(greys)
        g = np.rint(np.linspace(0, 255, self.greys)).astype(np.uint8)
        colours = [np.stack([g, g, g], axis=1)]
        self.index = {}
        for k, (name, rgb) in enumerate(self.ACCENTS.items()):
            self.index[name] = self.greys + k
        colours.append(np.array(list(self.ACCENTS.values()), dtype=np.uint8))
        self.scene_start = self.greys + len(self.ACCENTS)
        room = size - self.scene_start
        if scene_colours is not None and len(scene_colours):
            colours.append(np.asarray(scene_colours, dtype=np.uint8)[:room])
        self.colours = np.concatenate(colours, axis=0)
        self._lut = None

    @classmethod
    def for_scenes(cls, images, greys=96, size=255, sample=200000):
        """A palette whose scene colours fit ``images`` (uint8 ``(H, W, 3)`` each)."""
        images = [np.asarray(i).reshape(-1, 3) for i in images]
        if not images:
            return cls(greys, None, size)
        pixels = np.concatenate(images, axis=0)
        if len(pixels) > sample:
            step = len(pixels) / sample
            pixels = pixels[(np.arange(sample) * step).astype(np.intp)]
        room = size - greys - len(cls.ACCENTS)
        return cls(greys, _median_cut(pixels, room), size)

    def grey(self, level):
        """Palette indices of grey levels in [0, 1]."""
        return np.rint(np.clip(level, 0.0, 1.0) * (self.greys - 1)).astype(np.uint8)

    def rgb(self, image):
        """Palette indices of a uint8 RGB image: the nearest colour (greys included)
        of each colour rounded to 5 bits per channel."""
        if self._lut is None:
            q = np.arange(32, dtype=np.float64) * (255.0 / 31.0)
            cube = np.stack(np.meshgrid(q, q, q, indexing="ij"), axis=-1).reshape(-1, 3)
            cand = self.colours.astype(np.float64)
            cand_idx = np.arange(len(cand))
            keep = np.ones(len(cand), dtype=bool)
            for name in self.index:   # accents are for marks, not for the scene
                keep[self.index[name]] = False
            cand, cand_idx = cand[keep], cand_idx[keep]
            lut = np.empty(len(cube), dtype=np.uint8)
            for s in range(0, len(cube), 4096):
                d = ((cube[s:s + 4096, None, :] - cand[None]) ** 2).sum(axis=2)
                lut[s:s + 4096] = cand_idx[np.argmin(d, axis=1)]
            self._lut = lut
        img = to_rgb8(image).astype(np.int32)
        q = (img * 31 + 127) // 255
        return self._lut[(q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]]
