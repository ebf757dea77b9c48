"""Cameras for the surface and geometry sources: the camera JSON file, projection to
our pixel convention, and rays through image points. No Blender import.

Internally a camera is a 4x4 *world -> clip* matrix ``M`` in the OpenGL convention
(what Blender's ``calc_matrix_camera(...) @ matrix_world.inverted()`` gives,
BLENDER_FACTS 7): for a world point p, ``h = M @ [p, 1]``, ``ndc = h.xyz / h.w``;
the image spans ``ndc.x, ndc.y in [-1, 1]`` with x right and **y up**, ``ndc.z`` goes
from -1 (near plane) to 1 (far plane), and ``h.w > 0`` in front of a perspective
camera (``h.w`` is the view depth; 1 for an orthographic camera).

Our pixel convention (docs/DESIGN.md 3: x right, y down, origin at the top-left corner):

    x = (ndc.x + 1) / 2 * W          y = (1 - ndc.y) / 2 * H

This y flip is the only convention change, and it is made here.

Camera JSON (``load_cameras``; ``python -m cupy_core surface --camera FILE``)::

    {"width": 64, "height": 48,
     "camera": CAMERA}                    one camera for every frame, or
     "frames": [CAMERA, CAMERA, ...]}     one per mesh frame, in order

where CAMERA is either

* ``{"world_to_clip": [[...4...], x4]}``: the matrix M above (perspective or
  orthographic; from Blender: ``cam.calc_matrix_camera(depsgraph, x=W, y=H,
  scale_x=..., scale_y=...) @ cam.matrix_world.inverted()``), or
* ``{"camera_to_world": [[...4...], x4], "fx": .., "fy": .., "cx": .., "cy": ..,
  "convention": "opengl" | "opencv", "near": 0.01, "far": 1000.0}``: a pinhole camera
  with intrinsics in pixels (``cx, cy`` from the top-left corner of the image, y down,
  as OpenCV); the pose is camera-to-world, with the camera looking along -Z, +Y up
  (``"opengl"``, the default, as Blender and glTF) or along +Z, +Y down
  (``"opencv"``). ``near``/``far`` are optional.

Matrices are row-major lists of rows (``M[row][col]``), translation in the last column.
"""
import json

import numpy as np

__all__ = ["Camera", "load_cameras", "cameras_to_json", "project", "rays",
           "background_positions"]


class Camera:
    """A camera for a ``width`` x ``height`` image: ``world_to_clip`` (4x4)."""

    def __init__(self, world_to_clip, width, height):
        m = np.asarray(world_to_clip, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"world_to_clip must be a finite 4x4 matrix, got shape {m.shape}")
        self.matrix = m
        self.width = int(width)
        self.height = int(height)
        if self.width < 1 or self.height < 1:
            raise ValueError(f"camera image size must be positive, got {width}x{height}")

    @property
    def shape(self):
        return (self.height, self.width)

    @property
    def orthographic(self):
        return np.allclose(self.matrix[3, :3], 0.0)

    @classmethod
    def from_intrinsics(cls, camera_to_world, fx, fy, cx, cy, width, height,
                        convention="opengl", near=0.01, far=1000.0):
        pose = np.asarray(camera_to_world, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"camera_to_world must be 4x4, got shape {pose.shape}")
        view = np.linalg.inv(pose)
        if convention == "opencv":
            view = np.diag([1.0, -1.0, -1.0, 1.0]) @ view
        elif convention != "opengl":
            raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
        if not (fx > 0 and fy > 0 and 0 < near < far):
            raise ValueError("need fx, fy > 0 and 0 < near < far")
        w, h = float(width), float(height)
        proj = np.array([
            [2 * fx / w, 0.0, 1.0 - 2 * cx / w, 0.0],
            [0.0, 2 * fy / h, 2 * cy / h - 1.0, 0.0],
            [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, -1.0, 0.0]])
        return cls(proj @ view, width, height)

    def to_json(self):
        return {"world_to_clip": self.matrix.tolist()}


def _camera_from(d, width, height):
    if not isinstance(d, dict):
        raise ValueError(f"a camera must be a JSON object, got {type(d).__name__}")
    if "world_to_clip" in d:
        return Camera(d["world_to_clip"], width, height)
    if "camera_to_world" in d:
        try:
            return Camera.from_intrinsics(
                d["camera_to_world"], float(d["fx"]), float(d["fy"]), float(d["cx"]),
                float(d["cy"]), width, height, d.get("convention", "opengl"),
                float(d.get("near", 0.01)), float(d.get("far", 1000.0)))
        except KeyError as exc:
            raise ValueError(f"camera with camera_to_world needs {exc.args[0]!r}") from None
    raise ValueError("a camera needs 'world_to_clip' or 'camera_to_world' with fx, fy, cx, cy")


def load_cameras(source, count=None):
    """Cameras from a camera JSON file (path) or an already-parsed dict: a list of
    ``count`` cameras (a static ``"camera"`` is repeated)."""
    if isinstance(source, dict):
        d = source
    else:
        try:
            with open(source, encoding="utf-8") as f:
                d = json.load(f)
        except OSError as exc:
            raise ValueError(f"cannot read camera file {str(source)!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise ValueError(f"camera file {str(source)!r} is not JSON: {exc}") from None
    if not isinstance(d, dict) or "width" not in d or "height" not in d:
        raise ValueError("camera JSON needs 'width' and 'height'")
    width, height = int(d["width"]), int(d["height"])
    if "frames" in d:
        cams = [_camera_from(c, width, height) for c in d["frames"]]
        if count is not None and len(cams) != count:
            raise ValueError(f"camera JSON has {len(cams)} frames, the mesh sequence {count}")
        return cams
    if "camera" in d:
        cam = _camera_from(d["camera"], width, height)
        return [cam] * (1 if count is None else count)
    raise ValueError("camera JSON needs 'camera' (static) or 'frames' (one per frame)")


def cameras_to_json(cameras):
    """The camera JSON of a list of cameras (the ``"frames"`` form)."""
    return {"width": cameras[0].width, "height": cameras[0].height,
            "frames": [c.to_json() for c in cameras]}


def project(camera, points):
    """World points ``(N, 3)`` -> ``(xy (N, 2) in our pixels, w (N,), ndc_z (N,))``.
    ``w <= 0``: behind a perspective camera (xy is then meaningless)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    h = p @ camera.matrix[:, :3].T + camera.matrix[:, 3]
    w = h[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc = h[:, :3] / w[:, None]
    x = (ndc[:, 0] + 1.0) * 0.5 * camera.width
    y = (1.0 - ndc[:, 1]) * 0.5 * camera.height
    return np.stack([x, y], axis=-1), w, ndc[:, 2]


def rays(camera, xy):
    """Rays through image points ``xy (N, 2)`` (our pixels): ``(origins, directions)``
    in world space, origins on the near plane, unit directions."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    nx = 2.0 * xy[:, 0] / camera.width - 1.0
    ny = 1.0 - 2.0 * xy[:, 1] / camera.height
    inv = np.linalg.inv(camera.matrix)

    def unproject(z):
        q = np.stack([nx, ny, np.full_like(nx, z), np.ones_like(nx)], axis=-1) @ inv.T
        return q[:, :3] / q[:, 3:4]

    # The direction from the near plane to ndc z = 0 (between the planes): finite
    # also for a projection with its far plane at infinity (where z = 1 is w = 0).
    near, mid = unproject(-1.0), unproject(0.0)
    d = mid - near
    return near, d / np.linalg.norm(d, axis=-1, keepdims=True)


def background_positions(cam_now, cam_prev, xy):
    """Backward positions of a background at infinity (it follows the camera's
    rotation only): image points ``xy`` of ``cam_now`` -> where the same view
    direction was in ``cam_prev``'s image. Orthographic cameras: unchanged. NaN where
    the direction is behind the old camera."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if cam_now.orthographic or cam_prev.orthographic:
        return xy.copy()
    origin, d = rays(cam_now, xy)
    h = d @ cam_prev.matrix[:, :3].T            # a direction: w component 0
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (h[:, 0] / h[:, 3] + 1.0) * 0.5 * cam_prev.width
        y = (1.0 - h[:, 1] / h[:, 3]) * 0.5 * cam_prev.height
    out = np.stack([x, y], axis=-1)
    out[~(h[:, 3] > 0)] = np.nan
    return out
