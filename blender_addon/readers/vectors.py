"""Blender's conventions -> DESIGN.md 3, in one place: the Vector and Depth passes of a
render become backward positions (pixel centres, x right, y down, origin top-left).

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
  projected through the camera of frame f-1 (``camera_matrices``). A camera that only
  translates leaves it in place; a pan moves it like the distant scenery. With an
  orthographic camera, directions do not move across the image: the background stays.
* ``"vectors"``: use the pass as is (background noise stays on the screen).
* ``"fresh"``: background gets fresh noise every frame.

This module imports no Blender module at load time; ``camera_matrices`` takes Blender
objects and is the only function that touches them.
"""
import os
import sys

import numpy as np

from ..errors import BakeError

BACKGROUND_RULES = ("camera", "vectors", "fresh")
NO_HIT_DEPTH = 1e9       # Cycles writes 1e10 where no geometry was hit
TOL_PX = 0.5             # forward/backward consistency tolerance, pixels
TOL_REL = 0.05           # ... plus this share of the motion
SNAP = 1024.0            # vectors are rounded to 1/SNAP px


class PassError(BakeError):
    """A render or an EXR lacks a pass the bake needs; the message names it."""


# --------------------------------------------------------------------------- EXR files

def _oiio():
    """OpenImageIO's Python module: the bpy 4.5/5.0 wheels and Blender ship one."""
    try:
        import OpenImageIO
        return OpenImageIO
    except ImportError:
        pass
    try:
        import bpy
        local = bpy.utils.resource_path("LOCAL")
        for sub in ("python/lib/python3.11/site-packages",
                    f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"):
            path = os.path.join(local, sub)
            if os.path.isdir(path) and path not in sys.path:
                sys.path.append(path)
        import OpenImageIO
        return OpenImageIO
    except Exception:
        return None


def read_exr_channels(path):
    """All channels of an EXR file, every part, as ``{name: float32 (H, W)}``, rows
    top first (as stored). Uses the OpenEXR module, else OpenImageIO."""
    path = str(path)
    if not os.path.isfile(path):
        raise PassError(f"EXR file {path!r} not found")
    try:
        import OpenEXR
    except ImportError:
        OpenEXR = None
    if OpenEXR is not None:
        try:
            with OpenEXR.File(path, separate_channels=True) as f:
                return {k: np.array(v.pixels, dtype=np.float32)
                        for part in f.parts for k, v in part.channels.items()}
        except Exception as exc:
            raise PassError(f"cannot read EXR file {path!r}: {exc}") from None
    oiio = _oiio()
    if oiio is None:
        raise PassError("reading EXR files needs the OpenEXR Python module "
                        "(pip install OpenEXR) or OpenImageIO")
    channels = {}
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise PassError(f"cannot read EXR file {path!r}: {oiio.geterror()}")
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            data = inp.read_image(0, spec.nchannels, "float")
            for c, name in enumerate(spec.channelnames):
                channels[name] = np.array(data[:, :, c], dtype=np.float32)
            sub += 1
    finally:
        inp.close()
    return channels


def find_pass(channels, pass_name, components, path="render"):
    """``(H, W, len(components))`` from channels named ``[<layer>.]<pass>.<c>``.

    The first view layer that has the pass wins. Raises ``PassError`` naming the pass
    and what the file has instead."""
    for name in sorted(channels):
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] == pass_name and parts[-1] == components[0]:
            prefix = name[: -len(components[0])]
            try:
                return np.stack([channels[prefix + c] for c in components], axis=-1)
            except KeyError:
                break
    passes = sorted({".".join(n.split(".")[:-1]) for n in channels})
    raise PassError(f"{path} has no {pass_name} pass (channels {pass_name}."
                    f"{'/'.join(components)}); it has: {', '.join(passes) or 'nothing'}. "
                    f"Render it with the {pass_name} pass on (View Layer properties)")


def read_vector_exr(path):
    """``(vector (H, W, 4), depth (H, W) or None)`` from a multilayer EXR."""
    ch = read_exr_channels(path)
    vector = find_pass(ch, "Vector", ("X", "Y", "Z", "W"), repr(str(path)))
    try:
        depth = find_pass(ch, "Depth", ("Z",), repr(str(path)))[..., 0]
    except PassError:
        depth = None
    return vector, depth


# --------------------------------------------------------------------------- conventions

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
    from cupy_core.conventions import pixel_centers
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
    """Backward positions of the background at infinity: each pixel's view direction
    at frame f, through frame f-1's camera. ``cam_*`` are 4x4 ``projection @ view``
    matrices (``camera_matrices``). NaN where the direction is behind the old camera."""
    h, w = shape
    c = centers(h, w)
    ndc_x = 2.0 * c[..., 0] / w - 1.0
    ndc_y = 1.0 - 2.0 * c[..., 1] / h          # raster y up, rows top first
    pts = np.stack([ndc_x, ndc_y, np.zeros_like(ndc_x), np.ones_like(ndc_x)], axis=-1)
    inv = np.linalg.inv(np.asarray(cam_now, dtype=np.float64))
    world = pts @ inv.T
    world = world[..., :3] / world[..., 3:4]
    # The eye: where all view rays meet (None for an orthographic camera).
    origin = _eye(np.asarray(cam_now, dtype=np.float64))
    if origin is None:                       # orthographic: directions do not move
        return c.copy()
    d = world - origin
    hp = np.concatenate([d, np.zeros(d.shape[:-1] + (1,))], axis=-1) @ np.asarray(
        cam_prev, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        x = hp[..., 0] / hp[..., 3]
        y = hp[..., 1] / hp[..., 3]
    out = np.stack([(x + 1.0) * 0.5 * w, (1.0 - y) * 0.5 * h], axis=-1)
    out[~(hp[..., 3] > 0)] = np.nan
    return out


def _eye(m):
    """The camera position of a ``projection @ view`` matrix (where w = 0 for every
    ray), or None for an orthographic one (w constant)."""
    wrow = m[3]
    if np.allclose(wrow[:3], 0.0):
        return None
    # Solve the 4x4 system M @ [eye, 1] = (0, 0, *, 0): rows 0, 1 and 3 vanish at the eye.
    a = m[[0, 1, 3], :3]
    b = -m[[0, 1, 3], 3]
    return np.linalg.solve(a, b)


def backward_positions(vector, depth=None, vector_prev=None, depth_prev=None, *,
                       background="camera", cam_now=None, cam_prev=None,
                       disocclusion=True):
    """Backward positions at centres ``(H, W, 2)`` for frame f, NaN = fresh noise.

    ``vector``/``depth``: frame f's passes (rows top first); ``vector_prev``/
    ``depth_prev``: frame f-1's (for disocclusion); ``background``: the rule above;
    ``cam_now``/``cam_prev``: camera matrices for the "camera" rule (without them the
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


def camera_matrices(scene, camera, width, height):
    """``projection @ view`` (4x4 NumPy) of ``camera`` at the scene's current frame,
    for a ``width`` x ``height`` render (Blender objects in, NumPy out)."""
    import bpy

    dg = bpy.context.evaluated_depsgraph_get()
    cam = camera.evaluated_get(dg)
    proj = cam.calc_matrix_camera(dg, x=width, y=height,
                                  scale_x=scene.render.pixel_aspect_x,
                                  scale_y=scene.render.pixel_aspect_y)
    view = cam.matrix_world.inverted()
    return np.array(proj @ view, dtype=np.float64)
