"""The volume source from the scene settings (panel / operator) and headless.py."""
import json
import os
import subprocess
import sys

import bpy
import numpy as np
import pytest

from blender_addon import headless
from blender_addon import vdb as V
from blender_addon.bake import BakeSettings, run_bake

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_scene():
    """A 2 x 2 x 2 domain box and an empty moving 0.25 per frame in x, frames 1-3."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    sc.frame_start, sc.frame_end = 1, 3
    bpy.ops.mesh.primitive_cube_add(size=2.0)
    bpy.context.active_object.name = "Domain"
    ob = bpy.data.objects.new("Mover", None)
    sc.collection.objects.link(ob)
    for f in (1, 2, 3):
        ob.location = (0.25 * f, 0, 0)
        ob.keyframe_insert("location", frame=f)
    return sc


@pytest.fixture
def volume_blend(tmp_path):
    build_scene()
    path = str(tmp_path / "volume.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    return path


def _headless(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "blender_addon", "headless.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_headless_volume_objects(volume_blend, tmp_path):
    out = tmp_path / "h"
    p = _headless(volume_blend, "--out", out, "--source", "volume", "--domain", "Domain",
                  "--motion-object", "Mover", "--follow", "all", "--resolution", "8",
                  "--channels", "2", "--seed", "3", "--device", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "[noise] frame 3" in p.stdout
    names = set(os.listdir(out))
    assert {"noise_0001.npy", "noise_0002.npy", "noise_0003.npy", "latents.npy",
            "bake.json"} <= names
    assert ({"noise_0001.vdb", "noise_0003.vdb"} <= names) == V.available()
    if not V.available():
        assert "openvdb" in p.stdout
    a, b = (np.load(out / f"noise_{f:04d}.npy") for f in (1, 2))
    assert a.shape == (8, 8, 8, 2)
    np.testing.assert_allclose(b[:, :, 1:], a[:, :, :-1], atol=1e-5)   # 1 voxel in x
    assert np.load(out / "latents.npy").shape == (3, 8, 8, 8, 2)       # factor 1
    rec = json.loads((out / "bake.json").read_text())
    assert rec["status"] == "complete" and rec["source"]["domain"] == "Domain"
    assert rec["source"]["objects"] == ["Mover"] and rec["seed"] == 3


def test_headless_two_objects_each_carry_their_box(tmp_path):
    sc = build_scene()                                    # Domain: 2 x 2 x 2 at the origin
    for name, y, dx in (("Up", 0.5, 0.25), ("Down", -0.5, -0.25)):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0, y, 0))
        ob = bpy.context.active_object
        ob.name = name
        for f in (1, 2, 3):                              # one voxel (0.25) a frame in x
            ob.location = (dx * f, y, 0)
            ob.keyframe_insert("location", frame=f)
    blend = str(tmp_path / "two.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    out = tmp_path / "two"
    p = _headless(blend, "--out", out, "--source", "volume", "--domain", "Domain",
                  "--motion-object", "Up", "--motion-object", "Down", "--follow", "inside",
                  "--resolution", "8", "--channels", "1", "--device", "cpu", "--no-vdb")
    assert p.returncode == 0, p.stdout + p.stderr
    a, b = (np.load(out / f"noise_{f:04d}.npy") for f in (1, 2))
    # voxel (k, i, j) spans x = -1 + j/4, y = -1 + i/4, z = -1 + k/4. At frame 2 "Up" covers
    # j 4-7, i 4-7, k 2-5 and moved +1 voxel in x; "Down" covers j 0-3, i 0-3 and moved -1
    np.testing.assert_allclose(b[2:6, 5:7, 5:7], a[2:6, 5:7, 4:6], atol=1e-5)
    np.testing.assert_allclose(b[2:6, 1:3, 1:3], a[2:6, 1:3, 2:4], atol=1e-5)
    # outside both boxes the noise stays (k = 0: below both cubes)
    np.testing.assert_allclose(b[0], a[0], atol=1e-5)
    rec = json.loads((out / "bake.json").read_text())
    assert rec["source"]["objects"] == ["Up", "Down"] and rec["source"]["follow"] == "inside"


def test_headless_velocity_matches_direct_bake(volume_blend, tmp_path):
    vel = tmp_path / "vel"
    os.makedirs(vel)
    for f in (2, 3):
        np.save(vel / f"velocity_{f:04d}.npy", np.broadcast_to(
            np.float32([0, 0.25, 0]), (8, 8, 8, 3)).copy())     # 1 voxel per frame in y
    out = tmp_path / "h"
    code = headless.main(["--out", str(out), "--source", "volume", "--domain", "Domain",
                          "--velocity", str(vel), "--velocity-units", "frame",
                          "--resolution", "8", "--channels", "1", "--no-vdb",
                          "--latent-factor", "2"], blend_file=volume_blend)
    assert code == 0
    assert not [n for n in os.listdir(out) if n.endswith(".vdb")]
    assert np.load(out / "latents.npy").shape == (3, 4, 4, 4, 1)
    ref = tmp_path / "ref"
    run_bake(bpy.context.scene, BakeSettings(source="volume", 
        out_dir=str(ref), domain="Domain", volume_motion="velocity", velocity_path=str(vel),
        resolution=8, channels=1, vdb=False))
    for f in (1, 2, 3):
        np.testing.assert_array_equal(np.load(out / f"noise_{f:04d}.npy"),
                                      np.load(ref / f"noise_{f:04d}.npy"))


@pytest.mark.parametrize("args, message", [
    (["--motion-object", "Mover"], "--domain"),
    (["--domain", "Domain"], "--motion-object"),
    (["--domain", "Nope", "--motion-object", "Mover"], "domain"),
    (["--domain", "Domain", "--motion-object", "Nope"], "moving"),
    (["--domain", "Domain", "--velocity", "/nonexistent/vel"], "velocity"),
])
def test_headless_volume_errors(volume_blend, tmp_path, capsys, args, message):
    out = tmp_path / "o"
    code = headless.main(["--out", str(out), "--source", "volume", *args],
                         blend_file=volume_blend)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err
    assert not out.exists() or not [n for n in os.listdir(out) if n.startswith("noise")]


def test_headless_missing_domain_subprocess(volume_blend, tmp_path):
    p = _headless(volume_blend, "--out", tmp_path / "o", "--source", "volume")
    assert p.returncode == 2 and "error: --source volume needs --domain" in p.stderr


def test_scene_properties_and_operator(tmp_path):
    sc = build_scene()
    s = sc.cupy_noise
    s.source = "volume"
    s.volume_domain = bpy.data.objects["Domain"]
    s.volume_object = bpy.data.objects["Mover"]
    s.volume_follow = "inside"
    s.volume_resolution = 4
    s.channels = 1
    s.latent_factor = 8            # the screen sources' factor: not used for volumes
    s.volume_latent_factor = 2
    s.device = "cpu"
    s.out_dir = str(tmp_path / "op")
    st = s.to_settings()
    assert (st.source, st.domain, st.motion_objects, st.follow, st.resolution) == (
        "volume", "Domain", ("Mover",), "inside", 4)
    assert (st.volume_motion, st.motion_objects, st.latent_factor, st.vdb) == (
        "objects", ("Mover",), 2, True)
    assert bpy.ops.cupy_noise.bake() == {"FINISHED"}
    rec = json.loads((tmp_path / "op" / "bake.json").read_text())
    assert rec["source"]["follow"] == "inside" and rec["noise_shape"] == [4, 4, 4, 1]
    # no domain: the operator reports the error and cancels
    s.volume_domain = None
    s.out_dir = str(tmp_path / "op2")
    with pytest.raises(RuntimeError, match="domain"):
        bpy.ops.cupy_noise.bake()


class _Layout:
    """Records ``prop`` and ``label`` calls of a panel's draw (no UI under bpy)."""

    def __init__(self, log):
        self.log = log
        self.use_property_split = False
        self.alignment = self.active = None

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, name
        self.log.append(name)

    def label(self, text="", **kw):
        self.log.append("label:" + text)

    def operator(self, *a, **kw):
        self.log.append("operator")

    def row(self, **kw):
        return self

    def column(self, **kw):
        return self


@pytest.mark.parametrize("motion, shown", [
    ("objects", {"volume_object", "volume_follow"}),
    ("velocity", {"velocity_path", "velocity_units"}),
    ("fluid", {"fluid_cache", "fluid_format"})])
def test_panel_draws_volume_settings(motion, shown):
    from types import SimpleNamespace
    from blender_addon.panels import CUPYNOISE_PT_bake
    sc = build_scene()
    sc.cupy_noise.source = "volume"
    sc.cupy_noise.volume_motion = motion
    log = []
    panel = SimpleNamespace(layout=_Layout(log))
    CUPYNOISE_PT_bake.draw(panel, SimpleNamespace(scene=sc))
    assert {"volume_domain", "volume_motion", "volume_resolution", "write_vdb"} | shown <= set(log)
    assert "background" not in log and "write_exr" not in log
    assert "volume_latent_factor" in log and "latent_factor" not in log
    if motion == "fluid":             # world layout: its units matter, so they show
        sc.cupy_noise.fluid_format = "world"
        log.clear()
        CUPYNOISE_PT_bake.draw(panel, SimpleNamespace(scene=sc))
        assert "velocity_units" in log
    assert any("openvdb" in x for x in log if x.startswith("label:")) == (not V.available())
    sc.cupy_noise.source = "vectors"
    log.clear()
    CUPYNOISE_PT_bake.draw(panel, SimpleNamespace(scene=sc))
    assert "volume_domain" not in log and "background" in log


def test_panel_says_when_a_lattice_or_armature_deforms_the_noise():
    from types import SimpleNamespace
    from blender_addon.panels import CUPYNOISE_PT_bake
    sc = build_scene()
    s = sc.cupy_noise
    s.source, s.volume_motion = "volume", "objects"
    panel_log = []
    panel = SimpleNamespace(layout=_Layout(panel_log))
    for data, expect in ((bpy.data.lattices.new("L"), "The lattice deforms the noise"),
                         (bpy.data.armatures.new("A"), "Bone envelopes deform the noise"),
                         (None, None)):
        ob = bpy.data.objects.new("Deformer" + str(len(panel_log)), data)
        sc.collection.objects.link(ob)
        s.volume_object = ob
        panel_log.clear()
        CUPYNOISE_PT_bake.draw(panel, SimpleNamespace(scene=sc))
        labels = [x for x in panel_log if x.startswith("label:") and "deform" in x]
        assert labels == ([] if expect is None else ["label:" + expect])


def test_panel_shows_the_target_rule_and_hides_what_it_sets(shift_scene, tmp_path):
    """Target Model: the rule beside the frame range ("4k+1 frames, e.g. 81"), the
    channels and latent factor come from the target, and a frame range it cannot take
    is refused before anything renders."""
    from types import SimpleNamespace
    from blender_addon.panels import CUPYNOISE_PT_bake
    s = shift_scene.cupy_noise
    s.target = "wan"
    log = []
    CUPYNOISE_PT_bake.draw(SimpleNamespace(layout=_Layout(log)), SimpleNamespace(scene=shift_scene))
    labels = [x for x in log if x.startswith("label:")]
    assert any("4k+1 frames, e.g. 81" in x for x in labels), labels
    assert any("5 frames" in x for x in labels), labels
    assert any(x.startswith("label:Memory: about") for x in labels), labels
    assert "channels" not in log and "latent_factor" not in log
    assert {"target", "temporal", "degradation"} <= set(log)
    st = s.to_settings(out_dir=str(tmp_path / "o"))
    assert st.channels is None and st.latent_factor is None and st.target == "wan"
    shift_scene.frame_end = 4                                     # 4 frames: not 4k+1
    out_dir = s.out_dir
    s.out_dir = str(tmp_path / "o")
    try:
        with pytest.raises(RuntimeError, match="1 or 5"):
            bpy.ops.cupy_noise.bake()
        assert not (tmp_path / "o").exists()
    finally:                  # the scene's settings as they were, for the next tests
        s.target, s.out_dir = "none", out_dir
