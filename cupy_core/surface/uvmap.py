"""UV coordinates -> texture pixel coordinates, and UV islands. No Blender import.

A surface's noise lives in a white-noise texture of ``N x N`` pixels per *tile*; the
tiles of several surfaces (meshes) are stacked vertically, tile k holding rows
``k N .. (k + 1) N - 1``, so two meshes whose UVs overlap still get independent noise,
and the noise of tile k does not depend on how many tiles there are (white noise is
addressed by the flat cell index). Textures are stored top row first, UV v points up:

    x = u * N          y = (k + 1 - v) * N

UVs are clamped to [0, 1] first (a point outside the unit square gets the nearest
texture border, never another tile's noise); a pixel whose preimage is pinched by the
clamp keeps less area (and less temporal coherence), still N(0, 1).
"""
import numpy as np

__all__ = ["uv_to_texture", "uv_islands"]

UV_TOL = 1e-5     # UVs closer than this are the same UV (island detection)


def uv_to_texture(uv, size, tile=0):
    """``uv (..., 2)`` -> texture pixel positions ``(..., 2)`` ``(x, y)`` in a stack of
    ``size x size`` tiles; ``tile`` (broadcast) picks the tile. NaN stays NaN."""
    uv = np.asarray(uv, dtype=np.float64)
    u = np.clip(uv[..., 0], 0.0, 1.0)
    v = np.clip(uv[..., 1], 0.0, 1.0)
    tile = np.asarray(tile, dtype=np.float64)
    return np.stack([u * size, (tile + 1.0 - v) * size], axis=-1)


def uv_islands(faces, uv, vertices=None):
    """Island label per triangle (int64, ``(T,)``): triangles are in one island when
    they are connected through edges whose two ends have the same UVs on both sides
    (a UV seam, or a mesh boundary, separates islands; UVs within ``UV_TOL`` are equal). ``faces (T, 3)`` vertex indices,
    ``uv (T, 3, 2)`` per corner. With ``vertices (V, 3)``, vertices at the same
    position count as one (mesh files split vertices at UV seams, and some exporters
    wherever a corner's UV index differs)."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if vertices is not None and len(faces):
        _, pid = np.unique(np.asarray(vertices, dtype=np.float64).reshape(-1, 3), axis=0,
                           return_inverse=True)
        faces = pid.reshape(-1)[faces]
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 3, 2)
    t = faces.shape[0]
    if t == 0:
        return np.zeros(0, dtype=np.int64)
    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    ua = np.concatenate([uv[:, 0], uv[:, 1], uv[:, 2]])
    ub = np.concatenate([uv[:, 1], uv[:, 2], uv[:, 0]])
    tri = np.tile(np.arange(t), 3)
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    ulo = np.where(swap[:, None], ub, ua)
    uhi = np.where(swap[:, None], ua, ub)
    # edges sharing their two vertices, next to each other once sorted; joined when the
    # UVs at both ends agree to UV_TOL (exporters and Blender versions differ in the
    # last bits of the same UV)
    order = np.lexsort((hi, lo))
    same = (lo[order][1:] == lo[order][:-1]) & (hi[order][1:] == hi[order][:-1])
    ia, ib = order[:-1][same], order[1:][same]
    close = (np.abs(ulo[ia] - ulo[ib]).max(axis=1) <= UV_TOL) & \
        (np.abs(uhi[ia] - uhi[ib]).max(axis=1) <= UV_TOL)
    ea, eb = tri[ia[close]], tri[ib[close]]
    label = np.arange(t)
    while True:
        m = np.minimum(label[ea], label[eb])
        new = label.copy()
        np.minimum.at(new, ea, m)
        np.minimum.at(new, eb, m)
        new = new[new]
        while True:
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, label):
            return label
        label = new
