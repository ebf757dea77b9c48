"""Volume noise moved by a lattice or an armature (the probe in readers/volume.py),
checked against maps built from Blender's matrices and closed forms, and Blender's
fluid-cache layout (fixtures written here)."""
import math
import os

import bpy
import numpy as np
import pytest
from mathutils import Matrix

import cupy_core
from blender_addon import vdb as V
import fixtures as F
from blender_addon.errors import BakeError
from blender_addon.bake.scene_changes import DeformationProbe
from blender_addon.readers import volume as R
from blender_addon.bake import BakeSettings, run_bake
from cupy_core.volume import Domain, frame_length, object_positions, rigid_positions

needs_vdb = pytest.mark.skipif(not V.available(), reason=str(V.why_unavailable()))


@pytest.fixture
def scene(domain_scene):
    return domain_scene


def lattice(name="Lattice", location=(1, 0, 0), size=4.0, n=4):
    lt = bpy.data.lattices.new(name)
    lt.points_u = lt.points_v = lt.points_w = n
    # linear interpolation reproduces linear point offsets exactly (B-splines only inside)
    lt.interpolation_type_u = lt.interpolation_type_v = lt.interpolation_type_w = "KEY_LINEAR"
    ob = bpy.data.objects.new(name, lt)
    bpy.context.scene.collection.objects.link(ob)
    ob.location = location
    ob.scale = (size, size, size)
    return ob


def domain_at(scene, frame, resolution):
    scene.frame_set(frame)
    return R.domain_grid(bpy.data.objects["Domain"], resolution)


def probe_positions(scene, mover, frame, resolution=8, follow="all"):
    probe = DeformationProbe(scene, mover, 1)
    try:
        dom = domain_at(scene, frame, resolution)
        d = probe.sample(frame, dom.corners_world())
        scene.frame_set(frame)
        m_now = R.matrix_world(mover)
        return dom, object_positions(dom, dom, [(m_now, m_now, None, d)], follow=follow)
    finally:
        probe.remove()


def test_rigidly_moving_lattice_matches_its_matrices(scene):
    ob = lattice()
    for f in range(1, 5):
        ob.location = (1 + 0.2 * f, 0.1 * f, 0.0)
        ob.rotation_euler = (0, 0, 0.2 * f)
        ob.keyframe_insert("location", frame=f)
        ob.keyframe_insert("rotation_euler", frame=f)
    dom, got = probe_positions(scene, ob, 3)
    scene.frame_set(3)
    m3 = R.matrix_world(ob)
    scene.frame_set(2)
    m2 = R.matrix_world(ob)
    ref = rigid_positions(dom, dom, m3, m2)
    ok = np.isfinite(got).all(-1)
    assert ok.all()                                    # the probe covers every corner
    np.testing.assert_allclose(got, ref, atol=2e-5)    # float32 mesh coordinates
    assert "cupy_noise_probe" not in bpy.data.objects and \
        "cupy_noise_probe" not in bpy.data.meshes


def test_lattice_shape_key_scaling_is_the_closed_form(scene):
    ob = lattice()
    ob.shape_key_add(name="Basis")
    grow = ob.shape_key_add(name="Grow")
    for p in grow.data:
        p.co = p.co * 1.25                              # local: about the lattice centre
    values = {1: 0.0, 2: 0.3, 3: 0.55, 4: 1.0}
    for f, v in values.items():
        grow.value = v
        grow.keyframe_insert("value", frame=f)
    centre = np.array([1.0, 0, 0])
    scale = {f: 1 + 0.25 * v for f, v in values.items()}
    dom, got = probe_positions(scene, ob, 3)
    world = dom.corners_world()
    expect_world = centre + scale[2] / scale[3] * (world - centre)
    expect = expect_world @ np.linalg.inv(dom.voxel_to_world)[:3, :3].T + \
        np.linalg.inv(dom.voxel_to_world)[:3, 3]
    np.testing.assert_allclose(got, expect, atol=2e-5)


def bone_armature(name="Rig", head=(1, 0, -1), tail=(1, 0, 1), radius=10.0):
    arm = bpy.data.armatures.new(name)
    ob = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    bpy.ops.object.mode_set(mode="EDIT")
    b = arm.edit_bones.new("Bone")
    b.head, b.tail = head, tail
    b.head_radius = b.tail_radius = radius          # every probe point: weight 1
    b.envelope_distance = 1.0
    bpy.ops.object.mode_set(mode="OBJECT")
    return ob


def test_armature_bone_rotation_follows_the_bone_matrices(scene):
    ob = bone_armature()
    pb = ob.pose.bones["Bone"]
    pb.rotation_mode = "XYZ"
    for f in range(1, 5):
        pb.rotation_euler = (0, 0.25 * f, 0)            # about the bone (world z) axis
        pb.keyframe_insert("rotation_euler", frame=f)
    dom, got = probe_positions(scene, ob, 3)

    def deform(frame):                                  # linear blend of one bone, weight 1
        scene.frame_set(frame)
        a = np.array(ob.matrix_world)
        obe = ob.evaluated_get(bpy.context.evaluated_depsgraph_get())
        pbe = obe.pose.bones["Bone"]
        m = np.array(pbe.matrix) @ np.linalg.inv(np.array(pbe.bone.matrix_local))
        return a @ m @ np.linalg.inv(a)

    ref = rigid_positions(dom, dom, deform(3), deform(2))
    np.testing.assert_allclose(got, ref, atol=2e-5)
    # and that is a rotation by -0.25 about the vertical line through the head (1, 0)
    th = 0.25
    world = dom.corners_world()
    rel = world[..., :2] - [1, 0]
    back = np.stack([math.cos(th) * rel[..., 0] - math.sin(th) * rel[..., 1],
                     math.sin(th) * rel[..., 0] + math.cos(th) * rel[..., 1]], -1)
    back2 = np.stack([math.cos(-th) * rel[..., 0] - math.sin(-th) * rel[..., 1],
                      math.sin(-th) * rel[..., 0] + math.cos(-th) * rel[..., 1]], -1)
    got_world = got @ dom.voxel_to_world[:3, :3].T + dom.voxel_to_world[:3, 3]
    err = min(np.abs(got_world[..., :2] - [1, 0] - back).max(),
              np.abs(got_world[..., :2] - [1, 0] - back2).max())
    assert err < 1e-4
    np.testing.assert_allclose(got_world[..., 2], world[..., 2], atol=1e-5)


def test_lattice_bake_end_to_end_restores_the_scene(scene, tmp_path):
    ob = lattice()
    for f in range(1, 5):
        ob.location = (1 + 0.25 * f, 0, 0)             # one voxel (0.25) per frame in x
        ob.keyframe_insert("location", frame=f)
    scene.frame_set(2)
    objects_before = sorted(o.name for o in bpy.data.objects)
    s = BakeSettings(source="volume", out_dir=str(tmp_path), domain="Domain", motion_objects=("Lattice",),
                       resolution=8, channels=1, vdb=False)
    res = run_bake(scene, s)
    a, b = (np.load(tmp_path / f"noise_{f:04d}.npy") for f in (1, 2))
    np.testing.assert_allclose(b[:, :, 1:], a[:, :, :-1], atol=1e-4)
    assert scene.frame_current == 2
    assert sorted(o.name for o in bpy.data.objects) == objects_before
    assert "cupy_noise_probe" not in bpy.data.meshes
    import json
    meta = json.load(open(tmp_path / "bake.json"))
    assert meta["source"]["deformers"] == ["Lattice"] and meta["source"]["vdb"] is False
    # cancelled half-way: frames on disk stay whole, the probe is gone, frame restored
    s.out_dir = str(tmp_path / "again")
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    from blender_addon.bake import BakeCancelled
    with pytest.raises(BakeCancelled):
        run_bake(scene, s, cancelled=cancelled)
    assert scene.frame_current == 2 and "cupy_noise_probe" not in bpy.data.objects
    assert res.frames == [1, 2, 3, 4]


# --------------------------------------------------------------------------- fluid cache

@needs_vdb
def test_blender_fluid_cache_layout_units_and_placement(scene, tmp_path):
    dom_ob = bpy.data.objects["Domain"]
    dom_ob.rotation_euler = (0, 0, math.pi / 2)        # local y -> world -x
    dom_ob.scale = (1.5, 1.5, 1.5)
    cache = tmp_path / "cache"
    os.makedirs(cache / "data")
    res = (6, 6, 6)                                     # Mantaflow's cells: 1/3 local unit
    scene.render.fps = 20          # frame_length 1/8: the stored float32 value is exact
    fps = scene.render.fps / scene.render.fps_base
    # one noise voxel (0.25 local) per frame along local y, in cells per time unit
    c = 0.25 / (1 / 3) / frame_length(fps)
    raw = np.zeros(res[::-1] + (3,), np.float32)
    raw[..., 1] = c
    for f in (2, 3, 4):
        F.write_mantaflow_velocity(str(cache / "data" / f"fluid_data_{f:04d}.vdb"), raw,
                                   voxel_size=2 * 1.5 / 6)
    out = str(tmp_path / "out")
    s = BakeSettings(source="volume", out_dir=out, domain="Domain", volume_motion="fluid", fluid_cache=str(cache),
                       resolution=8, channels=1, vdb=False)
    result = run_bake(scene, s)
    a, b = (np.load(os.path.join(out, f"noise_{f:04d}.npy")) for f in (1, 2))
    # noise axes are the domain's local axes: +1 voxel along y (i), whatever the rotation
    np.testing.assert_allclose(b[:, 1:], a[:, :-1], atol=1e-5)
    import json
    meta = json.load(open(os.path.join(out, "bake.json")))
    assert meta["source"]["fluid"]["format"] == "mantaflow"
    assert meta["source"]["fluid"]["resolution"] == [6, 6, 6]
    assert result.frames == [1, 2, 3, 4]
    # forcing the world layout on the same files reads them differently (no placement)
    s.out_dir, s.fluid_format = str(tmp_path / "world"), "world"
    run_bake(scene, s)
    w = np.load(os.path.join(s.out_dir, "noise_0002.npy"))
    assert np.abs(w - b).max() > 0.1
    s.fluid_format = "nonsense"
    with pytest.raises(BakeError, match="auto, mantaflow or world"):
        s.out_dir = str(tmp_path / "bad")
        run_bake(scene, s)


def test_twist_sample_scene_headless_stays_white_and_moves(tmp_path):
    import blender_scenes
    from blender_addon import headless
    from cupy_core import stats
    blend = blender_scenes.save("twist", str(tmp_path / "twist.blend"))
    out = tmp_path / "out"
    code = headless.main(["--out", str(out), "--source", "volume", "--domain", "Smoke Domain",
                          "--motion-object", "Twister", "--resolution", "16",
                          "--channels", "2", "--device", "cpu", "--no-vdb"], blend_file=blend)
    assert code == 0
    frames = [np.load(out / f"noise_{f:04d}.npy") for f in range(1, 13)]
    for f, noise in enumerate(frames, start=1):
        ok, why = stats.check_white(noise)
        assert ok, (f, why)
    # the noise is carried, not redrawn (redrawn: corr ~ 0 with SE 1/sqrt(8192) = 0.011),
    # and it moves (the lattice drifts 0.36 voxels a frame and twists): corr well below 1
    c = stats.carried_correlation(frames[5], frames[6])
    assert 0.1 < c < 0.9, c
    assert "cupy_noise_probe" not in bpy.data.objects
