"""Backward maps used across the tests, written independently of cupy_core."""
import numpy as np


def corners(h, w):
    """Corner positions (h+1, w+1, 2) of the identity map, last axis (x, y)."""
    y, x = np.mgrid[0:h + 1, 0:w + 1].astype(np.float64)
    return np.stack([x, y], axis=-1)


def centers(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    return np.stack([x, y], axis=-1)


def affine(points, matrix, offset, origin):
    """p -> matrix @ (p - origin) + origin + offset, on (..., 2) arrays."""
    m = np.asarray(matrix, float)
    return (points - origin) @ m.T + np.asarray(origin, float) + np.asarray(offset, float)


def rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def swirl(points, h, w, strength=0.4, wobble=0.6, phase=0.0):
    """A smooth, injective non-rigid map: rotation decaying from the centre plus a wobble."""
    cx, cy = w / 2.0, h / 2.0
    x, y = points[..., 0] - cx, points[..., 1] - cy
    r = np.hypot(x, y)
    ang = strength * np.exp(-(r / (0.35 * min(h, w))) ** 2)
    c, s = np.cos(ang), np.sin(ang)
    xs = c * x - s * y + cx + wobble * np.sin(2 * np.pi * points[..., 1] / h * 2 + phase)
    ys = s * x + c * y + cy + wobble * np.sin(2 * np.pi * points[..., 0] / w * 3 + phase)
    return np.stack([xs, ys], axis=-1)


def fold(points, w, amplitude=3.0, period=6.0):
    """A non-injective map: a strong shear wave whose pixel quads fold over."""
    x = points[..., 0] + amplitude * np.sin(2 * np.pi * points[..., 1] / period)
    y = points[..., 1] + amplitude * np.sin(2 * np.pi * points[..., 0] / period)
    return np.stack([x, y], axis=-1)
