"""Deformations sampled at probe points (cupy_core.volume.deform): the backward map of a
lattice or armature, checked against closed-form maps. No Blender."""
import numpy as np
import pytest

import cupy_core
from cupy_core import stats
from cupy_core.volume import (Domain, SampledDeformation, VolumeInputError, object_positions,
                              probe_grid, rest_points, rigid_positions)


def affine(a, b):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, b
    return m


def twist(p, angle_per_unit):
    """Rotation about the z axis by ``angle_per_unit * z``: volume preserving, with the
    closed-form inverse ``twist(p, -a)``."""
    z = p[..., 2]
    c, s = np.cos(angle_per_unit * z), np.sin(angle_per_unit * z)
    return np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1], z], -1)


BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_probe_grid_covers_box_with_margin():
    o, h, c = probe_grid(BOX, margin=0.25, max_cells=20)
    r = rest_points(o, h, c)
    assert r.shape == (c[2], c[1], c[0], 3)
    np.testing.assert_allclose(h, [3.0 / 20] * 3)           # (2 + 2 * .5) / 20
    assert (r.reshape(-1, 3).min(0) <= -1.5 + 1e-12).all()
    assert (r.reshape(-1, 3).max(0) >= 1.5 - 1e-12).all()
    with pytest.raises(VolumeInputError, match="finite"):
        probe_grid(np.array([[0, 0, np.nan]]))


def test_affine_deformation_is_inverted_exactly():
    rng = np.random.default_rng(1)
    a1, b1 = np.eye(3) + 0.25 * rng.standard_normal((3, 3)), rng.standard_normal(3)
    a0, b0 = np.eye(3) + 0.25 * rng.standard_normal((3, 3)), rng.standard_normal(3)
    o, h, c = probe_grid(BOX, max_cells=8)
    r = rest_points(o, h, c)
    d = SampledDeformation(o, h, r @ a1.T + b1, r @ a0.T + b0)
    x = rng.uniform(-1, 1, (5000, 3)) @ a1.T + b1           # images of rest points in BOX
    expect = (x - b1) @ np.linalg.inv(a1).T @ a0.T + b0      # closed form
    np.testing.assert_allclose(d.backward(x), expect, atol=1e-9)


def test_twist_inverse_matches_closed_form_within_interpolation_error():
    rng = np.random.default_rng(2)
    alpha = 0.8
    x = rng.uniform(-1, 1, (20000, 3))
    errors = []
    for cells in (16, 32):
        o, h, c = probe_grid(BOX, max_cells=cells)
        r = rest_points(o, h, c)
        d = SampledDeformation(o, h, twist(r, alpha), twist(r, 0.5 * alpha))
        rest = d.invert(x)
        # Newton solves the interpolant to round-off
        np.testing.assert_allclose(d.forward(rest), x, atol=1e-9)
        # Trilinear error bound: h^2/8 per axis times the largest second derivative of
        # the twist (|d2/dz2| <= alpha^2 |r_xy| <= alpha^2 * sqrt(2) * 1.5 on the probe),
        # divided by the smallest singular value of the Jacobian (>= 1/(1 + 1.5*alpha*sqrt2)).
        bound = 3 * h[0] ** 2 / 8 * alpha ** 2 * 1.5 * np.sqrt(2) * (1 + 1.5 * alpha * np.sqrt(2))
        err = np.abs(rest - twist(x, -alpha)).max()
        assert err <= bound, (cells, err, bound)
        errors.append(err)
        back = d.backward(x)
        np.testing.assert_allclose(back, twist(twist(x, -alpha), 0.5 * alpha), atol=2 * bound)
    # second order: halving h divides the error by about 4
    assert 3.0 < errors[0] / errors[1] < 5.0, errors


def test_no_pre_image_in_probe_is_nan():
    o, h, c = probe_grid(BOX, margin=0.0, max_cells=8)
    r = rest_points(o, h, c)
    d = SampledDeformation(o, h, r + [0.5, 0, 0], r)         # the probe moved by +0.5 x
    x = np.array([[0.0, 0, 0], [-0.4, 0, 0], [1.4, 0, 0], [1.6, 0, 0], [-0.9, 0, 0]])
    back = d.backward(x)
    np.testing.assert_allclose(back[:3], x[:3] - [0.5, 0, 0], atol=1e-12)
    assert np.isnan(back[3:]).all()                # rest points 1.1 and -1.4: outside


def test_bad_samples_are_rejected():
    o, h, c = probe_grid(BOX, max_cells=4)
    r = rest_points(o, h, c)
    with pytest.raises(VolumeInputError, match=r"\(nz, ny, nx, 3\)"):
        SampledDeformation(o, h, r, r[:-1])
    bad = r.copy()
    bad[1, 1, 1, 0] = np.inf
    with pytest.raises(VolumeInputError, match="non-finite"):
        SampledDeformation(o, h, r, bad)
    with pytest.raises(VolumeInputError, match="at least 2"):
        SampledDeformation(o, h, r[:1], r[:1])
    with pytest.raises(VolumeInputError, match="floating"):
        SampledDeformation(o, h, r.astype(int), r)
    with pytest.raises(VolumeInputError, match="spacing"):
        SampledDeformation(o, -h, r, r)


def test_object_positions_with_a_rigid_deformation_equals_rigid_positions():
    dom = Domain.from_box((-1, -1, -1), (1, 1, 1), 8)
    th = 0.3
    m_now = affine([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]],
                   [0.2, -0.1, 0.05])
    m_prev = affine(np.eye(3) * 1.1, [0.0, 0.1, 0.0])
    probe = dom.corners_world()
    o, h, c = probe_grid(probe, max_cells=12)
    r = rest_points(o, h, c)
    d = SampledDeformation(o, h, r @ m_now[:3, :3].T + m_now[:3, 3],
                           r @ m_prev[:3, :3].T + m_prev[:3, 3])
    got = object_positions(dom, dom, [(m_now, m_prev, None, d)], follow="all")
    ref = rigid_positions(dom, dom, m_now, m_prev)
    inside = np.isfinite(got).all(-1)
    assert inside.mean() > 0.95              # only corners whose source left the probe
    np.testing.assert_allclose(got[inside], ref[inside], atol=1e-9)
    # follow="inside" with a box: corners outside stay put
    box = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    got = object_positions(dom, dom, [(m_now, m_prev, box, d)], follow="inside")
    local = dom.corners_world() @ np.linalg.inv(m_now)[:3, :3].T + np.linalg.inv(m_now)[:3, 3]
    sel = (np.abs(local) <= 0.5).all(-1)
    np.testing.assert_allclose(got[sel], ref[sel], atol=1e-9)
    np.testing.assert_allclose(got[~sel], rigid_positions(dom, dom, np.eye(4), np.eye(4))[~sel],
                               atol=1e-12)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_twisting_chain_stays_white_and_is_carried(method):
    shape = (12, 12, 12)
    dom = Domain.from_box((-1, -1, -1), (1, 1, 1), 12)
    o, h, c = probe_grid(dom.corners_world(), max_cells=24)
    r = rest_points(o, h, c)
    maps = []
    for f in range(1, 31):                     # a twist that winds up over time
        d = SampledDeformation(o, h, twist(r, 0.05 * f), twist(r, 0.05 * (f - 1)))
        maps.append(object_positions(dom, dom, [(np.eye(4), np.eye(4), None, d)]))
    noise = cupy_core.white_noise(shape, 4, seed=5, frame=0)
    for f, pos in enumerate(maps, start=1):
        new = cupy_core.warp(noise, pos, method=method, seed=5, frame=f, at="corners")
        ok, why = stats.check_white(new)
        assert ok, (f, why)
        prev_noise, noise = noise, new
    # carried, not redrawn: the last step's corr with the previous frame is high
    assert stats.carried_correlation(prev_noise, noise) > 0.5


def bend(p, k):
    """Bends the slab z < 1/k around the y axis (x -> angle k x): injective there, far
    from affine (k = 2.9 turns x in [-1, 1] through 332 degrees)."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    rad = 1.0 / k
    return np.stack([(rad - z) * np.sin(k * x), y, rad - (rad - z) * np.cos(k * x)], -1)


def test_strong_bend_is_inverted_everywhere():
    # An affine first guess is far off here: from it Newton fails for ~5% of the points
    # and restarts from the nearest probe point; it stays inside the probe (the
    # extrapolation outside has false pre-images).
    k = 2.9
    box = np.array([[-1.0, -1, -1], [1, 1, 0.3]])
    o, h, c = probe_grid(box, margin=0.0, max_cells=40)
    r = rest_points(o, h, c)
    d = SampledDeformation(o, h, bend(r, k), r)
    rest = np.random.default_rng(3).uniform(box[0] + 0.02, box[1] - 0.02, (20000, 3))
    got = d.invert(bend(rest, k))
    assert np.isfinite(got).all()
    # forward error <= h^2/8 * max|d2D/dx2| = h^2/8 * (1/k + 1) k^2; the inverse's is that
    # over the smallest singular value of dD/dr, >= (1/k - 0.3) k
    bound = h[0] ** 2 / 8 * (1 / k + 1) * k ** 2 / ((1 / k - 0.3) * k)
    err = np.abs(got - rest).max()
    assert err <= bound, (err, bound)
