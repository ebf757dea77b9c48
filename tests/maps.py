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


# -- 3-D (voxels): positions (..., 3) with last axis (x, y, z) ---------------------------

def corners3(d, h, w):
    """Corner positions (d+1, h+1, w+1, 3) of the identity map, last axis (x, y, z)."""
    z, y, x = np.mgrid[0:d + 1, 0:h + 1, 0:w + 1].astype(np.float64)
    return np.stack([x, y, z], axis=-1)


def centers3(d, h, w):
    z, y, x = np.mgrid[0:d, 0:h, 0:w].astype(np.float64) + 0.5
    return np.stack([x, y, z], axis=-1)


def rotation3(axis, theta):
    """Rotation matrix about ``axis`` (3-vector) by ``theta`` (Rodrigues)."""
    k = np.asarray(axis, float)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def swirl3(points, d, h, w, strength=0.4, wobble=0.5, phase=0.0):
    """A smooth, injective non-rigid 3-D map: a twist about the z axis through the
    centre that fades with the distance from it, plus a wobble along each axis."""
    cx, cy, cz = w / 2.0, h / 2.0, d / 2.0
    x, y, z = points[..., 0] - cx, points[..., 1] - cy, points[..., 2] - cz
    r2 = (x * x + y * y + z * z) / (0.35 * min(d, h, w)) ** 2
    ang = strength * np.exp(-r2)
    c, s = np.cos(ang), np.sin(ang)
    px = c * x - s * y + cx + wobble * np.sin(2 * np.pi * points[..., 2] / d + phase)
    py = s * x + c * y + cy + wobble * np.sin(2 * np.pi * points[..., 0] / w * 2 + phase)
    pz = z + cz + wobble * np.sin(2 * np.pi * points[..., 1] / h * 2 + phase)
    return np.stack([px, py, pz], axis=-1)


def fold3(points, amplitude=2.0, period=5.0):
    """A non-injective 3-D map: strong coupled shear waves; cells fold over, and many
    have tetrahedra of both orientations."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    k = 2 * np.pi / period
    return np.stack([x + amplitude * np.sin(k * y) * np.cos(k * z),
                     y + amplitude * np.sin(k * z) * np.cos(k * x),
                     z + amplitude * np.sin(k * x) * np.cos(k * y)], axis=-1)


def smooth_flows(t=3, h=16, w=16):
    """Backward flows ``(T, H, W, 2)`` of a gentle, varying translation plus shear
    (never folding): the command-line tests' input."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    flows = np.empty((t, h, w, 2), np.float32)
    for k in range(t):
        flows[k, ..., 0] = 0.7 + 0.2 * k + 0.05 * y
        flows[k, ..., 1] = -0.4 + 0.03 * x
    return flows
