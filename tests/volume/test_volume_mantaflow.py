"""Blender's fluid cache velocity (cupy_core.volume.mantaflow): MAC to centres, units,
placement. Closed forms only; no Blender, no openvdb."""
import numpy as np
import pytest

from cupy_core.volume import (Domain, VolumeInputError, backtrace_positions, corner_points,
                              frame_length,
                              mantaflow_velocity_grid, staggered_to_centred)


def test_frame_length_is_blenders():
    # fluid.cc: DT_DEFAULT (0.1) * 25 / fps * time_scale
    assert frame_length(25) == pytest.approx(0.1)
    assert frame_length(24, 0.5) == pytest.approx(0.1 * 25 / 24 * 0.5)
    with pytest.raises(VolumeInputError):
        frame_length(0)


def test_staggered_linear_field_is_centred():
    d, h, w = 3, 4, 5
    k, i, j = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    raw = np.zeros((d, h, w, 3))
    # MAC: component x of cell j sits on the face j - 1/2, y on i - 1/2, z on k - 1/2
    raw[..., 0] = 2.0 * (j - 0.5)
    raw[..., 1] = -1.0 * (i - 0.5) + 3
    raw[..., 2] = 0.5 * (k - 0.5)
    c = staggered_to_centred(raw)
    np.testing.assert_allclose(c[..., :-1, 0], (2.0 * j)[..., :-1])
    np.testing.assert_allclose(c[:, :-1, :, 1], (-1.0 * i + 3)[:, :-1])
    np.testing.assert_allclose(c[:-1, ..., 2], (0.5 * k)[:-1])
    # the wall cell repeats its near face
    np.testing.assert_allclose(c[..., -1, 0], raw[..., -1, 0])


def test_uniform_cache_velocity_moves_by_its_cells_per_frame():
    rng = np.random.default_rng(0)
    a = np.linalg.qr(rng.standard_normal((3, 3)))[0] * 1.7   # rotation and scale
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, (0.3, -2, 1)
    bmin, bmax = np.array([-1.0, -1, -0.5]), np.array([1.0, 1, 0.5])
    raw = np.zeros((5, 10, 10, 3))                     # (D, H, W) = (z, y, x) cells
    raw[...] = (4.0, -2.0, 1.0)                        # cells per Mantaflow time unit
    fps, ts = 30.0, 1.5
    vel = mantaflow_velocity_grid(raw, bmin, bmax, m, fps, ts)
    cell = (bmax - bmin) / [10, 10, 5]
    move_local = np.array([4.0, -2, 1]) * frame_length(fps, ts) * cell
    np.testing.assert_allclose(vel.sample(np.zeros((1, 3))), [a @ move_local], atol=1e-12)
    # the grid covers the box: cell (k, i, j) = (0, 0, 0) is centred at bmin + cell / 2
    np.testing.assert_allclose(vel.voxel_to_world @ [0.5, 0.5, 0.5, 1],
                               np.append(a @ (bmin + cell / 2) + m[:3, 3], 1), atol=1e-12)
    dom = Domain.from_box(bmin, bmax, 8, m)               # voxels of 0.25 local units
    pos = backtrace_positions(dom, dom, vel)
    np.testing.assert_allclose(pos - corner_points(dom.shape), np.broadcast_to(
        -move_local / 0.25, pos.shape), atol=1e-9)
    with pytest.raises(VolumeInputError, match="non-finite"):
        mantaflow_velocity_grid(np.full((2, 2, 2, 3), np.nan), bmin, bmax, m, fps)
    with pytest.raises(VolumeInputError, match=r"\(D, H, W, 3\)"):
        mantaflow_velocity_grid(np.zeros((2, 2, 2)), bmin, bmax, m, fps)
