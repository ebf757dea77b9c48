"""Screen <-> surface maps from triangle meshes and cameras, and the surface noise of
one frame. No Blender import: the add-on (``blender_addon/readers``) and the trimesh
command line both feed ``Mesh`` and ``Camera`` objects in.

* ``uv_positions``: for each pixel corner, the texture position of the surface seen
  there (the screen-to-texture backward map, docs/DESIGN.md 2 with the texture as the
  source grid and the screen as the target grid), and which pixels are wholly on one
  surface.
* ``geometry_positions``: for each pixel corner, where the surface point seen there
  was in the previous frame's image (the screen-space backward map), NaN where it was
  hidden then.
* ``surface_noise``: one frame of surface noise, ``warp(texture, uv corners)`` from the
  fixed texture noise, with the rule for pixels not wholly on a surface.

Rule for pixels not wholly on one surface (a corner on the background, on another
object, or across a UV seam: silhouette and seam pixels): they get fresh N(0, 1) noise
every frame (``background="fresh"``, the default) or noise that stays on the screen
(``"static"``). Their texture areas are not used, so they never take noise from the
surfaces' pixels; every frame stays i.i.d. N(0, 1).

The texture warp of every frame uses the same random-number key (``SURFACE_KEY``)
rather than the frame number, so the same view gives bit for bit the same noise, and
sub-texel pieces that stay in the same (texel, pixel) pairing keep their draws.
"""
import dataclasses

import numpy as np

from ..methods import rng
from ..conventions import array_module
from ..warp import warp_masked
from .camera import background_positions, project
from .raster import corner_points, interpolate, rasterize
from .uvmap import uv_islands, uv_to_texture

__all__ = ["Mesh", "uv_positions", "geometry_positions", "geometry_from_hits", "surface_noise",
           "texture_noise", "screen_noise", "surface_uv", "SURFACE_KEY",
           "BACKGROUND_RULES", "GEOMETRY_BACKGROUND_RULES"]

SURFACE_KEY = 0                       # the frame word of every texture -> screen warp
BACKGROUND_RULES = ("fresh", "static")
GEOMETRY_BACKGROUND_RULES = ("camera", "fresh", "screen")
_SCREEN_WORD = 0xFFFFFFFE             # counter word of the off-surface noise


@dataclasses.dataclass
class Mesh:
    """Triangles in world space at one frame: ``vertices (V, 3)``, ``faces (T, 3)``,
    per-corner ``uv (T, 3, 2)`` (or None), ``tile (T,)`` the texture tile of each
    triangle (one per mesh object; None = 0). Frames of a sequence share ``faces``."""
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray = None
    tile: np.ndarray = None
    _islands: np.ndarray = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("faces index vertices that do not exist")
        if self.uv is not None:
            self.uv = np.asarray(self.uv, dtype=np.float64).reshape(-1, 3, 2)
            if self.uv.shape[0] != self.faces.shape[0]:
                raise ValueError(f"uv must be (T, 3, 2) per corner, got {self.uv.shape} for "
                                 f"{self.faces.shape[0]} triangles")
        if self.tile is not None:
            self.tile = np.asarray(self.tile, dtype=np.int64).reshape(-1)

    @property
    def tiles(self):
        return 1 if self.tile is None or self.tile.size == 0 else int(self.tile.max()) + 1

    def islands(self):
        if self._islands is None:
            if self.uv is None:
                raise ValueError("the mesh has no UVs")
            lab = uv_islands(self.faces, self.uv, self.vertices)
            if self.tile is not None:   # tiles never share an island
                lab = lab + self.tile * len(self.faces)
            self._islands = lab
        return self._islands


def _raster(mesh, camera, points):
    xy, w, z = project(camera, mesh.vertices)
    return rasterize(xy, w, z, mesh.faces, points)


def uv_positions(mesh, camera, texture_size):
    """``(corners (H+1, W+1, 2), valid (H, W))``: texture positions (tile stack, see
    ``uvmap``) of the surface seen at each pixel corner (NaN: no surface), and the
    pixels whose four corners lie on one UV island of one mesh."""
    if mesh.uv is None:
        raise ValueError("the surface source needs meshes with UVs")
    h, w = camera.shape
    pts = corner_points((h, w)).reshape(-1, 2)
    face, bary, _ = _raster(mesh, camera, pts)
    return uv_from_hits(mesh, face, bary, (h, w), texture_size)


def uv_from_hits(mesh, face, bary, shape, texture_size):
    """``uv_positions`` from per-corner hits (``face`` -1 for none, barycentrics on the
    triangle): shared by the rasteriser and the ray-casting (trimesh) route."""
    h, w = shape
    hit = face >= 0
    uv = np.full((face.size, 2), np.nan)
    uv[hit] = np.einsum("nk,nkc->nc", bary[hit], mesh.uv[face[hit]])
    tile = np.zeros(face.size) if mesh.tile is None else np.where(hit, mesh.tile[np.maximum(face, 0)], 0)
    pos = uv_to_texture(uv, texture_size, tile).reshape(h + 1, w + 1, 2)
    isl = np.where(hit, mesh.islands()[np.maximum(face, 0)], -1).reshape(h + 1, w + 1)
    c = [isl[:-1, :-1], isl[:-1, 1:], isl[1:, :-1], isl[1:, 1:]]
    valid = (c[0] >= 0) & (c[0] == c[1]) & (c[0] == c[2]) & (c[0] == c[3])
    fin = np.isfinite(pos).all(axis=-1)          # a mesh without UVs: no texture
    valid &= fin[:-1, :-1] & fin[:-1, 1:] & fin[1:, :-1] & fin[1:, 1:]
    return pos, valid


def _view_depth(camera, points):
    _, w, z = project(camera, points)
    return z if camera.orthographic else w


def geometry_positions(mesh_now, mesh_prev, cam_now, cam_prev, *, background="camera",
                       occlusion=True, points=None):
    """Backward positions at pixel corners ``(H+1, W+1, 2)`` in the previous frame's
    pixels, by the rasteriser: the surface point seen at each corner of frame f
    (barycentric on its triangle), moved to frame f-1 and projected by ``cam_prev``
    (``geometry_from_hits``); hidden at f-1 when the frame f-1 z-buffer, sampled at its
    old image position, holds a nearer surface (``occlusion``). ``points (N, 2)``:
    other image points than the corners (then ``(N, 2)`` is returned)."""
    if mesh_now.faces.shape != mesh_prev.faces.shape or len(mesh_now.vertices) != len(mesh_prev.vertices):
        raise ValueError("frames f and f-1 must have the same topology (vertex and "
                         "triangle counts)")
    h, w = cam_now.shape
    pts = (corner_points((h, w)) if points is None else np.asarray(points, float)).reshape(-1, 2)
    face, bary, _ = _raster(mesh_now, cam_now, pts)

    def occluded(sel, old3d, old_xy):
        vd_prev = _view_depth(cam_prev, mesh_prev.vertices)
        own = _view_depth(cam_prev, old3d)
        f2, b2, _ = _raster(mesh_prev, cam_prev, old_xy)
        seen = interpolate(vd_prev[:, None], mesh_prev.faces, f2, b2)[:, 0]
        tol = 1e-4 * np.abs(own) + 1e-6
        return (f2 >= 0) & (f2 != face[sel]) & (seen < own - tol)

    pos = geometry_from_hits(pts, face, bary, mesh_prev, cam_now, cam_prev,
                             background=background, occluded=occluded if occlusion else None)
    return pos if points is not None else pos.reshape(h + 1, w + 1, 2)


def geometry_from_hits(points, face, bary, mesh_prev, cam_now, cam_prev, *,
                       background="camera", occluded=None):
    """The geometry map's rule, shared by the rasteriser (``geometry_positions``) and
    the ray-casting route (``meshio.geometry_positions_rays``): image ``points (N, 2)``
    of frame f hit ``face`` (-1: none) at barycentrics ``bary``; the same barycentric
    point on ``mesh_prev`` (the same topology) is projected by ``cam_prev``.

    NaN (fresh noise for the pixels around it): behind the old camera, or where
    ``occluded(sel, old3d, old_xy)`` (the route's visibility test for the hit points
    ``sel`` whose old position lies in the old image) says a nearer surface hid it at
    f-1. Points on no surface follow ``background``: ``"camera"`` (at infinity: the
    view direction through the old camera, as the vectors source), ``"fresh"``, or
    ``"screen"`` (it stays on the screen). Old positions outside the old image are
    kept (the core gives that part fresh noise). Returns ``(N, 2)``."""
    if background not in GEOMETRY_BACKGROUND_RULES:
        raise ValueError(f"background must be one of {GEOMETRY_BACKGROUND_RULES}, got {background!r}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    hit = face >= 0
    pos = np.full((pts.shape[0], 2), np.nan)
    old3d = interpolate(mesh_prev.vertices, mesh_prev.faces, face, bary)
    oxy, ow, _ = project(cam_prev, old3d[hit])
    ok = ow > 0
    oxy[~ok] = np.nan
    pos[hit] = oxy
    if occluded is not None and hit.any():
        inside = ok & (oxy[:, 0] >= 0) & (oxy[:, 0] <= cam_prev.width) & \
            (oxy[:, 1] >= 0) & (oxy[:, 1] <= cam_prev.height)
        sel = np.nonzero(hit)[0][inside]
        pos[sel[occluded(sel, old3d[sel], pos[sel])]] = np.nan
    if background == "camera" and (~hit).any():
        pos[~hit] = background_positions(cam_now, cam_prev, pts[~hit])
    elif background == "screen":
        pos[~hit] = pts[~hit]
    return pos


def surface_uv(mesh, camera, points):
    """``(uv (N, 2), face (N,))`` of the surface seen at image ``points`` (NaN, -1:
    none): the UVs a renderer's UV pass holds there."""
    face, bary, _ = _raster(mesh, camera, np.asarray(points, float).reshape(-1, 2))
    hit = face >= 0
    uv = np.full((face.size, 2), np.nan)
    uv[hit] = np.einsum("nk,nkc->nc", bary[hit], mesh.uv[face[hit]])
    return uv, face


def texture_noise(texture_size, channels, *, seed=0, tiles=1, xp=np):
    """The fixed texture noise: ``white_noise((tiles * N, N), C, seed, frame=0)``."""
    from ..methods.white import white_noise
    n = int(texture_size)
    if n < 1:
        raise ValueError(f"texture size must be >= 1, got {texture_size}")
    return white_noise((int(tiles) * n, n), channels, seed=seed, frame=0, xp=xp)


def screen_noise(shape, channels, *, seed=0, frame=0, cells=None):
    """Off-surface noise ``(H, W, C)`` float32 (NumPy), independent of the texture
    noise and of every warp draw (its own counter word). ``cells`` (flat pixel
    indices): only those pixels' values, ``(len(cells), C)``, the same numbers."""
    if cells is None:
        z = screen_noise(shape, channels, seed=seed, frame=frame,
                         cells=np.arange(int(np.prod(shape))))
        return z.reshape(tuple(shape) + (channels,))
    z = rng.normals(np.asarray(cells, np.uint64), _SCREEN_WORD, rng.STREAM_FRESH,
                    channels, frame, seed)
    return z.astype(np.float32)


def surface_noise(texture, corners, valid, *, method="grid", seed=0, frame=0,
                  background="fresh"):
    """One frame of surface noise ``(H, W, C)`` float32: the texture noise integrated
    over each pixel's preimage (``warp_masked`` with the fixed ``SURFACE_KEY``), and,
    on pixels not ``valid``, fresh noise for ``frame`` (``"fresh"``) or the same
    screen noise every frame (``"static"``)."""
    if background not in BACKGROUND_RULES:
        raise ValueError(f"background must be one of {BACKGROUND_RULES}, got {background!r}")
    xp = array_module(texture)
    out = warp_masked(texture, corners, valid, method=method, seed=seed, frame=SURFACE_KEY)
    valid = np.asarray(valid, bool)
    if not valid.all():
        # only the pixels off the surface are drawn (row-major, as the mask selects)
        key = frame if background == "fresh" else 0
        bg = screen_noise(valid.shape, texture.shape[-1], seed=seed, frame=key,
                          cells=np.flatnonzero(~valid))
        out[xp.asarray(~valid)] = xp.asarray(bg)
    return out
