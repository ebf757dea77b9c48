"""How much a noise sequence flickers: the warping error of video consistency.

For each frame t >= 1, frame t - 1 is moved by the scene's own motion (backward warp:
each pixel of frame t reads frame t - 1 at its backward position, nearest sample by
default) and compared with frame t; the flicker is the mean squared difference over the
pixels visible in both (position finite, i.e. not disoccluded, and inside frame t - 1),
all channels, pooled over the frames:

    flicker = sum_t sum_valid (x_t - warp(x_{t-1}))^2 / number of valid values.

For unit-variance noise it reads: 0 when the noise moves exactly with the scene; 2 when
frame t has nothing to do with the moved frame t - 1 (E[(a - b)^2] = 2 for independent
N(0, 1) a, b): fresh noise everywhere, and fixed noise wherever the content moves by a
pixel or more. Nearest sampling keeps the moved frame's variance at 1, so "unrelated"
scores 2 whatever the sub-pixel part of the motion; bilinear sampling (``mode=
"bilinear"``) smooths the moved frame, and unrelated noise then scores between 1 and 2.

Backward positions follow docs/DESIGN.md 3: ``positions[t]`` is ``(H, W, 2)``, for each pixel
centre of frame t + 1 the point ``(x, y)`` it came from in frame t (pixel (i, j) is the
square x in [j, j + 1], y in [i, i + 1]); NaN = no source (disoccluded).
"""
import dataclasses

import numpy as np

__all__ = ["backward_sample", "warping_error", "flicker_table", "FlickerStat",
           "format_flicker", "expected_tolerance"]


def backward_sample(previous, positions, mode="nearest"):
    """``(moved, valid)``: ``previous`` (``(Hs, Ws)`` or ``(Hs, Ws, C)``) read at
    ``positions`` (``(H, W, 2)``, x then y, in ``previous``'s pixel units) and the
    ``(H, W)`` mask of pixels whose sample is defined (finite position, inside the
    frame; bilinear: within the outermost pixel centres). ``moved`` is 0 where not
    valid."""
    prev = np.asarray(previous)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 2:
        raise ValueError(f"positions must be (H, W, 2), got shape {pos.shape}")
    hs, ws = prev.shape[:2]
    x, y = pos[..., 0], pos[..., 1]
    finite = np.isfinite(x) & np.isfinite(y)
    x = np.where(finite, x, -1.0)
    y = np.where(finite, y, -1.0)
    if mode == "nearest":
        j = np.floor(x)
        i = np.floor(y)
        valid = finite & (j >= 0) & (j < ws) & (i >= 0) & (i < hs)
        ii = np.where(valid, i, 0).astype(np.intp)
        jj = np.where(valid, j, 0).astype(np.intp)
        moved = prev[ii, jj]
    elif mode == "bilinear":
        u, v = x - 0.5, y - 0.5           # centre coordinates
        valid = finite & (u >= 0) & (u <= ws - 1) & (v >= 0) & (v <= hs - 1)
        j0, i0 = np.floor(u), np.floor(v)
        fu, fv = u - j0, v - i0
        i0 = np.where(valid, i0, 0).astype(np.intp)
        j0 = np.where(valid, j0, 0).astype(np.intp)
        i1, j1 = np.minimum(i0 + 1, hs - 1), np.minimum(j0 + 1, ws - 1)
        if prev.ndim == 3:
            fu, fv = fu[..., None], fv[..., None]
        p = prev.astype(np.float64)
        moved = ((1 - fv) * ((1 - fu) * p[i0, j0] + fu * p[i0, j1])
                 + fv * ((1 - fu) * p[i1, j0] + fu * p[i1, j1]))
    else:
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    moved = np.where(valid[..., None] if prev.ndim == 3 else valid, moved, 0)
    return moved, valid


@dataclasses.dataclass
class FlickerStat:
    """The pooled warping error of one region: ``value`` (NaN when no pixel counted),
    ``count`` (values counted: pixels x channels x transitions), ``per_frame`` (one
    value per transition, NaN where the region had no valid pixel)."""
    value: float
    count: int
    per_frame: list

    def __float__(self):
        return float(self.value)


def _region_mask(regions, name, t, shape):
    spec = regions[name]
    if spec is None:
        return np.ones(shape, dtype=bool)
    mask = spec(t) if callable(spec) else spec[t]
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"region {name!r} of frame {t} is {mask.shape}, the frames "
                         f"are {shape}")
    return mask


def warping_error(frames, positions, regions=None, *, mode="nearest"):
    """The flicker of one noise sequence: ``{region: FlickerStat}``.

    ``frames``: a sequence of F ``(H, W, C)`` (or ``(H, W)``) arrays (a lazy sequence
    or memory maps are fine: two frames are held at a time); ``positions``: F - 1
    backward maps, ``positions[t]`` taking frame t + 1 to frame t (see the module doc);
    ``regions``: ``{name: masks}`` where masks is None (every pixel), a sequence of F
    ``(H, W)`` boolean masks of frame t's pixels (item 0 unused), or a callable
    ``t -> mask``; default ``{"all": None}``.
    """
    regions = {"all": None} if regions is None else dict(regions)
    n = len(frames)
    if len(positions) < n - 1:
        raise ValueError(f"{n} frames need {n - 1} backward maps, got {len(positions)}")
    sums = {k: 0.0 for k in regions}
    counts = {k: 0 for k in regions}
    per = {k: [] for k in regions}
    previous = np.asarray(frames[0], dtype=np.float64)
    for t in range(1, n):
        current = np.asarray(frames[t], dtype=np.float64)
        moved, valid = backward_sample(previous, positions[t - 1], mode)
        sq = (current - moved) ** 2
        if sq.ndim == 3:
            channels = sq.shape[2]
            sq = sq.sum(axis=2)
        else:
            channels = 1
        for k in regions:
            m = valid & _region_mask(regions, k, t, valid.shape)
            c = int(m.sum()) * channels
            s = float(sq[m].sum())
            sums[k] += s
            counts[k] += c
            per[k].append(s / c if c else float("nan"))
        previous = current
    return {k: FlickerStat(sums[k] / counts[k] if counts[k] else float("nan"), counts[k],
                           per[k]) for k in regions}


def flicker_table(kinds, positions, regions=None, *, mode="nearest"):
    """``{kind: {region: FlickerStat}}`` for several noise sequences of the same scene
    (``kinds``: ``{"warped": frames, "fixed": frames, ...}``)."""
    return {kind: warping_error(frames, positions, regions, mode=mode)
            for kind, frames in kinds.items()}


def expected_tolerance(count, sigmas=5.0):
    """How far from 2 the flicker of unrelated noise may fall by chance with ``count``
    values: ``sigmas`` standard errors. A squared difference of two independent
    N(0, 1) has variance 8; neighbouring differences along a motion share one frame's
    value (covariance 2 with each of two neighbours), so the variance of the mean is at
    most 12 / count."""
    return sigmas * np.sqrt(12.0 / max(int(count), 1))


def format_flicker(table, *, regions=None, digits=2):
    """Text lines for a flicker table: one line per region, the kinds side by side."""
    kinds = list(table)
    if not kinds:
        return []
    names = regions or list(next(iter(table.values())))
    lines = []
    for r in names:
        parts = []
        for k in kinds:
            stat = table[k].get(r)
            value = "N/A" if stat is None or not np.isfinite(stat.value) else \
                f"{stat.value:.{digits}f}"
            parts.append(f"{k} {value}")
        lines.append(f"{r}: " + "  ".join(parts))
    return lines
