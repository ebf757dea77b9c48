"""Volume noise in Blender: object motion, velocity sequences, fluid caches (fixtures
written here: Mantaflow does not run under bpy from PyPI), OpenVDB output (bpy 4.5+;
skipped with the reason on 4.2), bad input."""
import json
import os

import bpy
import numpy as np
import pytest

import cupy_core
from blender_addon import vdb as V
import fixtures as F
from blender_addon.errors import BakeError
from blender_addon.bake import BakeSettings, run_bake
from cupy_core.volume import Domain, corner_points, rigid_positions

needs_vdb = pytest.mark.skipif(not V.available(), reason=str(V.why_unavailable()))


@pytest.fixture
def scene(domain_scene):
    return domain_scene


def animate(name, frames, loc, rot_z=lambda f: 0.0):
    ob = bpy.data.objects.new(name, None)
    bpy.context.scene.collection.objects.link(ob)
    for f in frames:
        ob.location = loc(f)
        ob.rotation_euler = (0, 0, rot_z(f))
        ob.keyframe_insert("location", frame=f)
        ob.keyframe_insert("rotation_euler", frame=f)
    return ob


def mat(loc, ang):
    c, s = np.cos(ang), np.sin(ang)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = loc
    return m


def frames_of(out, frames):
    return [np.load(os.path.join(out, f"noise_{f:04d}.npy")) for f in frames]


def test_object_translation_and_rotation_follow_core(scene, tmp_path):
    loc = lambda f: (0.25 * f, 0.1 * f, 0.0)
    ang = lambda f: 0.15 * f
    animate("Mover", range(1, 5), loc, ang)
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", motion_objects=("Mover",),
                       resolution=8, channels=2, seed=4, vdb=False)
    res = run_bake(scene, s)
    assert res.frames == [1, 2, 3, 4] and res.noise_shape == (8, 8, 8, 2)
    dom = Domain.from_box((-1, -1, -1), (1, 1, 1), 8, mat((1, 0, 0), 0))
    got = frames_of(str(tmp_path), res.frames)
    noise = cupy_core.white_noise((8, 8, 8), 2, seed=4, frame=1)
    np.testing.assert_array_equal(got[0], noise)
    for f in (2, 3, 4):
        pos = rigid_positions(dom, dom, mat(loc(f), ang(f)), mat(loc(f - 1), ang(f - 1)))
        noise = cupy_core.warp(noise, pos, seed=4, frame=f, at="corners")
        np.testing.assert_allclose(got[f - 1], noise, atol=1e-4)


def test_pure_translation_shifts_voxels_exactly(scene, tmp_path):
    animate("Mover", range(1, 5), lambda f: (0.25 * f, 0, -0.25 * f))   # (+1, 0, -1) voxels
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", motion_objects=("Mover",),
                       resolution=8, channels=1, vdb=False)
    a, b = frames_of(str(tmp_path), run_bake(scene, s).frames)[:2]
    np.testing.assert_allclose(b[:-1, :, 1:], a[1:, :, :-1], atol=1e-5)


def write_velocity(folder, frames, shape, v):
    os.makedirs(folder, exist_ok=True)
    for f in frames:
        np.save(os.path.join(folder, f"velocity_{f:04d}.npy"),
                np.broadcast_to(np.asarray(v, np.float32), tuple(shape) + (3,)).copy())


def test_velocity_sequence_and_bad_input_keeps_written_frames(scene, tmp_path):
    vel = str(tmp_path / "vel")
    write_velocity(vel, (2, 3, 4), (8, 8, 8), (0.25 * 24, 0, 0))      # 1 voxel/frame
    out = str(tmp_path / "out")
    s = BakeSettings(source="volume", out_dir=out, domain="Domain", volume_motion="velocity", velocity_path=vel,
                       velocity_units="second", resolution=8, channels=1, vdb=False)
    a, b = frames_of(out, run_bake(scene, s).frames)[:2]
    np.testing.assert_allclose(b[:, :, 1:], a[:, :, :-1], atol=1e-5)
    # a wrong-shaped frame 3: a clear error, frames 1 and 2 stay whole, resumable
    np.save(os.path.join(vel, "velocity_0003.npy"), np.zeros((8, 8, 4, 3), np.float32))
    out2 = str(tmp_path / "out2")
    s.out_dir = out2
    with pytest.raises(BakeError, match=r"frame 3: .*velocity_0003.npy.*the domain is \(8, 8, 8\)"):
        run_bake(scene, s)
    assert sorted(os.listdir(out2)) == ["bake.json", "noise_0001.npy", "noise_0002.npy"]
    np.testing.assert_array_equal(np.load(os.path.join(out2, "noise_0002.npy")), b)
    assert json.load(open(os.path.join(out2, "bake.json")))["status"] == "in progress"
    # a missing frame: an error naming it before anything is written
    os.remove(os.path.join(vel, "velocity_0004.npy"))
    s.out_dir = str(tmp_path / "out3")
    with pytest.raises(BakeError, match=r"no file for frame\(s\) 4"):
        run_bake(scene, s)
    assert not os.path.exists(s.out_dir)        # a refused bake writes nothing


def test_no_domain_is_a_clear_error(scene, tmp_path):
    for domain in ("", "Nope"):
        s = BakeSettings(source="volume", out_dir=str(tmp_path), domain=domain, motion_objects=("Domain",))
        with pytest.raises(BakeError, match="domain"):
            run_bake(scene, s)
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", volume_motion="fluid")
    with pytest.raises(BakeError, match="not a fluid domain"):
        run_bake(scene, s)
    assert not os.listdir(tmp_path)


def test_without_openvdb_npy_only_and_says_why(scene, tmp_path):
    if V.available():
        pytest.skip("this Blender bundles openvdb")
    msgs = []
    animate("Mover", range(1, 5), lambda f: (0, 0, 0))
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", motion_objects=("Mover",),
                       resolution=4, channels=1)
    res = run_bake(scene, s, log=msgs.append)
    assert not res.vdb and "openvdb" in res.vdb_note and msgs
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".vdb")]
    # a fluid cache cannot be read at all: a clear error before anything is written
    cache = tmp_path / "cache"
    os.makedirs(cache / "data")
    for f in (2, 3, 4):
        (cache / "data" / f"fluid_data_{f:04d}.vdb").write_bytes(b"")
    s = BakeSettings(source="volume", out_dir=str(tmp_path / "fluid"), domain="Domain", volume_motion="fluid",
                       fluid_cache=str(cache), resolution=4)
    with pytest.raises(BakeError, match="openvdb module"):
        run_bake(scene, s)
    assert not os.path.exists(tmp_path / "fluid" / "noise_0001.npy")


@needs_vdb
def test_vdb_round_trip_lossless_and_oriented(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((3, 4, 5, 3)).astype(np.float32)
    noise[0, 0, 0, 0] = 0.0                              # the grid background value
    noise[2, 1, 3, 1] = 42.0                             # voxel (k, i, j) = (2, 1, 3)
    dom = Domain.from_box((-1, -1, -1), (1, 1, 1), 5, mat((1, 2, 3), 0.3))
    path = V.write_noise_vdb(str(tmp_path / "n.vdb"), noise, dom.voxel_to_world)
    back, m = F.read_noise_vdb(path)
    np.testing.assert_array_equal(back, noise)
    np.testing.assert_allclose(m, dom.voxel_to_world, atol=1e-9)
    grids, _ = V.openvdb().readAll(path)
    g = {x.name: x for x in grids}["noise_1"]
    assert g.getConstAccessor().getValue((3, 1, 2)) == 42.0      # OpenVDB index (x, y, z)
    np.testing.assert_allclose(g.transform.indexToWorld((3, 1, 2)),
                               dom.centers_world()[2, 1, 3], atol=1e-6)


@needs_vdb
def test_fluid_cache_velocity_and_volume_object(scene, tmp_path):
    # A Fluid modifier would run Mantaflow on frame_set (it aborts under bpy from PyPI,
    # BLENDER_FACTS 8): the cache folder is given directly, laid out as Blender's.
    cache = tmp_path / "cache"
    os.makedirs(cache / "data")
    grid = Domain.from_box((-1, -1, -1), (1, 1, 1), 6, mat((1, 0, 0), 0))   # its own grid
    v = np.broadcast_to(np.float32([0, 0.25 * 24, 0]), (6, 6, 6, 3))       # 1 voxel/frame in y
    for f in (2, 3, 4):
        F.write_velocity_vdb(str(cache / "data" / f"fluid_data_{f:04d}.vdb"), v,
                             grid.voxel_to_world, name="vel")
    out = str(tmp_path / "out")
    s = BakeSettings(source="volume", out_dir=out, domain="Domain", volume_motion="fluid", velocity_units="second",
                       fluid_cache=str(cache), resolution=8, channels=2)
    res = run_bake(scene, s)
    a, b = frames_of(out, res.frames)[:2]
    np.testing.assert_allclose(b[:, 1:], a[:, :-1], atol=1e-5)
    back, _ = F.read_noise_vdb(os.path.join(out, "noise_0002.vdb"))
    np.testing.assert_array_equal(back, b)
    ob = bpy.data.objects["Warped noise volume"]
    scene.frame_set(3)
    ob.data.grids.load()
    assert os.path.basename(ob.data.grids.frame_filepath) == "noise_0003.vdb"
    assert sorted(g.name for g in ob.data.grids) == ["noise_0", "noise_1"]
    # a cache frame without a velocity grid, and a missing one
    V.openvdb().write(str(cache / "data" / "fluid_data_0004.vdb"), [V.openvdb().FloatGrid()])
    s.out_dir = str(tmp_path / "out2")
    with pytest.raises(BakeError, match="no Vec3 velocity grid"):
        run_bake(scene, s)
    assert os.path.isfile(os.path.join(s.out_dir, "noise_0003.npy"))
    os.remove(cache / "data" / "fluid_data_0003.vdb")
    with pytest.raises(BakeError, match=r"no velocity file for frame\(s\) 3"):
        run_bake(scene, s)


def test_velocity_sequence_of_vdb_files(scene, tmp_path):
    vel = tmp_path / "vel"
    os.makedirs(vel)
    grid = Domain.from_box((-1, -1, -1), (1, 1, 1), 4, mat((1, 0, 0), 0))   # its own grid
    if not V.available():
        (vel / "velocity_0002.vdb").write_bytes(b"")
        s = BakeSettings(source="volume", out_dir=str(tmp_path / "out"), domain="Domain", volume_motion="velocity",
                           velocity_path=str(vel), frame_end=2, vdb=False)
        with pytest.raises(BakeError, match="openvdb"):
            run_bake(scene, s)
        return
    v = np.broadcast_to(np.float32([0, 0, -0.25]), (4, 4, 4, 3))       # -1 voxel/frame in z
    for f in (2, 3, 4):
        F.write_velocity_vdb(str(vel / f"velocity_{f:04d}.vdb"), v, grid.voxel_to_world)
    out = str(tmp_path / "out")
    s = BakeSettings(source="volume", out_dir=out, domain="Domain", volume_motion="velocity", velocity_path=str(vel),
                       resolution=8, channels=1, vdb=False)
    a, b = frames_of(out, run_bake(scene, s).frames)[:2]
    np.testing.assert_allclose(b[:-1], a[1:], atol=1e-5)


def test_fluid_cache_frame_offset(scene, tmp_path):
    from blender_addon.readers import volume as R
    data = tmp_path / "cache" / "data"
    os.makedirs(data)
    for f in (10, 11, 12):
        (data / f"fluid_data_{f:04d}.vdb").write_bytes(b"")
    dom = bpy.data.objects["Domain"]
    files = R.fluid_cache_files(dom, [2, 3, 4], str(tmp_path / "cache"), offset=-8)
    assert {f: os.path.basename(p) for f, p in files.items()} == {
        2: "fluid_data_0010.vdb", 3: "fluid_data_0011.vdb", 4: "fluid_data_0012.vdb"}
    with pytest.raises(BakeError, match=r"frame\(s\) 5 \(with the cache offset -8\)"):
        R.fluid_cache_files(dom, [4, 5], str(tmp_path / "cache"), offset=-8)
    assert len(R.fluid_cache_files(dom, [10], str(tmp_path / "cache"))) == 1   # no modifier: 0


def test_scaled_domain_gets_cubic_voxels(scene, tmp_path):
    """A domain box scaled (4, 4, 2) gets 32 x 32 x 16 voxels, cubic in the world, as
    Blender's fluid domain gives that box (blenkernel fluid.cc), not 32^3 voxels
    squashed 2:1; bake.json records the voxel size."""
    dom = bpy.data.objects["Domain"]
    dom.scale = (4, 4, 2)
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", motion_objects=("Domain",),
                       resolution=32, channels=1, seed=0, vdb=False)
    res = run_bake(scene, s)
    assert res.noise_shape == (16, 32, 32, 1)              # (D, H, W, C): z has 16
    info = json.loads((tmp_path / "bake.json").read_text())
    np.testing.assert_allclose(info["source"]["voxel_size"], [0.25, 0.25, 0.25])
    assert info["source"]["voxels"] == [32, 32, 16]


@needs_vdb
def test_no_resume_rewrites_every_vdb(scene, tmp_path):
    """--no-resume over a volume bake with another seed: every noise_XXXX.vdb holds the
    new noise (a VDB was written only when missing before, so all kept the old seed's)."""
    animate("Mover", range(1, 5), lambda f: (0.2 * f, 0, 0))
    kw = dict(source="volume", out_dir=str(tmp_path), domain="Domain",
              motion_objects=("Mover",), resolution=4, channels=2)
    run_bake(scene, BakeSettings(seed=0, **kw))
    run_bake(scene, BakeSettings(seed=1, resume=False, **kw))
    for f in range(1, 5):
        noise, _ = F.read_noise_vdb(str(tmp_path / f"noise_{f:04d}.vdb"))
        np.testing.assert_array_equal(noise, np.load(tmp_path / f"noise_{f:04d}.npy"))
    assert json.loads((tmp_path / "bake.json").read_text())["seed"] == 1
