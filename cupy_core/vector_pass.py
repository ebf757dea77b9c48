"""A render's Vector and Depth passes -> backward positions (docs/DESIGN.md 3: pixel
centres, x right, y down, origin top-left), with the disocclusion test and the
background rules. No Blender import: ``blender_addon`` reads the passes (EXR files)
and the cameras, this module decides what they mean.

What Blender writes (BLENDER_FACTS 1, 4, checked on bpy 4.2 and 5.0):

* multilayer EXR rows are stored top row first, so row ``i`` of the array is our row i;
* ``<layer>.Vector.X/Y`` = p(f-1) - p(f) and ``Z/W`` = p(f) - p(f+1), in pixels of the
  render, with raster y pointing *up*;
* ``<layer>.Depth.Z`` is the distance along the view axis; pixels where no geometry
  was hit hold a huge value (1e10) and zero vectors.

Hence, for pixel (i, j) of frame f, with X, Y its Vector values::

    prev_x = j + 0.5 + X          prev_y = i + 0.5 - Y

Vectors are rounded to 1/1024 px (``SNAP``): the float32 pass carries rounding of about
1e-6 px (a static object reads 1e-7, a 3 px motion -3.0000002), and such slivers would
move a pixel's noise by about sqrt(area), 1e-3 or more, instead of keeping it exactly.

Disocclusion (a surface hidden in frame f-1 becomes visible in f) gets NaN positions,
i.e. fresh noise, by two tests on the previous frame's pixel q nearest the backward
position:

* forward/backward consistency: q's forward motion (``-(Z, W)`` of frame f-1, y
  flipped) must bring q back onto p: ``|b(p) + fwd(q)| <= tol_px + tol_rel * |b(p)|``;
* kind: p and q must both be geometry, or both background.

A backward position outside the previous frame is left as is (the core gives the
uncovered border fresh noise).

Background rule (pixels with no geometry; the Vector pass is 0 there, whatever the
camera does), chosen by ``background``:

* ``"camera"`` (default): the background is at infinity (a sky dome). It follows the
  camera's rotation only: each background pixel's view direction at frame f is
  projected through the camera of frame f-1 (``cupy_core.surface.camera.
  background_positions``, the one rule of a background at infinity, shared with the
  mesh sources). A camera that only translates leaves it in place; a pan moves it
  like the distant scenery. With an orthographic camera, directions do not move
  across the image: the background stays.
* ``"vectors"``: use the pass as is (background noise stays on the screen).
* ``"fresh"``: background gets fresh noise every frame.
"""
import numpy as np

from .conventions import pixel_centers
from .surface.camera import Camera, background_positions

__all__ = ["backward_positions", "vector_to_positions", "is_background", "disoccluded",
           "camera_background_positions", "centers", "BACKGROUND_RULES"]

BACKGROUND_RULES = ("camera", "vectors", "fresh")
NO_HIT_DEPTH = 1e9       # Cycles writes 1e10 where no geometry was hit
TOL_PX = 0.5             # forward/backward consistency tolerance, pixels
TOL_REL = 0.05           # ... plus this share of the motion
SNAP = 1024.0            # vectors are rounded to 1/SNAP px


def backward_displacement(vector):
    """Vector pass ``(H, W, >=2)`` (rows top first) -> backward displacement
    ``(dx, dy)`` in our convention: ``(X, -Y)``."""
    v = np.round(np.asarray(vector, dtype=np.float64) * SNAP) / SNAP
    return np.stack([v[..., 0], -v[..., 1]], axis=-1)


def forward_displacement(vector):
    """Vector pass -> forward displacement f -> f+1 in our convention: ``(-Z, +W)``."""
    v = np.round(np.asarray(vector, dtype=np.float64) * SNAP) / SNAP
    return np.stack([-v[..., 2], v[..., 3]], axis=-1)


def centers(h, w):
    """Pixel centres ``(H, W, 2)`` as ``(x, y)``."""
    return pixel_centers((h, w))


def vector_to_positions(vector):
    """Backward positions at pixel centres ``(H, W, 2)`` from a Vector pass."""
    v = np.asarray(vector)
    return centers(*v.shape[:2]) + backward_displacement(v)


def is_background(depth):
    """Pixels where no geometry was hit."""
    d = np.asarray(depth)
    return ~np.isfinite(d) | (d >= NO_HIT_DEPTH)


def disoccluded(positions, vector_prev, background=None, background_prev=None,
                tol_px=TOL_PX, tol_rel=TOL_REL):
    """Pixels of frame f whose surface was hidden in frame f-1 (see the module doc).

    ``positions``: backward positions of frame f; ``vector_prev``: frame f-1's Vector
    pass; ``background``/``background_prev``: no-geometry masks of f and f-1 (optional).
    Positions outside the previous frame are not flagged."""
    h, w = positions.shape[:2]
    hp, wp = vector_prev.shape[:2]
    back = positions - centers(h, w)
    qx = np.floor(positions[..., 0])
    qy = np.floor(positions[..., 1])
    inside = (qx >= 0) & (qx < wp) & (qy >= 0) & (qy < hp) & np.isfinite(qx) & np.isfinite(qy)
    qi = np.where(inside, qy, 0).astype(np.int64)
    qj = np.where(inside, qx, 0).astype(np.int64)
    fwd = forward_displacement(vector_prev)[qi, qj]
    err = np.hypot(*(back + fwd).transpose(2, 0, 1))
    bad = err > tol_px + tol_rel * np.hypot(*back.transpose(2, 0, 1))
    if background is not None and background_prev is not None:
        bad |= np.asarray(background) != np.asarray(background_prev)[qi, qj]
    return bad & inside


def camera_background_positions(shape, cam_now, cam_prev):
    """Backward positions of the background at infinity at the pixel centres of an
    ``(H, W)`` frame: each pixel's view direction at frame f, through frame f-1's
    camera. ``cam_*`` are 4x4 ``projection @ view`` (world -> clip) matrices. NaN where
    the direction is behind the old camera."""
    h, w = shape
    c = centers(h, w)
    pos = background_positions(Camera(cam_now, w, h), Camera(cam_prev, w, h),
                               c.reshape(-1, 2))
    return pos.reshape(h, w, 2)


def backward_positions(vector, depth=None, vector_prev=None, depth_prev=None, *,
                       background="camera", cam_now=None, cam_prev=None,
                       disocclusion=True):
    """Backward positions at centres ``(H, W, 2)`` for frame f, NaN = fresh noise.

    ``vector``/``depth``: frame f's passes (rows top first); ``vector_prev``/
    ``depth_prev``: frame f-1's (for disocclusion); ``background``: the rule above;
    ``cam_now``/``cam_prev``: world -> clip matrices for the "camera" rule (without them the
    background falls back to "vectors")."""
    if background not in BACKGROUND_RULES:
        raise ValueError(f"background must be one of {BACKGROUND_RULES}, got {background!r}")
    vector = np.asarray(vector)
    pos = vector_to_positions(vector)
    bg = is_background(depth) if depth is not None else None
    bg_prev = is_background(depth_prev) if depth_prev is not None else None
    if bg is not None and bg.any():
        if background == "fresh":
            pos[bg] = np.nan
        elif background == "camera" and cam_now is not None and cam_prev is not None:
            pos[bg] = camera_background_positions(vector.shape[:2], cam_now, cam_prev)[bg]
    if disocclusion and vector_prev is not None:
        check = disoccluded(pos, np.asarray(vector_prev), bg, bg_prev)
        if bg is not None and background != "vectors":
            # The background's motion is not in the pass: judge it by kind only.
            kind_only = disoccluded(pos, np.zeros_like(vector_prev), bg, bg_prev,
                                    tol_px=np.inf)
            check = np.where(bg, kind_only, check)
        pos[check] = np.nan
    return pos
