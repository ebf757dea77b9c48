"""Volume noise (cupy_core.volume): domain grids, object and velocity backward maps,
the 3-D bake loop, bad input. No Blender."""
import json

import numpy as np
import pytest

import cupy_core
from cupy_core import stats
from cupy_core.volume import (Domain, VelocityGrid, VolumeInputError, backtrace_positions,
                              bake_volume_sequence, corner_points, load_velocity_frame,
                              object_positions, rigid_positions, velocity_sequence)
from cupy_core.volume.grid import VELOCITY_PREFIX


def translate(t):
    m = np.eye(4)
    m[:3, 3] = t
    return m


def rot_z(angle, centre):
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(4)
    r[:2, :2] = [[c, -s], [s, c]]
    return translate(centre) @ r @ translate(-np.asarray(centre, float))


def chain(shape, maps, channels=2, seed=3, method="grid"):
    noise = cupy_core.white_noise(shape, channels, seed=seed, frame=0)
    out = [noise]
    for f, pos in enumerate(maps, start=1):
        noise = cupy_core.warp(noise, pos, method=method, seed=seed, frame=f, at="corners")
        out.append(noise)
    return out


# --------------------------------------------------------------------------- grids

def _blender_fluid_resolution(size, scale, res):
    """Blender's rule for a fluid domain's cells (blenkernel fluid.cc,
    manta_set_domain_from_mesh), written out independently: float32 sizes times the
    object's scale, ``res`` along the longest, int(x * res / longest + 0.5) >= 4 elsewhere."""
    size = [np.float32(abs(np.float32(a) * np.float32(s))) for a, s in zip(size, scale)]
    if size[0] >= max(size[1], size[2]):
        k = 0
    elif size[1] >= max(size[0], size[2]):
        k = 1
    else:
        k = 2
    per = np.float32(res) / size[k]
    return tuple(res if i == k else max(int(size[i] * per + np.float32(0.5)), 4)
                 for i in range(3))


@pytest.mark.parametrize("box, scale, res", [
    ((2, 2, 2), (4, 4, 2), 32),          # the case: 32 x 32 x 16, not 32^3
    ((2, 2, 2), (1, 1, 1), 32),
    ((2, 3, 1), (1, 0.5, 3), 40),        # scale changes which side is longest
    ((1, 1, 0.05), (1, 1, 1), 64),       # a slab: at least 4 cells thick
    ((3, 2, 1.7), (-1, 1, 1), 21),       # mirrored
    ((1, 1, 1), (1, 1, 1.0000001), 17),
])
def test_domain_voxels_follow_blenders_fluid_rule(box, scale, res):
    """A scaled domain gets cubic voxels in the world, with the same cell counts as
    Blender's fluid domain of that box and scale (so they match its cache 1:1)."""
    m = np.diag([*scale, 1.0])
    d = Domain.from_box((0, 0, 0), box, res, matrix=m)
    want = _blender_fluid_resolution(box, scale, res)
    assert d.shape == want[::-1]
    vs = np.array(d.voxel_size)
    if min(want) > 4:                    # cubic up to the rounding of the counts
        assert vs.max() / vs.min() < 1 + 1.0 / min(want)
    d2 = Domain.from_box((0, 0, 0), box, res, matrix=np.eye(4), scale=scale)
    assert d2.shape == d.shape           # Blender's Object.scale given explicitly


def test_domain_from_box_and_axes():
    m = translate((1, 2, 3))
    d = Domain.from_box((-1, -1, 0), (3, 1, 2), 8, matrix=m)
    assert d.shape == (4, 4, 8)                    # (D, H, W) = (z, y, x) counts
    np.testing.assert_allclose(d.corners_world()[0, 0, 0], (0, 1, 3))
    np.testing.assert_allclose(d.corners_world()[-1, -1, -1], (4, 3, 5))
    # voxel (k, i, j) = (1, 0, 2) has its centre at x = j + .5, y = i + .5, z = k + .5
    np.testing.assert_allclose(d.centers_world()[1, 0, 2], (0 + 2.5 * .5, 1 + .25, 3 + .75))
    assert d.voxel_size == (0.5, 0.5, 0.5)
    assert corner_points((1, 2, 3)).shape == (2, 3, 4, 3)
    with pytest.raises(VolumeInputError, match="positive size"):
        Domain.from_box((0, 0, 0), (1, 0, 1), 8)
    with pytest.raises(VolumeInputError, match="resolution"):
        Domain.from_box((0, 0, 0), (1, 1, 1), 0)


# --------------------------------------------------------------------------- objects

@pytest.mark.parametrize("method", ["grid", "particle"])
def test_rigid_translation_carries_noise_exactly(method):
    shape = (6, 7, 8)
    dom = Domain.from_box((0, 0, 0), (8 * .5, 7 * .5, 6 * .5), 8)   # voxel size 0.5
    step = np.array([2, -1, 1]) * 0.5                               # (2, -1, 1) voxels
    maps = [rigid_positions(dom, dom, translate(step * f), translate(step * (f - 1)))
            for f in range(1, 3)]
    np.testing.assert_allclose(maps[0], corner_points(shape) - (2, -1, 1), atol=1e-12)
    frames = chain(shape, maps, method=method)
    # frame 1 voxel (k, i, j) holds frame 0's voxel (k-1, i+1, j-2)
    np.testing.assert_allclose(frames[1][1:, :-1, 2:], frames[0][:-1, 1:, :-2], atol=1e-6)
    np.testing.assert_allclose(frames[2][2:, :-2, 4:], frames[0][:-2, 2:, :-4], atol=1e-6)


def test_rigid_rotation_quarter_turn_permutes_voxels():
    shape = (4, 6, 6)
    dom = Domain(shape, np.eye(4))
    centre = (3, 3, 0)
    pos = rigid_positions(dom, dom, rot_z(np.pi / 2, centre), np.eye(4))
    prior, new = chain(shape, [pos], channels=3)
    # world (x, y) comes from M^-1 (x, y) = (y, 6 - x): new[k, i, j] = prior[k, 6-1-j, i]
    expect = np.transpose(prior, (0, 2, 1, 3))[:, :, ::-1]
    np.testing.assert_allclose(new, expect, atol=1e-5)


def test_rigid_rotation_matches_core_and_moving_domain():
    shape = (8, 8, 8)
    dom = Domain.from_box((-1, -1, -1), (1, 1, 1), 8)
    ang = 0.2
    m = lambda f: translate((0.1 * f, 0, 0)) @ rot_z(ang * f, (0, 0, 0))
    pos = rigid_positions(dom, dom, m(3), m(2))
    # analytic: world p -> R(-ang) (p - (0.3,0,0)) + (0.2,0,0)
    p = dom.corners_world()
    c, s = np.cos(-ang), np.sin(-ang)
    q = p - (0.3, 0, 0)
    q = np.stack([c * q[..., 0] - s * q[..., 1], s * q[..., 0] + c * q[..., 1], q[..., 2]], -1)
    q += (0.2, 0, 0)
    np.testing.assert_allclose(pos, (q + 1) * 4, atol=1e-12)
    # a domain moving with the object: the noise is fixed in the domain (identity map)
    moved = lambda f: Domain(shape, m(f) @ dom.voxel_to_world)
    ident = object_positions(moved(3), moved(2), [(m(3), m(2), None)])
    np.testing.assert_allclose(ident, corner_points(shape), atol=1e-12)
    prior, new = chain(shape, [ident])
    np.testing.assert_allclose(new, prior, atol=1e-6)


def test_follow_inside_box_only():
    shape = (4, 4, 8)
    dom = Domain(shape, np.eye(4))
    obj_now, obj_prev = translate((1, 0, 0)), np.eye(4)
    pos = object_positions(dom, dom, [(obj_now, obj_prev, ((0, 0, 0), (3, 4, 4)))],
                           follow="inside")
    cp = corner_points(shape)
    inside = (cp[..., 0] >= 1) & (cp[..., 0] <= 4)
    np.testing.assert_allclose(pos[inside], cp[inside] - (1, 0, 0))
    np.testing.assert_allclose(pos[~inside], cp[~inside])
    with pytest.raises(VolumeInputError, match="follow"):
        object_positions(dom, dom, [(obj_now, obj_prev, None)], follow="some")
    with pytest.raises(VolumeInputError, match="at least one object"):
        object_positions(dom, dom, [])


# --------------------------------------------------------------------------- velocity

def test_uniform_velocity_backtrace_is_translation_and_units():
    shape = (5, 6, 7)
    dom = Domain.from_box((0, 0, 0), (7, 6, 5), 7)                 # unit voxels
    vel = np.broadcast_to(np.array([1.0, 2.0, -1.0]), shape + (3,))
    for units, fps, scale in (("frame", None, 1.0), ("second", 24, 24.0)):
        vg = VelocityGrid(vel * scale, dom.voxel_to_world, units=units, fps=fps)
        pos = backtrace_positions(dom, dom, vg)
        np.testing.assert_allclose(pos, corner_points(shape) - (1, 2, -1), atol=1e-12)
    with pytest.raises(VolumeInputError, match="fps"):
        VelocityGrid(vel, dom.voxel_to_world, units="second")


def test_rotational_velocity_rk2_is_close_to_rotation():
    shape = (4, 16, 16)
    dom = Domain.from_box((-1, -1, -.25), (1, 1, .25), 16)
    w = 0.05                                                       # radians per frame
    c = dom.centers_world()
    vel = np.stack([-w * c[..., 1], w * c[..., 0], 0 * c[..., 0]], -1)
    pos = backtrace_positions(dom, dom, VelocityGrid(vel, dom.voxel_to_world), substeps=4)
    exact = rigid_positions(dom, dom, rot_z(w, (0, 0, 0)), np.eye(4))
    inner = (slice(None), slice(1, -1), slice(1, -1))   # the border is edge-extended
    assert np.abs(pos - exact)[inner].max() < 1e-3 * 8  # RK2 error, in voxels (radius 8)


def divergence_free(dom, amp):
    """A Taylor-Green-like field (div v = 0) in world units per frame."""
    c = dom.centers_world() * np.pi
    return np.stack([amp * np.sin(c[..., 0]) * np.cos(c[..., 1]),
                     -amp * np.cos(c[..., 0]) * np.sin(c[..., 1]),
                     0.3 * amp * np.sin(c[..., 0] + c[..., 1])], -1)


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_divergence_free_chain_stays_white(method):
    shape = (12, 12, 12)
    dom = Domain.from_box((0, 0, 0), (2, 2, 2), 12)
    vg = VelocityGrid(divergence_free(dom, 0.07), dom.voxel_to_world)
    pos = backtrace_positions(dom, dom, vg, substeps=2)
    frames = chain(shape, [pos] * 40, channels=4, method=method)
    for f, noise in enumerate(frames):     # every frame (frames are correlated in time,
        ok, why = stats.check_white(noise)  # so each is checked on its own)
        assert ok, (f, why)
    # it moved: the noise is carried, not refreshed
    assert stats.carried_correlation(frames[39], frames[40]) > 0.5


# --------------------------------------------------------------------------- on disk

def test_velocity_sequence_on_disk(tmp_path):
    shape = (2, 3, 4)
    for f in (1, 2, 4):
        np.save(tmp_path / f"{VELOCITY_PREFIX}_{f:04d}.npy", np.zeros(shape + (3,), np.float32))
    files = velocity_sequence(str(tmp_path), [1, 2])
    assert load_velocity_frame(files[2], shape).shape == shape + (3,)
    with pytest.raises(VolumeInputError, match=r"no file for frame\(s\) 3"):
        velocity_sequence(str(tmp_path), [1, 2, 3, 4])
    pattern = str(tmp_path / "velocity_####.npy")
    assert velocity_sequence(pattern, [4])[4].endswith("velocity_0004.npy")
    with pytest.raises(VolumeInputError, match=r"\(D, H, W\); the domain is \(2, 3, 5\)"):
        load_velocity_frame(files[1], (2, 3, 5))
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4, 2)))
    with pytest.raises(VolumeInputError, match=r"expected \(D, H, W, 3\)"):
        load_velocity_frame(str(tmp_path / "bad.npy"))
    with pytest.raises(VolumeInputError, match="does not exist"):
        load_velocity_frame(str(tmp_path / "nope.npy"))
    with pytest.raises(VolumeInputError, match=r"\(D, H, W, 3\)"):
        VelocityGrid(np.zeros((2, 3, 4)), np.eye(4))
    # .vdb frames count too; a .npy of the same frame wins
    (tmp_path / "velocity_0003.vdb").write_bytes(b"")
    (tmp_path / "velocity_0004.vdb").write_bytes(b"")
    files = velocity_sequence(str(tmp_path), [1, 2, 3, 4])
    assert files[3].endswith("velocity_0003.vdb") and files[4].endswith("velocity_0004.npy")


def test_bake_volume_matches_chain_and_resumes(tmp_path):
    shape = (4, 5, 6)
    dom = Domain(shape, np.eye(4))
    maps = [rigid_positions(dom, dom, rot_z(0.1 * f, (3, 2.5, 0)),
                            rot_z(0.1 * (f - 1), (3, 2.5, 0))) for f in range(1, 5)]
    expect = chain(shape, maps, channels=3, seed=5)
    seen = []
    res = bake_volume_sequence(maps, tmp_path / "a", shape=shape, channels=3, seed=5,
                               first_frame=0, on_frame=lambda f, n: seen.append(f))
    assert res.frames == [0, 1, 2, 3, 4] and seen == res.frames
    for f in res.frames:
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f"noise_{f:04d}.npy"), expect[f])
    assert np.load(res.latents_path).shape == (5, 4, 5, 6, 3)
    assert json.loads((tmp_path / "a" / "bake.json").read_text())["status"] == "complete"

    class Failing:
        def __len__(self):
            return len(maps)

        def __getitem__(self, t):
            if t == 2:
                raise VolumeInputError("velocity frame 3 is missing")
            return maps[t]

    with pytest.raises(VolumeInputError, match="frame 3"):
        bake_volume_sequence(Failing(), tmp_path / "b", shape=shape, channels=3, seed=5)
    kept = sorted(p.name for p in (tmp_path / "b").glob("noise_*.npy"))
    assert kept == ["noise_0000.npy", "noise_0001.npy", "noise_0002.npy"]
    assert json.loads((tmp_path / "b" / "bake.json").read_text())["status"] == "in progress"
    res = bake_volume_sequence(maps, tmp_path / "b", shape=shape, channels=3, seed=5)
    assert res.resumed_frames == 3
    for f in res.frames:
        np.testing.assert_array_equal(np.load(tmp_path / "b" / f"noise_{f:04d}.npy"), expect[f])
    with pytest.raises(ValueError, match="have shape"):
        bake_volume_sequence([np.zeros((2, 2, 2, 3))], tmp_path / "c", shape=shape)
