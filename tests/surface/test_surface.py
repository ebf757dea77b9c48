"""Surface noise and geometric motion from meshes (cupy_core.surface), no Blender:
exact areas on a head-on plane, noise that follows a deforming mesh, whiteness, the
rasteriser against trimesh's ray casting, geometric backward maps, the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cupy_core import stats
from cupy_core.methods.grid2d import grid2d_pieces
from cupy_core.bake.loop import bake_frames
from cupy_core.surface import (Camera, Mesh, geometry_positions, load_cameras,
                               surface_noise, texture_noise, uv_islands, uv_positions)
from cupy_core.surface.camera import project, rays
from cupy_core.surface.raster import corner_points

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "sample_scenes"))
import flag_sequence as F  # noqa: E402


def plane(size=1.0, z=0.0):
    v = np.array([[0, 0, z], [size, 0, z], [size, size, z], [0, size, z]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return Mesh(v, f, (v[:, :2] / size)[f])


def head_on(width, height, span=1.0, z_cam=5.0):
    """A perspective camera above the unit square looking straight down, its image
    exactly the square [0, span]^2 at z = 0 (intrinsics form, OpenGL convention)."""
    pose = np.eye(4)
    pose[:3, 3] = (span / 2, span / 2, z_cam)
    fx = width * z_cam / span
    fy = height * z_cam / span
    return Camera.from_intrinsics(pose, fx, fy, width / 2, height / 2, width, height)


def flag_mesh(t):
    v, f, uv = F.flag(t)
    return Mesh(v, f, uv[f])


# --------------------------------------------------------------------------- cameras

def test_camera_json_forms_agree():
    pose = F.look_at((0.5, -3, 0.7), (1, 0, 0.6))
    intr = {"camera_to_world": pose.tolist(), "fx": 70.0, "fy": 70.0, "cx": 32.0,
            "cy": 24.0, "near": 0.1, "far": 100.0}
    cam = load_cameras({"width": 64, "height": 48, "camera": intr}, 3)[0]
    again = load_cameras({"width": 64, "height": 48, "frames": [cam.to_json()]})[0]
    np.testing.assert_allclose(again.matrix, cam.matrix)
    # OpenCV pose (y down, z forward) of the same camera projects the same
    cv = pose @ np.diag([1.0, -1.0, -1.0, 1.0])
    cam_cv = load_cameras({"width": 64, "height": 48, "camera": dict(
        intr, camera_to_world=cv.tolist(), convention="opencv")})[0]
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.3 + [1, 0, 0.6]
    np.testing.assert_allclose(project(cam, pts)[0], project(cam_cv, pts)[0], atol=1e-9)
    # pinhole: x = fx X / Z + cx with y down (OpenCV), checked by hand
    xc = np.linalg.inv(cv) @ np.append(pts[0], 1.0)
    np.testing.assert_allclose(project(cam, pts[:1])[0][0],
                               [70 * xc[0] / xc[2] + 32, 70 * xc[1] / xc[2] + 24])
    # rays through image points hit the points they came from
    xy, _, _ = project(cam, pts)
    o, d = rays(cam, xy)
    along = np.einsum("nc,nc->n", pts - o, d)
    np.testing.assert_allclose(o + along[:, None] * d, pts, atol=1e-9)
    with pytest.raises(ValueError, match="frames"):
        load_cameras({"width": 4, "height": 4, "frames": [cam.to_json()]}, 2)


# --------------------------------------------------------------------------- exact maps

def test_head_on_plane_is_affine_and_areas_exact():
    """Each screen pixel sees exactly a 2 x 2 block of texels: the surface noise is the
    block's sum / 2, exactly (no sub-texel pieces), every frame."""
    n, w, h = 16, 8, 8
    cam = head_on(w, h)
    pos, valid = uv_positions(plane(), cam, n)
    assert valid.all()
    c = corner_points((h, w))
    expect = np.stack([c[..., 0] * 2, c[..., 1] * 2], axis=-1)   # v up -> rows top first
    np.testing.assert_allclose(pos, expect, atol=1e-9)
    tex = texture_noise(n, 3, seed=5)
    out = surface_noise(tex, pos, valid, seed=5, frame=7)
    blocks = tex.astype(np.float64).reshape(h, 2, w, 2, 3).sum(axis=(1, 3)) / 2
    np.testing.assert_allclose(out, blocks, atol=1e-5)


def test_head_on_plane_areas_known_squares_non_integer():
    """Scale 1.5 texels per pixel: the partition areas are the known squares' overlaps."""
    n, w, h = 12, 8, 8
    pos, valid = uv_positions(plane(), head_on(w, h), n)
    t, s, a = grid2d_pieces(pos, (n, n), valid)
    for p in (0, 9, 27, 63):
        i, j = divmod(p, w)
        got = {int(k): v for k, v in zip(s[t == p], a[t == p])}
        x0, y0 = 1.5 * j, 1.5 * i
        for k, v in got.items():
            ki, kj = divmod(k, n)
            ox = max(0, min(x0 + 1.5, kj + 1) - max(x0, kj))
            oy = max(0, min(y0 + 1.5, ki + 1) - max(y0, ki))
            assert v == pytest.approx(ox * oy, abs=1e-9)
        assert sum(got.values()) == pytest.approx(2.25, abs=1e-9)


def test_uv_islands_and_seams():
    # two triangles sharing an edge with the same UVs: one island; a seam splits them
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], float)
    assert len(set(uv_islands(f, uv))) == 1
    seam = uv.copy()
    seam[1] += 2.0
    assert len(set(uv_islands(f, seam))) == 2
    lab = uv_islands(flag_mesh(0).faces, flag_mesh(0).uv)
    assert len(set(lab)) == 1


def test_surface_and_silhouette_rule():
    """Pixels straddling the flag's outline get fresh noise ('fresh': new every frame;
    'static': the same every frame); pixels wholly on it are transported."""
    cam = load_cameras(F.cameras(2), 2)[0]
    mesh = flag_mesh(0)
    pos, valid = uv_positions(mesh, cam, 64)
    assert 0 < valid.sum() < valid.size
    hit = ~np.isnan(pos[..., 0])
    edge = ~valid & (hit[:-1, :-1] | hit[1:, 1:] | hit[:-1, 1:] | hit[1:, :-1])
    assert edge.any()
    tex = texture_noise(64, 4, seed=1)
    a = surface_noise(tex, pos, valid, seed=1, frame=1)
    b = surface_noise(tex, pos, valid, seed=1, frame=2)
    np.testing.assert_array_equal(a[valid], b[valid])        # same view, same noise
    assert not np.isclose(a[~valid], b[~valid]).any()
    c = surface_noise(tex, pos, valid, seed=1, frame=2, background="static")
    d = surface_noise(tex, pos, valid, seed=1, frame=9, background="static")
    np.testing.assert_array_equal(c, d)


# --------------------------------------------------------------------------- statistics

def test_surface_noise_is_white():
    cams = load_cameras(F.cameras(6, 96, 72), 6)
    tex = texture_noise(96, 4, seed=3)
    for t in (0, 5):
        pos, valid = uv_positions(flag_mesh(t), cams[t], 96)
        out = surface_noise(tex, pos, valid, seed=3, frame=t)
        ok, why = stats.check_white(out)
        assert ok, why
        ok, why = stats.check_white(out[valid][None], spatial=False)
        assert ok, why


def _coefficients(pos, valid, n, h, w):
    """Each pixel's value as a linear form of the shared normals (docs/DESIGN.md 4.2 with
    the fixed surface key): the texels X_k, the remainders eps_k (keyed by texel) and
    the piece draws xi_(p,k) (keyed by pixel and texel, the same in every frame)."""
    t, s, a = grid2d_pieces(pos, (n, n), valid)
    A = np.zeros((h * w, n * n))
    np.add.at(A, (t, s), a)
    norm = np.sqrt(A.sum(1)).clip(1e-300)[:, None]
    r = np.clip(1.0 - A.sum(0), 0.0, None)
    cx = A / norm
    ce = -A * np.sqrt(r) / norm
    xi = {}
    for p_, k, ap in zip(t, s, a):
        col = -A[:, k] * np.sqrt(ap)
        col[p_] += np.sqrt(ap)
        xi[(int(p_), int(k))] = col / norm[:, 0]
    return cx, ce, xi


def test_deforming_mesh_noise_follows_the_surface():
    """Across frames, pixel p (frame a) and q (frame b) correlate exactly as their
    preimages' overlaps predict: the covariance of the linear forms of the shared
    normals (texels; and, through the fixed key, the draws of each (pixel, texel)
    piece and texel remainder). Pixels seeing the same surface point stay strongly
    correlated although the flag waves and the camera moves."""
    w, h, n, seeds = 24, 18, 40, 300
    cams = load_cameras(F.cameras(12, w, h), 12)
    maps = [uv_positions(flag_mesh(t), cams[t], n) for t in (0, 11)]
    (xa, ea, ia), (xb, eb, ib) = [_coefficients(p, v, n, h, w) for p, v in maps]
    cov = xa @ xb.T + ea @ eb.T
    for key in set(ia) & set(ib):
        cov += np.outer(ia[key], ib[key])
    overlap = xa @ xb.T                       # the texel overlaps alone
    samples = np.stack([
        np.stack([surface_noise(texture_noise(n, 1, seed=s), pos, valid, seed=s, frame=f)[..., 0]
                  .ravel() for f, (pos, valid) in enumerate(maps)])
        for s in range(seeds)])                                  # (seeds, 2, H*W)
    # the tracked surface point (u, v) = (0.15, 0.5) moves on the screen; the pixel
    # that holds it at frame 11 keeps much of its frame-0 pixel's noise
    cen = [(p[:-1, :-1] + p[1:, 1:] + p[:-1, 1:] + p[1:, :-1]) / 4 for p, _ in maps]
    pa, qb = [int(np.nanargmin(np.hypot(c[..., 0] - 0.15 * n, c[..., 1] - 0.5 * n)))
              for c in cen]
    assert pa != qb
    best = int(overlap[pa].argmax())
    assert abs(best // w - qb // w) <= 1 and abs(best % w - qb % w) <= 1
    assert overlap[pa, best] > 0.5 and cov[pa, best] >= overlap[pa, best] - 1e-9
    pairs = np.argwhere(np.abs(cov) > 0.2)
    assert len(pairs) > 20
    x, y = samples[:, 0, pairs[:, 0]], samples[:, 1, pairs[:, 1]]
    emp = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / (x.std(0) * y.std(0))
    err = emp - cov[pairs[:, 0], pairs[:, 1]]
    assert np.abs(err).max() < 5 / np.sqrt(seeds)
    assert abs(err.mean()) < 0.02


# --------------------------------------------------------------------------- two routes

def test_rasteriser_agrees_with_trimesh_rays(tmp_path):
    pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    from cupy_core.surface.meshio import (geometry_positions_rays, load_mesh,
                                          uv_positions_rays)
    meshes, cam_file = F.write(str(tmp_path), 3)
    cams = load_cameras(cam_file, 3)
    loaded = [load_mesh(os.path.join(meshes, f"flag_{t:04d}.obj")) for t in range(3)]
    for t in range(3):
        tm, m = loaded[t]
        pos, valid = uv_positions(m, cams[t], 64)
        pr, vr = uv_positions_rays(tm, m, cams[t], 64)
        np.testing.assert_array_equal(valid, vr)
        np.testing.assert_array_equal(np.isnan(pos), np.isnan(pr))
        np.testing.assert_allclose(pos, pr, atol=1e-6, equal_nan=True)
    g = geometry_positions(loaded[2][1], loaded[1][1], cams[2], cams[1])
    gr = geometry_positions_rays(loaded[2][0], loaded[2][1], loaded[1][0], loaded[1][1],
                                 cams[2], cams[1])
    np.testing.assert_allclose(g, gr, atol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------- geometry

def test_geometry_translation_and_occlusion():
    """A plane moving 0.25 (2 px) to the right under a head-on camera: positions are the
    corners shifted back by 2 px; a square in front, still, hides part of the plane at
    f-1: those points get NaN (fresh noise)."""
    w = h = 8
    cam = head_on(w, h, span=1.0)
    back0, back1 = plane(), plane()
    back1.vertices = back1.vertices + [0.25, 0, 0]
    g = geometry_positions(back1, back0, cam, cam, background="fresh")
    c = corner_points((h, w))
    on = ~np.isnan(g[..., 0])
    assert on.sum() == 9 * 7   # x in [2, 8] at frame f
    np.testing.assert_allclose(g[on], c[on] - [2, 0], atol=1e-9)
    # an occluder (z = 1, nearer the camera) over x in [0, 0.5], y in [0, 1]: the plane
    # points now at x in [2, 4] px came from x in [0, 2] px, hidden behind it at f-1
    occ = Mesh(np.array([[0, 0, 1], [0.5, 0, 1], [0.5, 1, 1], [0, 1, 1]], float),
               np.array([[0, 1, 2], [0, 2, 3]]))
    occ.vertices = occ.vertices - [0.6, 0, 0]      # at frame f: out of view (x < 0)

    def merge(a, b):
        return Mesh(np.concatenate([a.vertices, b.vertices]),
                    np.concatenate([a.faces, b.faces + len(a.vertices)]))
    now = merge(back1, occ)
    prev_occ = Mesh(occ.vertices + [0.6, 0, 0], occ.faces)
    prev = merge(back0, prev_occ)
    g2 = geometry_positions(now, prev, cam, cam, background="fresh")
    # seen from z = 5, the occluder at z = 1 covers image x in [-1, 4] at f-1
    hidden = on & (g[..., 0] <= 4 + 1e-9)
    assert hidden.sum() == 5 * 9       # corner columns x = 2..6
    assert np.isnan(g2[hidden]).all()
    visible = on & ~hidden
    np.testing.assert_allclose(g2[visible], g[visible])


def test_geometry_background_at_infinity_follows_rotation():
    cam = head_on(8, 8)
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), int))
    g = geometry_positions(empty, empty, cam, cam)
    np.testing.assert_allclose(g, corner_points((8, 8)), atol=1e-9)


# --------------------------------------------------------------------------- bake, CLI

def test_bake_frames_resume(tmp_path):
    calls = []

    def make(i):
        calls.append(i)
        if i == 2 and len(calls) == 3:
            raise KeyboardInterrupt
        return np.full((4, 5, 2), i, np.float32)

    with pytest.raises(KeyboardInterrupt):
        bake_frames(make, tmp_path, frame_count=4, shape=(4, 5), channels=2, progress=False)
    res = bake_frames(make, tmp_path, frame_count=4, shape=(4, 5), channels=2,
                      progress=False)
    assert res.resumed_frames == 2 and calls == [0, 1, 2, 2, 3]
    assert np.load(tmp_path / "latents.npy")[:, 0, 0, 0].tolist() == [0, 1, 2, 3]


def test_cli_surface_and_geometry(tmp_path):
    pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    from cupy_core.surface.bake import bake_surface_sequence
    meshes, cam_file = F.write(str(tmp_path / "scene"), 3, 32, 24)
    cmd = [sys.executable, "-m", "cupy_core", "surface", meshes, "--camera", cam_file,
           "--texture-size", "48", "--channels", "2", "--seed", "4", "-q"]
    r = subprocess.run(cmd + ["--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "s" / "bake.json").read_text())
    assert rec["status"] == "complete" and rec["kind"] == "surface"
    assert np.load(tmp_path / "s" / "latents.npy").shape == (3, 24, 32, 2)
    # the same bake in process, through the rasteriser: the same noise
    cams = load_cameras(cam_file, 3)
    maps = [uv_positions(flag_mesh(t), cams[t], 48) for t in range(3)]
    bake_surface_sequence(maps, tmp_path / "p", shape=(24, 32), frame_count=3,
                          texture_size=48, channels=2, seed=4, progress=False)
    for t in range(3):
        np.testing.assert_allclose(np.load(tmp_path / "s" / f"noise_{t:04d}.npy"),
                                   np.load(tmp_path / "p" / f"noise_{t:04d}.npy"), atol=1e-4)
    r = subprocess.run(cmd + ["--out", str(tmp_path / "g"), "--source", "geometry"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "g" / "latents.npy").shape == (3, 24, 32, 2)
    r = subprocess.run(cmd + ["--out", str(tmp_path / "g"), "--source", "geometry",
                              "--background", "static"], capture_output=True, text=True)
    assert r.returncode == 2 and "background" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cupy_core", "surface", str(tmp_path / "nope"),
                        "--camera", cam_file, "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_screen_noise_of_some_pixels_is_the_same_numbers():
    from cupy_core.surface.maps import screen_noise
    full = screen_noise((13, 17), 5, seed=3, frame=2)
    cells = np.array([0, 5, 100, 220])
    np.testing.assert_array_equal(screen_noise((13, 17), 5, seed=3, frame=2, cells=cells),
                                  full.reshape(-1, 5)[cells])
