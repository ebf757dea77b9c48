"""docs/DESIGN.md 4.4 property 5: grid areas are exact polygon overlaps (checked with shapely,
an independent clipping library), particle weights follow the bilinear formula; and the
documented fail-safe for folded quads never gives a negative or NaN area."""
import numpy as np
import pytest
from shapely.geometry import Polygon, box

import cupy_core
from maps import affine, centers, corners, fold, rotation, swirl


def record_dict(t, s, a):
    out = {}
    for ti, si, ai in zip(t, s, a):
        out[(int(ti), int(si))] = out.get((int(ti), int(si)), 0.0) + float(ai)
    return out


def shapely_record(corner_pos, source_shape, hull_if_folded=False):
    """Reference areas: each target quad intersected with each source cell by shapely."""
    hs, ws = source_shape
    h, w = corner_pos.shape[0] - 1, corner_pos.shape[1] - 1
    ref = {}
    for i in range(h):
        for j in range(w):
            quad = [corner_pos[i, j], corner_pos[i, j + 1], corner_pos[i + 1, j + 1], corner_pos[i + 1, j]]
            poly = Polygon(quad)
            if not poly.is_valid:
                assert hull_if_folded, "unexpected folded quad"
                poly = poly.convex_hull
            x0, y0, x1, y1 = poly.bounds
            for ci in range(max(0, int(np.floor(y0))), min(hs, int(np.ceil(y1)))):
                for cj in range(max(0, int(np.floor(x0))), min(ws, int(np.ceil(x1)))):
                    a = poly.intersection(box(cj, ci, cj + 1, ci + 1)).area
                    if a > 1e-12:
                        ref[(i * w + j, ci * ws + cj)] = a
    return ref


def assert_records_equal(got, ref, tol=1e-9):
    keys = set(got) | set(ref)
    worst = max(abs(got.get(k, 0.0) - ref.get(k, 0.0)) for k in keys)
    assert worst < tol, f"largest area difference {worst}"


MAPS = {
    "identity": lambda c: c,
    "subpixel shift": lambda c: c + [0.37, -0.61],
    "rotation": lambda c: affine(c, rotation(0.4), [0.2, 0.1], [6, 5]),
    "shear+scale": lambda c: affine(c, [[1.3, 0.4], [-0.2, 0.8]], [-1.1, 0.6], [6, 5]),
    "mirror": lambda c: affine(c, [[-1, 0], [0, 1]], [0.3, 0], [6, 5]),
    "swirl": lambda c: swirl(c, 10, 12, strength=0.8, wobble=0.9),
    "minify": lambda c: c * 2.6 - 3.3,
}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_grid_areas_match_shapely(name):
    pos = MAPS[name](corners(10, 12))
    got = record_dict(*cupy_core.partition_record(pos, (11, 13), method="grid"))
    assert_records_equal(got, shapely_record(pos, (11, 13)))


def test_grid_concave_quads_exact():
    """Quads with a reflex corner (at each of the four corner slots) are simple: exact."""
    pos = corners(7, 7)
    # Push single corners into one adjacent pixel: that pixel gets a reflex corner at
    # P0, P1, P2 and P3 respectively.
    for (i, j), d in (((2, 3), (0.6, 0.6)), ((1, 5), (-0.6, 0.6)),
                      ((4, 1), (-0.6, -0.6)), ((5, 5), (0.6, -0.6))):
        pos[i, j] += d
    quads = [Polygon([pos[i, j], pos[i, j + 1], pos[i + 1, j + 1], pos[i + 1, j]])
             for i in range(7) for j in range(7)]
    assert all(q.is_valid for q in quads)
    assert sum(not q.equals(q.convex_hull) for q in quads) == 4, "fixture should hold 4 concave quads"
    got = record_dict(*cupy_core.partition_record(pos, (7, 7)))
    assert_records_equal(got, shapely_record(pos, (7, 7)))


def test_grid_folded_quads_failsafe():
    """Folded (bow-tie) quads use their convex hull; areas are never negative or NaN."""
    pos = corners(12, 12) + np.random.default_rng(1).uniform(-0.9, 0.9, size=(13, 13, 2))
    quads = [Polygon([pos[i, j], pos[i, j + 1], pos[i + 1, j + 1], pos[i + 1, j]])
             for i in range(12) for j in range(12)]
    assert sum(not q.is_valid for q in quads) > 5, "fixture should contain bow-ties"
    t, s, a = cupy_core.partition_record(pos, (12, 12))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    assert_records_equal(record_dict(t, s, a), shapely_record(pos, (12, 12), hull_if_folded=True))


def test_grid_degenerate_and_random_quads_never_negative():
    r = np.random.default_rng(0)
    pos = r.uniform(-3, 12, size=(9, 9, 2))
    pos[3, 3] = pos[3, 4]                  # zero-length edges
    pos[5, 5:8] = [[2, 2], [3, 3], [4, 4]]  # collinear corners
    t, s, a = cupy_core.partition_record(pos, (10, 10))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    assert np.all((t >= 0) & (t < 64)) and np.all((s >= 0) & (s < 100))


def test_grid_nan_corner_removes_its_pixels():
    pos = corners(5, 5)
    pos[2, 3] = np.nan
    t, s, a = cupy_core.partition_record(pos, (5, 5))
    touching = {1 * 5 + 2, 1 * 5 + 3, 2 * 5 + 2, 2 * 5 + 3}
    assert set(t.tolist()) == set(range(25)) - touching


def bilinear_reference(pos, source_shape):
    """Tent-function weights max(0, 1-|dx|) max(0, 1-|dy|) to every source centre."""
    hs, ws = source_shape
    ref = {}
    flat = pos.reshape(-1, 2)
    for t, (x, y) in enumerate(flat):
        for ci in range(hs):
            for cj in range(ws):
                wgt = max(0.0, 1 - abs(x - (cj + 0.5))) * max(0.0, 1 - abs(y - (ci + 0.5)))
                if wgt > 0:
                    ref[(t, ci * ws + cj)] = wgt
    totals = {}
    for (t, k), wgt in ref.items():
        totals[k] = totals.get(k, 0.0) + wgt
    return {key: wgt / totals[key[1]] for key, wgt in ref.items()}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_particle_weights_bilinear(name):
    pos = MAPS[name](centers(8, 9))
    got = record_dict(*cupy_core.partition_record(pos, (9, 10), method="particle", at="centers"))
    assert_records_equal(got, bilinear_reference(pos, (9, 10)), tol=1e-12)


def test_particle_never_overcommits():
    pos = fold(centers(16, 16), 16, amplitude=4, period=5)
    t, s, a = cupy_core.partition_record(pos, (16, 16), method="particle", at="centers")
    per_source = np.bincount(s, a, minlength=256)
    used = per_source > 0
    np.testing.assert_allclose(per_source[used], 1.0, rtol=1e-12)


def test_particle_from_corners_uses_cell_centres():
    c = MAPS["swirl"](corners(10, 12))
    mean = (c[:-1, :-1] + c[:-1, 1:] + c[1:, :-1] + c[1:, 1:]) / 4
    a = record_dict(*cupy_core.partition_record(c, (11, 13), method="particle"))
    b = record_dict(*cupy_core.partition_record(mean, (11, 13), method="particle", at="centers"))
    assert_records_equal(a, b, tol=1e-12)


def test_affine_map_areas_are_det():
    """Interior target quads of an affine map have area |det J| in total."""
    m = [[0.9, 0.3], [-0.25, 1.1]]
    pos = affine(corners(12, 12), m, [14.3, 14.2], [6, 6])
    t, s, a = cupy_core.partition_record(pos, (40, 40))
    # The source grid is large enough to hold every quad: all areas are |det|.
    A = np.bincount(t, a, minlength=144)
    np.testing.assert_allclose(A, abs(np.linalg.det(m)), rtol=1e-12)
