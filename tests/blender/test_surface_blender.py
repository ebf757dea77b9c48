"""The surface and geometry sources on bpy from PyPI: the geometric backward map
against Cycles' Vector pass, rasterised UVs against Cycles' UV pass, the Blender route
against the trimesh command line on the same meshes and cameras, headless bakes."""
import json

import bpy
import numpy as np
import pytest

from blender_addon import bake as B
from blender_addon import headless
from blender_addon.readers import geometry as G
from blender_addon.readers import vectors as V
from blender_addon.bake.scene_changes import VectorRenderer
from blender_addon.readers.vectors import render_size
from cupy_core import vector_pass as VP
import fixtures as F
from cupy_core.surface import cameras_to_json, geometry_positions, uv_to_texture
from cupy_core.surface.maps import surface_uv


@pytest.fixture
def flag_scene():
    import blender_scenes
    return blender_scenes.flag_scene(frames=4)


def mesh_and_camera(scene, frame):
    scene.frame_set(frame)
    mesh, names = G.scene_mesh(scene)
    h, w = render_size(scene)
    return mesh, G.scene_camera(scene, w, h)


def test_scene_mesh_reader(flag_scene):
    flag_scene.frame_set(1)
    mesh, names = G.scene_mesh(flag_scene)
    assert names == ["Flag"]
    assert mesh.faces.shape == (2 * 24 * 12, 3) and mesh.uv.shape == (2 * 24 * 12, 3, 2)
    assert np.nanmin(mesh.uv) >= -1e-6 and np.nanmax(mesh.uv) <= 1 + 1e-6
    flag_scene.frame_set(3)
    later, _ = G.scene_mesh(flag_scene)
    assert np.abs(later.vertices - mesh.vertices).max() > 0.01     # it waves
    assert len(set(mesh.islands())) == 1


def test_geometry_matches_the_vector_pass(flag_scene, tmp_path):
    """Where both are defined, the rasterised geometric map at pixel centres equals
    Cycles' Vector pass (prev = (x + X, y - Y)) within 0.01 px."""
    h, w = render_size(flag_scene)
    with VectorRenderer(flag_scene, flag_scene.view_layers[0], str(tmp_path)) as r:
        path, _ = r.render(3)
    vec, depth = V.read_vector_exr(path)
    c = VP.centers(h, w)
    from_pass = c + np.stack([vec[..., 0], -vec[..., 1]], axis=-1)
    m3, c3 = mesh_and_camera(flag_scene, 3)
    m2, c2 = mesh_and_camera(flag_scene, 2)
    g = geometry_positions(m3, m2, c3, c2, background="fresh", occlusion=False,
                           points=c.reshape(-1, 2)).reshape(h, w, 2)
    both = ~VP.is_background(depth) & np.isfinite(g).all(axis=-1)
    assert both.sum() > 0.2 * h * w
    assert (np.isfinite(g).all(axis=-1) != ~VP.is_background(depth)).mean() < 0.02
    moved = np.hypot(*(from_pass - c)[both].T)
    assert moved.max() > 0.5                       # the flag and the camera move
    assert np.abs(g - from_pass)[both].max() < 0.01


def test_rasterised_uvs_match_the_uv_pass(flag_scene, tmp_path):
    """Cycles' UV pass (U/A, V/A, v up) and the rasterised UVs at pixel centres give the
    same texture positions (BLENDER_FACTS 2)."""
    h, w = render_size(flag_scene)
    vl = flag_scene.view_layers[0]
    vl.use_pass_uv = True
    with VectorRenderer(flag_scene, vl, str(tmp_path)) as r:
        path, _ = r.render(2)
    uva = V.find_pass(V.read_exr_channels(path), "UV", ("U", "V", "A"))
    from_pass = F.uv_pass_positions(uva[..., 0], uva[..., 1], uva[..., 2], 64)
    mesh, cam = mesh_and_camera(flag_scene, 2)
    uv, face = surface_uv(mesh, cam, VP.centers(h, w).reshape(-1, 2))
    raster = uv_to_texture(uv, 64).reshape(h, w, 2)
    both = np.isfinite(from_pass).all(-1) & np.isfinite(raster).all(-1)
    assert both.sum() > 0.2 * h * w
    assert (np.isfinite(from_pass).all(-1) != np.isfinite(raster).all(-1)).mean() < 0.02
    # Cycles samples within a 0.01 px box around the centre: ~0.01 texel here
    assert np.abs(from_pass - raster)[both].max() < 0.05


def _write_obj(path, mesh):
    """OBJ with one ``vt`` per distinct UV (to 1e-6: bpy 4.2 gives one vertex UVs that
    differ in the last bits), so triangles that share an edge and its UVs
    share vertices in trimesh too (no seams where Blender has none)."""
    uv, inv = np.unique(np.round(mesh.uv.reshape(-1, 2), 6), axis=0, return_inverse=True)
    inv = inv.reshape(-1, 3)
    with open(path, "w") as f:
        f.writelines(f"v {x:.9f} {y:.9f} {z:.9f}\n" for x, y, z in mesh.vertices)
        f.writelines(f"vt {u:.9f} {v:.9f}\n" for u, v in uv)
        for (a, b, c), (ta, tb, tc) in zip(mesh.faces, inv):
            f.write(f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}\n")


def test_blender_route_agrees_with_trimesh_route(flag_scene, tmp_path):
    pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    pytest.importorskip("PIL")
    from cupy_core.cli.surface import main as surface_cli
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    cams = []
    for f in (1, 2, 3):
        mesh, cam = mesh_and_camera(flag_scene, f)
        _write_obj(meshes / f"flag_{f:04d}.obj", mesh)
        cams.append(cam)
    (tmp_path / "camera.json").write_text(json.dumps(cameras_to_json(cams)))
    settings = B.BakeSettings(out_dir=str(tmp_path / "blender"), source="surface",
                              texture_size=48, channels=2, seed=7, latent_factor=1,
                              preview=False, frame_start=1, frame_end=3,
                              background="vectors")       # off-surface: static
    res = B.run_bake(flag_scene, settings)
    assert res.frames == [1, 2, 3]
    assert surface_cli([str(meshes), "--camera", str(tmp_path / "camera.json"), "--out",
                        str(tmp_path / "trimesh"), "--texture-size", "48", "--channels",
                        "2", "--seed", "7", "--background", "static", "-q"]) == 0
    for i, f in enumerate((1, 2, 3)):
        a = np.load(tmp_path / "blender" / f"noise_{f:04d}.npy")
        b = np.load(tmp_path / "trimesh" / f"noise_{i:04d}.npy")
        np.testing.assert_allclose(a, b, atol=1e-3)   # the OBJ holds UVs to 1e-6
    rec = json.loads((tmp_path / "blender" / "bake.json").read_text())
    assert rec["kind"] == "surface" and rec["source"]["objects"] == ["Flag"]


def test_headless_surface_and_geometry(tmp_path):
    import blender_scenes
    blend = str(tmp_path / "flag.blend")
    blender_scenes.flag_scene(frames=3)
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    for source in ("surface", "geometry"):
        out = tmp_path / source
        code = headless.main(["--out", str(out), "--source", source, "--texture-size", "32",
                              "--latent-factor", "4", "--channels", "3"], blend_file=blend)
        assert code == 0
        lat = np.load(out / "latents.npy")
        assert lat.shape == (3, 12, 16, 3)
        rec = json.loads((out / "bake.json").read_text())
        assert rec["status"] == "complete" and rec["first_frame"] == 1
        frames = [np.load(out / f"noise_{f:04d}.npy") for f in (1, 2, 3)]
        for fr in frames:
            assert abs(fr.std() - 1) < 0.1 and abs(fr.mean()) < 0.1
