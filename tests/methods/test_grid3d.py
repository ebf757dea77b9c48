"""The grid variant in 3-D (voxels): partition volumes (docs/DESIGN.md 4.1, 4.4 property 5).

Volumes are checked against an independent reference (each tetrahedron of the Kuhn
split intersected with each voxel as a convex polytope: its vertices by brute-force
enumeration of plane triples, its volume by scipy's ConvexHull), and against exact
expectations: the identity and integer translations (1 and 0 exactly), a rigid rotation
tiling the source exactly once, an affine map (|det J| per target). The documented
fail-safe for inverted, flat and NaN cells never gives a negative or NaN volume.
"""
import os
import re

import numpy as np
import pytest

import cupy_core
from cupy_core.methods import grid3d
from maps import affine, corners3, centers3, fold3, rotation3, swirl3
from references3d import orientations, reference_record

HERE = os.path.dirname(os.path.abspath(__file__))


def record_dict(t, s, a):
    out = {}
    for ti, si, ai in zip(t, s, a):
        key = (int(ti), int(si))
        assert key not in out, f"target {key[0]} names source {key[1]} twice"
        out[key] = float(ai)
    return out


def assert_records_equal(got, ref, tol):
    keys = set(got) | set(ref)
    worst = max(abs(got.get(k, 0.0) - ref.get(k, 0.0)) for k in keys)
    assert worst < tol, f"largest volume difference {worst}"


def test_tables_follow_the_kuhn_definition():
    tris, tets, corners = grid3d.kuhn_tables()
    np.testing.assert_array_equal(tris, grid3d.TRIS)
    assert tets == grid3d.TETS and corners == grid3d.TET_CORNERS
    assert sorted(grid3d.BOUNDARY + grid3d.INTERIOR) == list(range(18))
    # Boundary triangles lie on a cube face (their corners share a coordinate bit),
    # interior ones contain the main diagonal 0-7 and appear in two tetrahedra.
    for f in grid3d.BOUNDARY:
        a, b, c = grid3d.TRIS[f]
        assert any(((a >> k) & 1) == ((b >> k) & 1) == ((c >> k) & 1) for k in range(3))
    uses = {f: sum(f == g for tet in tets for g, _ in tet) for f in range(18)}
    assert all(uses[f] == (2 if f in grid3d.INTERIOR else 1) for f in range(18))


def test_kernel_tables_match_numpy():
    src = open(os.path.join(HERE, "..", "..", "cupy_core", "methods", "grid3d.cu")).read()

    def table(name):
        m = re.search(name + r"[^=]*=\s*\{(.*?)\};", src, re.S)
        return [int(v) for v in re.findall(r"-?\d+", m.group(1))]

    assert table("G3_TRIS") == grid3d.TRIS.ravel().tolist()
    assert table("G3_TETS") == [v for tet in grid3d.TETS for e in tet for v in e]
    assert table("G3_TET_CORNERS") == [v for t in grid3d.TET_CORNERS for v in t]
    assert table("G3_BOUNDARY") == list(grid3d.BOUNDARY)
    assert table("G3_BOUNDARY_SIGN") == list(grid3d.BOUNDARY_SIGN)
    assert f"#define G3_MAXV {grid3d.MAXV}" in src


# ----------------------------------------------------------------------------- exact cases

def test_identity_is_exact():
    t, s, a = cupy_core.partition_record(corners3(4, 5, 6), (4, 5, 6))
    np.testing.assert_array_equal(t, np.arange(120))
    np.testing.assert_array_equal(s, np.arange(120))
    np.testing.assert_array_equal(a, 1.0)
    # from centres too (corners by averaging, extended linearly)
    t, s, a = cupy_core.partition_record(centers3(4, 5, 6), (4, 5, 6), at="centers")
    np.testing.assert_array_equal(s, t)
    np.testing.assert_array_equal(a, 1.0)


@pytest.mark.parametrize("shift", [(2, 0, 0), (0, -1, 0), (0, 0, 3), (-1, 2, -2), (5, 0, 0)])
def test_integer_translation_is_exact(shift):
    d, h, w = 4, 5, 6
    pos = corners3(d, h, w) + np.array(shift, float)
    t, s, a = cupy_core.partition_record(pos, (d, h, w))
    np.testing.assert_array_equal(a, 1.0)              # whole voxels, exactly
    k, i, j = np.unravel_index(t, (d, h, w))
    kk, ii, jj = k + shift[2], i + shift[1], j + shift[0]
    np.testing.assert_array_equal(s, (kk * h + ii) * w + jj)
    inside = ((np.arange(d) + shift[2] >= 0) & (np.arange(d) + shift[2] < d))[:, None, None] \
        & ((np.arange(h) + shift[1] >= 0) & (np.arange(h) + shift[1] < h))[None, :, None] \
        & ((np.arange(w) + shift[0] >= 0) & (np.arange(w) + shift[0] < w))[None, None, :]
    assert set(t.tolist()) == set(np.flatnonzero(inside).tolist())


def test_subvoxel_translation_products():
    """A translation by (a, b, c) splits each voxel into products of 1-D overlaps."""
    off = np.array([0.375, 0.25, 0.625])
    t, s, a = cupy_core.partition_record(corners3(3, 3, 3) + off, (4, 4, 4))
    got = record_dict(t, s, a)
    for (p, k), vol in got.items():
        pk, pi, pj = np.unravel_index(p, (3, 3, 3))
        sk, si, sj = np.unravel_index(k, (4, 4, 4))
        frac = [1 - off[0] if sj == pj else off[0], 1 - off[1] if si == pi else off[1],
                1 - off[2] if sk == pk else off[2]]
        assert vol == pytest.approx(np.prod(frac), abs=1e-15)
    assert len(got) == 27 * 8


def test_rigid_rotation_tiles_the_source():
    """Every target volume is 1 and every source voxel is covered exactly once."""
    n, m = 18, 10                                       # targets around a 10^3 source
    R = rotation3([1.0, 2.0, 3.0], 0.5)
    pos = affine(corners3(n, n, n), R, [m / 2 - n / 2] * 3, [n / 2] * 3)
    # The target cube (half-width 9) contains the source's circumsphere (radius 8.66).
    t, s, a = cupy_core.partition_record(pos, (m, m, m))
    np.testing.assert_allclose(np.bincount(s, a, minlength=m ** 3), 1.0, atol=1e-12)
    A = np.bincount(t, a, minlength=n ** 3)
    V = [pos[b >> 2:(b >> 2) + n, (b >> 1) & 1:((b >> 1) & 1) + n, b & 1:(b & 1) + n] for b in range(8)]
    lo, hi = np.min(V, 0), np.max(V, 0)
    inside = ((lo >= 0) & (hi <= m)).all(-1).ravel()
    assert inside.sum() > 500
    np.testing.assert_allclose(A[inside], 1.0, atol=1e-12)
    assert np.all(A <= 1 + 1e-12)


@pytest.mark.parametrize("mirror", [False, True])
def test_affine_volumes_are_det(mirror):
    """Targets of an affine map have volume |det J| in total, also when it mirrors
    (every tetrahedron inverted: the fail-safe's absolute value is exact)."""
    J = np.array([[0.9, 0.3, -0.2], [-0.25, 1.1, 0.15], [0.1, -0.3, 0.8]])
    if mirror:
        J = J @ np.diag([-1.0, 1.0, 1.0])
    pos = affine(corners3(6, 7, 8), J, [12.3, 12.2, 12.1], [4, 3.5, 3])
    assert (orientations(pos) < 0).all() == mirror
    t, s, a = cupy_core.partition_record(pos, (25, 25, 25))
    np.testing.assert_allclose(np.bincount(t, a, minlength=6 * 7 * 8), abs(np.linalg.det(J)),
                               rtol=1e-12)


# ----------------------------------------------------------------------------- reference

RANDOM_CASES = {
    # name: (corner jitter amplitude, seed, cells of one orientation only?)
    "mild": (0.3, 0, True),
    "strong": (0.45, 1, None),
    "inverted": (0.9, 2, False),
}


@pytest.mark.parametrize("name", sorted(RANDOM_CASES))
def test_volumes_match_reference(name):
    amp, seed, consistent = RANDOM_CASES[name]
    r = np.random.default_rng(seed)
    pos = corners3(2, 3, 3) + r.uniform(-amp, amp, (3, 4, 4, 3)) + [0.3, 0.2, 0.1]
    o = orientations(pos)
    one_sign = ((o > 0).all(0) | (o < 0).all(0))
    if consistent is True:
        assert one_sign.all()
    elif consistent is False:
        assert (~one_sign).sum() >= 5, "fixture should hold cells with inverted tetrahedra"
    t, s, a = cupy_core.partition_record(pos, (3, 4, 4))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    assert_records_equal(record_dict(t, s, a), reference_record(pos, (3, 4, 4)), 1e-12)


def test_smooth_map_matches_reference():
    pos = swirl3(corners3(3, 3, 4), 3, 3, 4, strength=0.7, wobble=0.4) + 0.5
    t, s, a = cupy_core.partition_record(pos, (4, 4, 5))
    assert_records_equal(record_dict(t, s, a), reference_record(pos, (4, 4, 5)), 1e-12)


def test_pieces_come_in_kernel_order():
    """Per target, each source once, in (z, y, x) order (the kernel's loop order)."""
    pos = swirl3(corners3(6, 6, 6), 6, 6, 6, strength=0.8, wobble=0.7)
    t, s, a = cupy_core.partition_record(pos, (6, 6, 6))
    assert np.all(np.diff(t) >= 0)
    same = np.diff(t) == 0
    assert np.all(np.diff(s)[same] > 0)


# ----------------------------------------------------------------------------- fail-safe

def test_folded_cells_never_negative_or_nan():
    pos = fold3(corners3(8, 8, 8), amplitude=2.0, period=5.0)
    o = orientations(pos)
    assert ((o < 0).any(0) & (o > 0).any(0)).sum() > 50, "fixture should fold cells"
    t, s, a = cupy_core.partition_record(pos, (8, 8, 8))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    # Each target's volume is the sum of its six tetrahedra's |volume|, which is at
    # least |volume of the cell| (the sum of the signed ones), when wholly inside.
    signed = o.sum(0).ravel() / 6.0
    V = [pos[b >> 2:(b >> 2) + 8, (b >> 1) & 1:((b >> 1) & 1) + 8, b & 1:(b & 1) + 8] for b in range(8)]
    inside = ((np.min(V, 0) >= 0) & (np.max(V, 0) <= 8)).all(-1).ravel()
    A = np.bincount(t, a, minlength=512)
    assert np.all(A[inside] >= np.abs(signed[inside]) - 1e-12)
    unsigned = np.abs(o).sum(0).ravel() / 6.0
    np.testing.assert_allclose(A[inside], unsigned[inside], rtol=1e-11)


def test_random_garbage_corners():
    r = np.random.default_rng(3)
    pos = r.uniform(-3, 9, size=(4, 5, 5, 3))
    pos[1, 1, 1] = pos[1, 1, 2]                         # coincident corners
    pos[2, 2:5, 2] = [[1, 1, 1], [2, 2, 2], [3, 3, 3]]  # collinear corners
    t, s, a = cupy_core.partition_record(pos, (6, 6, 6))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    assert np.all((t >= 0) & (t < 64)) and np.all((s >= 0) & (s < 216))


def test_flat_and_collapsed_cells_have_no_volume():
    pos = corners3(3, 3, 3) + 0.25
    pos[..., 2] = 1.5                                   # every cell flat (z constant)
    t, s, a = cupy_core.partition_record(pos, (3, 3, 3))
    assert a.size == 0 or a.max() < 1e-15
    pos = np.full((2, 2, 2, 3), 1.3)                    # one cell collapsed to a point
    t, s, a = cupy_core.partition_record(pos, (3, 3, 3))
    assert a.size == 0


def test_nan_corner_removes_its_cells():
    pos = corners3(4, 4, 4)
    pos[2, 1, 3, 1] = np.nan
    t, s, a = cupy_core.partition_record(pos, (4, 4, 4))
    touching = {(k * 4 + i) * 4 + j for k in (1, 2) for i in (0, 1) for j in (2, 3)}
    assert set(t.tolist()) == set(range(64)) - touching
    np.testing.assert_array_equal(a, 1.0)


def test_far_positions_do_not_overflow():
    pos = corners3(3, 3, 3) + 0.5
    pos[1, 1, 1] = [1e15, -3e14, 7e300]
    pos[2, 0, 3] = [-1e308, 0.5, 0.5]
    t, s, a = cupy_core.partition_record(pos, (4, 4, 4))
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    far = set()
    for (k, i, j) in ((1, 1, 1), (2, 0, 3)):
        far |= {(kk * 3 + ii) * 3 + jj for kk in (k - 1, k) for ii in (i - 1, i) for jj in (j - 1, j)
                if 0 <= kk < 3 and 0 <= ii < 3 and 0 <= jj < 3}
    A = np.bincount(t, a, minlength=27)
    near = sorted(set(range(27)) - far)
    np.testing.assert_allclose(A[near], 1.0, rtol=1e-12)


def test_source_window_and_shapes():
    """Different target and source shapes; voxels outside the source are dropped."""
    pos = corners3(3, 4, 5) * np.array([1.5, 1.0, 0.5]) + [-1.0, 2.0, 0.25]
    t, s, a = cupy_core.partition_record(pos, (2, 7, 4))
    ref = reference_record(pos, (2, 7, 4))
    assert_records_equal(record_dict(t, s, a), ref, 1e-12)
    assert s.max() < 2 * 7 * 4 and t.max() < 60


def test_chunking_does_not_change_the_record(monkeypatch):
    """Slabs (and the threads working on them), triangle batches and aggregation
    batches (down to runs of levels inside one cell's box) are bookkeeping only: the
    record is the same to the bit."""
    pos = np.concatenate([swirl3(corners3(3, 6, 7), 3, 6, 7, strength=0.8, wobble=0.7),
                          fold3(corners3(3, 6, 7), 2.5, 5.0)[1:] + [0, 0, 3]], axis=0)
    monkeypatch.setattr(grid3d, "THREADS", 1)
    ref = cupy_core.partition_record(pos, (6, 7, 8))
    monkeypatch.setattr(grid3d, "THREADS", 3)
    monkeypatch.setattr(grid3d, "CHUNK_TARGETS", 60)
    monkeypatch.setattr(grid3d, "BATCH_TRIANGLES", 97)
    monkeypatch.setattr(grid3d, "CHUNK_PAIRS", 11)
    got = cupy_core.partition_record(pos, (6, 7, 8))
    assert got[0].size > 1000
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
