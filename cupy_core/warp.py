"""Backend dispatch: ``warp``, ``partition_record`` and ``NoiseWarper`` (docs/DESIGN.md 8).

A NumPy prior runs the CPU path (partition record + ``bridge_numpy``), a CuPy prior the
GPU path (the same passes as kernels, geometry recomputed in each).
"""
import numpy as np

from .methods import bridge
from .conventions import (METHODS, array_module, centers_to_corners, check_positions,
                          check_prior, corners_to_centers)
from .methods.grid2d import grid2d_pieces
from .methods.grid3d import grid3d_pieces
from .methods.particle2d import particle2d_pieces
from .methods.particle3d import particle3d_pieces
from .methods.upsample import check_factor, upsample_cupy, upsample_numpy, upsample_pieces
from .methods.white import white_noise
from .methods.cuda import i64
from .device import use_gpu


def _geometry(method, positions, at):
    """What each variant needs: (positions in its own form, valid mask or None)."""
    xp = array_module(positions)
    pos = positions.astype(xp.float64, copy=False)   # read-only below: no extra copy
    if method == "grid":
        if at == "corners":
            return pos, None
        # A target whose own centre has no source gets fresh noise; its corners come
        # from the neighbours that have one.
        return centers_to_corners(pos), ~xp.isnan(pos).any(axis=-1)
    if at == "centers":
        return pos, None
    return corners_to_centers(pos), None


def _pieces_numpy(method, geom, valid, source_shape):
    if len(source_shape) == 3:
        if method == "grid":
            return grid3d_pieces(geom, source_shape, valid)
        return particle3d_pieces(geom, source_shape, valid)
    if method == "grid":
        return grid2d_pieces(geom, source_shape, valid)
    return particle2d_pieces(geom, source_shape, valid)


def _check_method(method, dims, factor):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "upsample":
        factor = check_factor(factor)
        if dims != 2:
            raise NotImplementedError("method='upsample' (the Chang et al. baseline, a "
                                      "measured comparison) is 2-D only")
        return factor
    if factor is not None:
        raise ValueError("factor is only used by method='upsample'")


def _upsample(prior, positions, at, factor, seed, frame, source_shape, target_shape, channels):
    """The Chang et al. baseline (upsample.py): the grid variant's quads, N x N
    sub-pixels per source pixel."""
    xp = array_module(prior)
    corners, valid = _geometry("grid", positions, at)
    if xp is np:
        flat = prior.astype(np.float32, copy=False).astype(np.float64).reshape(-1, channels)
        out = upsample_numpy(flat, corners, source_shape, factor, valid, seed, frame)
        return out.astype(np.float32).reshape(target_shape + (channels,))
    valid_arg = (xp.ascontiguousarray(valid, dtype=xp.uint8) if valid is not None
                 else None)  # a null pointer
    flat = xp.ascontiguousarray(prior.reshape(-1, channels), dtype=xp.float32)
    out = upsample_cupy(flat, xp.ascontiguousarray(corners), valid_arg, source_shape, factor,
                        seed, frame)
    return out.reshape(target_shape + (channels,))


def warp(prior, positions, *, method="grid", seed=0, frame=0, at="corners", factor=None):
    """Warp ``prior`` noise by the backward map ``positions``: float32 ``(H, W, C)``, or
    ``(D, H, W, C)`` for voxels (``positions`` then ``(x, y, z)``).

    See docs/DESIGN.md 8 for the conventions; NaN positions give fresh noise.
    """
    return _warp(prior, positions, method=method, seed=seed, frame=frame, at=at,
                 factor=factor)


def warp_chained(prior, positions, *, method="grid", seed=0, frame=0, at="corners",
                 factor=None):
    """``warp`` for noise this package made itself (the previous frame of a chained
    bake, ``NoiseWarper``): the scan of ``prior`` for NaN and infinities is skipped."""
    return _warp(prior, positions, method=method, seed=seed, frame=frame, at=at,
                 factor=factor, check_values=False)


def _warp(prior, positions, *, method="grid", seed=0, frame=0, at="corners", factor=None,
          check_values=True):
    source_shape, channels = check_prior(prior, values=check_values)
    dims = len(source_shape)
    target_shape = check_positions(positions, dims, at)
    if array_module(prior) is not array_module(positions):
        raise ValueError("prior and positions must both be NumPy arrays or both CuPy arrays")
    factor = _check_method(method, dims, factor)
    if method == "upsample":
        return _upsample(prior, positions, at, factor, seed, frame, source_shape, target_shape,
                         channels)
    geom, valid = _geometry(method, positions, at)
    return _bridge(prior, geom, valid, method, source_shape, target_shape, channels, seed,
                   frame)


def _bridge(prior, geom, valid, method, source_shape, target_shape, channels, seed, frame):
    """The grid/particle warp from its geometry (``_geometry``'s form) and the targets
    that take source area (``valid``, or None for all): NumPy or the kernels."""
    xp = array_module(prior)
    n_target = int(np.prod(target_shape))
    normalise_all = method == "particle"
    if xp is np:
        t, s, w = _pieces_numpy(method, geom, valid, source_shape)
        flat = prior.astype(np.float32, copy=False).reshape(-1, channels)   # as the GPU's
        out = bridge.bridge_numpy(flat, t, s, w, n_target, normalise_all, seed, frame)
        return out.astype(np.float32).reshape(target_shape + (channels,))
    valid_arg = (xp.ascontiguousarray(xp.asarray(valid), dtype=xp.uint8) if valid is not None
                 else None)  # a null pointer
    # Geometry arguments: positions, valid, the target's then the source's shape.
    geom_args = ((xp.ascontiguousarray(geom), valid_arg)
                 + tuple(i64(n) for n in target_shape) + tuple(i64(n) for n in source_shape))
    flat = xp.ascontiguousarray(prior.reshape(-1, channels), dtype=xp.float32)
    name = f"{method}{len(source_shape)}d"
    out = bridge.bridge_cupy(f"{name}.cu", name, geom_args, flat, n_target,
                             normalise_all, seed, frame)
    return out.reshape(target_shape + (channels,))


def warp_masked(prior, corners, valid, *, method="grid", seed=0, frame=0):
    """``warp(prior, corners, at="corners")`` where only the pixels ``valid (H, W)``
    take source area (the others get the core's fresh noise and consume nothing).
    NumPy or CuPy, as ``cupy_core.warp``."""
    source_shape, channels = check_prior(prior)
    target = check_positions(corners, 2, "corners")
    valid = np.asarray(valid if array_module(valid) is np else valid.get(), bool)
    if valid.shape != tuple(target):
        raise ValueError(f"valid must be {tuple(target)}, got {valid.shape}")
    if method not in ("grid", "particle"):
        raise ValueError(f"method must be 'grid' or 'particle', got {method!r}")
    geom = corners.astype(array_module(prior).float64, copy=False)
    if method == "particle":
        geom = corners_to_centers(geom)
    return _bridge(prior, geom, valid, method, source_shape, tuple(target), channels, seed,
                   frame)


def partition_record(positions, source_shape, *, method="grid", at="corners", factor=None):
    """``(target, source, area)`` as NumPy int64, int64, float64 (docs/DESIGN.md 4.1): flat
    row-major indices and overlap areas before any ``s > 1`` rescaling (particle:
    ``w / S_k``; upsample: ``n_k / N^2``, the share of source k's N x N sub-pixel centres
    inside R_p, for which docs/DESIGN.md 4.4 item 3 holds as it does for areas)."""
    source_shape = tuple(int(s) for s in source_shape)
    dims = len(source_shape)
    if dims not in (2, 3) or min(source_shape) < 1:
        raise ValueError(f"source_shape must be (Hs, Ws) or (Ds, Hs, Ws), got {source_shape}")
    check_positions(positions, dims, at)
    factor = _check_method(method, dims, factor)
    if array_module(positions) is not np:
        positions = positions.get()
    if method == "upsample":
        corners, valid = _geometry("grid", positions, at)
        t, s, n = upsample_pieces(corners, source_shape, factor, valid)
        return t, s, n / float(factor * factor)
    geom, valid = _geometry(method, positions, at)
    t, s, w = _pieces_numpy(method, geom, valid, source_shape)
    if method == "particle":
        S = np.bincount(s, w, minlength=int(np.prod(source_shape)))  # exact, not fixed point
        w = w / S[s]
    return t.astype(np.int64), s.astype(np.int64), w.astype(np.float64)


class NoiseWarper:
    """Carries one noise field through a sequence of backward maps.

    ``device``: ``"auto"`` (the GPU when the probe of ``cupy_core.device`` passes, else
    the CPU with one warning naming why), ``"cpu"`` or ``"gpu"`` (``GpuUnavailableError``
    when it cannot run).
    ``frame``: the number of the first frame (Blender scenes often start at 1).
    """

    def __init__(self, shape, channels, *, method="grid", seed=0, device="auto", frame=0,
                 factor=None):
        if use_gpu(device):
            import cupy
            self.xp = cupy
        else:
            self.xp = np
        shape = tuple(int(s) for s in shape)
        self.factor = _check_method(method, len(shape), factor)
        self.method = method
        self.seed = seed
        self.frame = int(frame)
        self.noise = white_noise(shape, channels, seed=seed, frame=self.frame, xp=self.xp)

    @property
    def device(self):
        return "gpu" if self.xp is not np else "cpu"

    def step(self, positions, at="corners"):
        """Warp to the next frame by the backward map ``positions``; returns the noise."""
        if self.xp is not np and array_module(positions) is np:
            positions = self.xp.asarray(positions)
        elif self.xp is np and array_module(positions) is not np:
            positions = positions.get()
        self.noise = _warp(self.noise, positions, method=self.method, seed=self.seed,
                           frame=self.frame + 1, at=at, factor=self.factor,
                           check_values=False)
        self.frame += 1
        return self.noise
