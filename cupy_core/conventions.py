"""The conventions of docs/DESIGN.md 3, in one place: validation, corners and centres, flows.

Arrays are ``(H, W, C)`` / ``(D, H, W, C)``; pixel ``(i, j)`` is the square
``x in [j, j+1], y in [i, i+1]`` (x right, y down, origin top-left); a deformation is a
*backward* map giving, for each point of the new frame, its position ``(x, y[, z])`` in
the previous frame. Everything else (Blender's y-up raster, row/column flows, forward
flows) is converted to this at the edges of the system.
"""
import numpy as np

METHODS = ("grid", "particle", "upsample")
AT = ("corners", "centers")
# Cells are Philox counter words (32 bits): a field may have at most 2^32 - 1 of them.
COUNTER_LIMIT = 2 ** 32


def cell_count_message(shape):
    """None when a field of spatial ``shape`` fits the random counters (fewer than 2^32
    cells), else the refusal in the user's terms: how many pixels (voxels) the frame
    has, the most there may be, and what to lower."""
    shape = tuple(int(n) for n in shape)
    n = int(np.prod(shape, dtype=object)) if shape else 0
    if n < COUNTER_LIMIT:
        return None
    if len(shape) == 2:
        return (f"frames of {shape[1]}x{shape[0]} pixels have {n:,} pixels; the noise "
                f"generator numbers each pixel with 32 bits, so a frame may have at most "
                f"{COUNTER_LIMIT - 1:,} (65535x65535): lower the resolution")
    return (f"a volume of {'x'.join(map(str, shape))} voxels has {n:,} voxels; the noise "
            f"generator numbers each voxel with 32 bits, so a volume may have at most "
            f"{COUNTER_LIMIT - 1:,} (1625^3): lower the domain resolution")


def check_cell_count(shape):
    """Refuse (ValueError, ``cell_count_message``) a field too large for the counters."""
    message = cell_count_message(shape)
    if message is not None:
        raise ValueError(message)


def array_module(a):
    """``numpy`` for NumPy arrays, ``cupy`` for CuPy arrays (imported only then)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def check_prior(prior, values=True):
    """Validate a noise array; returns ``(spatial_shape, channels)``."""
    if not hasattr(prior, "shape") or not hasattr(prior, "dtype"):
        raise ValueError(f"prior must be a NumPy or CuPy array, got {type(prior).__name__}")
    if prior.dtype not in (np.float32, np.float64):
        raise ValueError(f"prior must be float32 or float64, got dtype {prior.dtype}")
    if prior.ndim not in (3, 4):
        raise ValueError(f"prior must be (H, W, C) or (D, H, W, C), got shape {tuple(prior.shape)}")
    channels = prior.shape[-1]
    if channels < 1:
        raise ValueError(f"prior must have C >= 1 channels, got C = {channels}")
    if min(prior.shape[:-1]) < 1:
        raise ValueError(f"prior has an empty spatial axis: shape {tuple(prior.shape)}")
    check_cell_count(prior.shape[:-1])
    xp = array_module(prior)
    # values=False: noise the package made itself (a bake's previous frame); the scan
    # costs a pass over the field, and on a GPU a device-to-host sync, every frame.
    if values and not bool(xp.isfinite(prior).all()):
        raise ValueError("prior contains NaN or infinite values")
    return tuple(int(s) for s in prior.shape[:-1]), int(channels)


def check_positions(positions, dims, at):
    """Validate backward positions; returns the target's spatial shape.

    NaN is allowed (no source: fresh noise); infinities are not.
    """
    if at not in AT:
        raise ValueError(f"at must be 'corners' or 'centers', got {at!r}")
    if not hasattr(positions, "shape") or not hasattr(positions, "dtype"):
        raise ValueError(f"positions must be a NumPy or CuPy array, got {type(positions).__name__}")
    if positions.dtype not in (np.float32, np.float64):
        raise ValueError(f"positions must be float32 or float64, got dtype {positions.dtype}")
    axes = "(x, y)" if dims == 2 else "(x, y, z)"
    if positions.ndim != dims + 1 or positions.shape[-1] != dims:
        raise ValueError(f"positions for a {dims}-D prior must have shape "
                         f"{'(H+1, W+1, 2)' if dims == 2 else '(D+1, H+1, W+1, 3)'} at corners or "
                         f"{'(H, W, 2)' if dims == 2 else '(D, H, W, 3)'} at centres, last axis {axes}; "
                         f"got shape {tuple(positions.shape)}")
    spatial = tuple(int(s) for s in positions.shape[:-1])
    target = tuple(s - 1 for s in spatial) if at == "corners" else spatial
    if min(target) < 1:
        raise ValueError(f"positions at {at} of shape {tuple(positions.shape)} describe an empty target grid")
    check_cell_count(target)
    xp = array_module(positions)
    if bool(xp.isinf(positions).any()):
        raise ValueError("positions contain infinite values (use NaN to mark 'no source')")
    return target


def pixel_centers(shape, xp=np):
    """Centres ``(..., (x, y[, z]))`` of a grid of spatial ``shape`` (rows = y)."""
    axes = [xp.arange(n, dtype=xp.float64) + 0.5 for n in shape]
    grids = xp.meshgrid(*axes, indexing="ij")
    return xp.stack(grids[::-1], axis=-1)  # (z, y, x) index order -> (x, y, z) components


def pixel_corners(shape, xp=np):
    """Corner positions ``(H+1, W+1, 2)`` (or 3-D) of a grid of spatial ``shape``."""
    axes = [xp.arange(n + 1, dtype=xp.float64) for n in shape]
    grids = xp.meshgrid(*axes, indexing="ij")
    return xp.stack(grids[::-1], axis=-1)


def _pad_linear(d, axis, xp):
    """Pad ``d`` by one sample on both ends of ``axis``, extrapolating linearly.

    Linear extrapolation keeps affine maps exact at the border; a single sample is
    replicated instead.
    """
    n = d.shape[axis]
    take = lambda i: xp.take(d, [i], axis=axis)
    if n >= 2:
        lo = 2 * take(0) - take(1)
        hi = 2 * take(n - 1) - take(n - 2)
    else:
        lo = hi = take(0)
    return xp.concatenate([lo, d, hi], axis=axis)


def centers_to_corners(centers):
    """Backward positions at corners from positions at centres (docs/DESIGN.md 3).

    Each corner averages the displacements of the 2^d centres around it (NaN ones left
    out); the map is extended linearly past the border. A corner is NaN only when all
    its neighbours are.
    """
    xp = array_module(centers)
    dims = centers.shape[-1]
    spatial = centers.shape[:-1]
    disp = centers.astype(xp.float64) - pixel_centers(spatial, xp)
    for ax in range(dims):
        disp = _pad_linear(disp, ax, xp)
    ok = ~xp.isnan(disp).any(axis=-1, keepdims=True)
    val = xp.where(ok, disp, 0.0)
    total = xp.zeros(tuple(n + 1 for n in spatial) + (dims,), dtype=xp.float64)
    count = xp.zeros(tuple(n + 1 for n in spatial) + (1,), dtype=xp.float64)
    for offs in np.ndindex(*(2,) * dims):
        sl = tuple(slice(o, o + n + 1) for o, n in zip(offs, spatial))
        total += val[sl]
        count += ok[sl]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)
    return pixel_corners(spatial, xp) + mean


def corners_to_centers(corners):
    """Backward positions at centres: the mean of each cell's 2^d corners (NaN spreads)."""
    xp = array_module(corners)
    dims = corners.shape[-1]
    spatial = tuple(n - 1 for n in corners.shape[:-1])
    c = corners.astype(xp.float64)
    total = xp.zeros(spatial + (dims,), dtype=xp.float64)
    for offs in np.ndindex(*(2,) * dims):
        total += c[tuple(slice(o, o + n) for o, n in zip(offs, spatial))]
    return total / (2 ** dims)


def flow_to_positions(flow):
    """Backward flow ``(H, W, 2)`` (dx, dy) in pixels at centres -> positions at centres."""
    xp = array_module(flow)
    if flow.ndim < 2 or flow.shape[-1] != flow.ndim - 1:
        raise ValueError(f"flow must be (H, W, 2) or (D, H, W, 3), got shape {tuple(flow.shape)}")
    return pixel_centers(flow.shape[:-1], xp) + flow.astype(xp.float64)


def forward_to_backward(flow):
    """Forward flow -> backward flow by negation: exact for translations, the usual
    first-order approximation elsewhere (what video pipelines do)."""
    return -flow
