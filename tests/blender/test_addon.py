"""The Blender add-on on bpy from PyPI: registration, the Vector pass convention,
disocclusion, settings restored, cancel and resume, errors, headless, the built zip."""
import json
import os
import subprocess
import sys

import bpy
import numpy as np
import pytest

import cupy_core

from blender_addon import bake as B
from blender_addon.readers import vectors as V
from blender_addon.bake.scene_changes import VectorRenderer
from blender_addon.errors import BakeError
from cupy_core import vector_pass as VP

from conftest import ROOT

DX, DY = 3, 2          # the shift scene's square: pixels per frame, x right, y up
FRAMES = range(1, 6)


def square_mask(frame, h=48, w=64):
    """Pixels of the square at ``frame`` (rows top first): its centre is at
    (17 + 3 (f-1), 34 - 2 (f-1)), 16 px wide, edges on pixel boundaries."""
    cx, cy = 17 + DX * (frame - 1), 34 - DY * (frame - 1)
    m = np.zeros((h, w), bool)
    m[cy - 8:cy + 8, cx - 8:cx + 8] = True
    return m


def load(out, frame):
    return np.load(os.path.join(out, f"noise_{frame:04d}.npy"))


def bake(scene, out, **kw):
    kw.setdefault("latent_factor", 4)
    kw.setdefault("preview", False)
    return B.run_bake(scene, B.BakeSettings(out_dir=str(out), **kw))


# --------------------------------------------------------------------------- registration

def test_register_unregister(addon):
    assert hasattr(bpy.types.Scene, "cupy_noise")
    assert hasattr(bpy.ops.cupy_noise, "bake")
    assert bpy.context.scene.cupy_noise.out_dir == "//noise/"
    addon.unregister()
    try:
        assert not hasattr(bpy.types.Scene, "cupy_noise")
        assert not hasattr(bpy.types, "CUPYNOISE_PT_bake")
    finally:
        addon.register()
    assert hasattr(bpy.types.Scene, "cupy_noise")
    assert bpy.types.CUPYNOISE_PT_bake.bl_context == "output"


def test_panel_checks_the_gpu_in_the_background(addon, monkeypatch):
    """The panel's first draw does not wait for the GPU probe (CuPy's import and a
    compile, a second or more): "checking" and a redraw timer, then the result; the
    timer goes with the add-on."""
    import threading
    import time
    import types

    import cupy_core.device as core_device
    from blender_addon import gpu_support, panels

    release = threading.Event()
    done = []
    status = types.SimpleNamespace(ok=True, name="Some GPU", cupy_version="13.6.0",
                                   reason=None, advice=None)

    def gpu_status(refresh=False, wait=True):
        if not wait:
            return status if done else None
        release.wait(10)
        done.append(1)
        return status

    monkeypatch.setattr(core_device, "gpu_status", gpu_status)
    t0 = time.monotonic()
    assert panels.device_line() == ("GPU: checking...", None)
    assert time.monotonic() - t0 < 1.0
    assert bpy.app.timers.is_registered(panels.redraw_when_probed)
    assert panels.redraw_when_probed() == 0.25             # still probing: look again
    release.set()
    deadline = time.monotonic() + 10
    while gpu_support.probing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert panels.redraw_when_probed() is None             # done: redraw, timer ends
    assert panels.device_line()[0] == "GPU: Some GPU (CuPy 13.6.0)"
    addon.unregister()
    try:
        assert not bpy.app.timers.is_registered(panels.redraw_when_probed)
    finally:
        addon.register()


# --------------------------------------------------------------------------- conventions

def test_vector_pass_meaning_and_positions(shift_scene, tmp_path):
    """Vector X,Y = p(f-1) - p(f), y up; our positions: prev = (x + X, y - Y)."""
    with VectorRenderer(shift_scene, shift_scene.view_layers[0], str(tmp_path)) as r:
        path_prev, _ = r.render(2)
        path, _ = r.render(3)
    vec, depth = V.read_vector_exr(path)
    vec_prev, depth_prev = V.read_vector_exr(path_prev)
    inside = square_mask(3)
    assert np.allclose(vec[inside], [-DX, -DY, -DX, -DY], atol=1e-4)
    assert np.allclose(vec[~inside], 0, atol=1e-4)
    assert VP.is_background(depth)[:, 40:].all() and not VP.is_background(depth)[:, :30].any()
    pos = VP.backward_positions(vec, depth, vec_prev, depth_prev)
    c = VP.centers(48, 64)
    core = inside & np.roll(inside, (2, -3), (0, 1))
    assert np.array_equal(pos[inside & ~np.isnan(pos[..., 0])],
                          c[inside & ~np.isnan(pos[..., 0])] + [-DX, DY])
    # disoccluded: the square covered it at frame 2, not at frame 3
    disocc = square_mask(2) & ~square_mask(3)
    assert np.array_equal(np.isnan(pos[..., 0]), disocc)
    assert core.sum() > 100


@pytest.mark.parametrize("method", ["grid", "particle"])
def test_noise_moves_exactly_with_the_object(shift_scene, tmp_path, method):
    res = bake(shift_scene, tmp_path, method=method, exr=True, preview=True)
    assert res.frames == list(FRAMES)
    for f in FRAMES[1:]:
        prev, now = load(tmp_path, f - 1), load(tmp_path, f)
        # inside the square, 2 px from its edge (the grid's corners average across the
        # edge, and those quads may share sources): now[i, j] == prev[i + DY, j - DX]
        inner = square_mask(f)
        for _ in range(2):
            inner = inner & np.roll(inner, 1, 0) & np.roll(inner, -1, 0) \
                & np.roll(inner, 1, 1) & np.roll(inner, -1, 1)
        assert inner.sum() == 144
        shifted = np.roll(prev, (-DY, DX), (0, 1))
        np.testing.assert_array_equal(now[inner], shifted[inner])
        # static background (the backdrop on the left, world on the right) keeps its noise
        moving = square_mask(f) | square_mask(f - 1)
        grown = moving.copy()
        for _ in range(2):   # the grid's corners and shared sources reach 2 px
            grown = grown | np.roll(grown, 1, 0) | np.roll(grown, -1, 0) \
                | np.roll(grown, 1, 1) | np.roll(grown, -1, 1)
        np.testing.assert_array_equal(now[~grown], prev[~grown])
        # disoccluded pixels get fresh noise, not the square's trail
        disocc = square_mask(f - 1) & ~square_mask(f)
        assert disocc.sum() > 20
        assert np.isclose(now[disocc], prev[disocc], atol=1e-4).mean() < 0.02
        assert np.isclose(now[disocc], shifted[disocc], atol=1e-4).mean() < 0.02
    assert os.path.isfile(tmp_path / "noise_0005.exr")
    assert os.path.isfile(tmp_path / "preview_0005.png")
    rec = json.loads((tmp_path / "bake.json").read_text())
    assert rec["status"] == "complete" and rec["first_frame"] == 1
    assert np.load(tmp_path / "latents.npy").shape == (5, 12, 16, 4)


def test_exr_sequence_source_matches_render_source(shift_scene, tmp_path):
    seq = tmp_path / "renders"
    seq.mkdir()
    with VectorRenderer(shift_scene, shift_scene.view_layers[0], str(seq)) as r:
        for f in FRAMES:
            r.render(f)
    bake(shift_scene, tmp_path / "a")
    bake(shift_scene, tmp_path / "b", source="exr", exr_path=str(seq / "frame_######.exr"))
    for f in FRAMES:
        np.testing.assert_array_equal(load(tmp_path / "a", f), load(tmp_path / "b", f))


def test_camera_background_rule_rotation():
    """A pan of the camera moves background at infinity; a translation does not."""
    from mathutils import Matrix
    proj = np.array([[2.0, 0, 0, 0], [0, 2.0 * 64 / 48, 0, 0], [0, 0, -1.0, -0.2],
                     [0, 0, -1.0, 0]])
    view0 = np.array(Matrix.Identity(4))
    view_t = np.array(Matrix.Translation((1.0, 0.5, 0.0)).inverted())
    view_r = np.array(Matrix.Rotation(0.02, 4, "Y").inverted())
    c = VP.centers(48, 64)
    same = VP.camera_background_positions((48, 64), proj @ view_t, proj @ view0)
    np.testing.assert_allclose(same, c, atol=1e-9)
    moved = VP.camera_background_positions((48, 64), proj @ view_r, proj @ view0)
    dx = moved[..., 0] - c[..., 0]
    assert np.all(np.abs(dx) > 1.0) and (np.all(dx > 0) or np.all(dx < 0))


# --------------------------------------------------------------------------- settings

def _snapshot(scene):
    def props(owner):
        out = {}
        for p in owner.bl_rna.properties:
            if p.is_readonly or p.type in {"POINTER", "COLLECTION"}:
                continue
            v = getattr(owner, p.identifier)
            out[p.identifier] = tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
        return out
    r = scene.render
    return {"render": props(r), "image": props(r.image_settings), "cycles": props(scene.cycles),
            "layer": props(scene.view_layers[0]), "frame": scene.frame_current}


def _user_settings(scene):
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.cycles.samples = 37
    scene.render.filepath = "/nonexistent/user/output_"
    scene.render.image_settings.file_format = "PNG"
    scene.view_layers[0].use_pass_vector = False
    scene.view_layers[0].use_pass_z = False
    scene.frame_set(3)


def test_render_settings_restored(shift_scene, tmp_path):
    _user_settings(shift_scene)
    before = _snapshot(shift_scene)
    bake(shift_scene, tmp_path / "ok")
    assert _snapshot(shift_scene) == before
    # after an error in the middle of the bake
    calls = []
    with pytest.raises(B.BakeCancelled):
        B.run_bake(shift_scene, B.BakeSettings(out_dir=str(tmp_path / "c"), latent_factor=4),
                   cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert _snapshot(shift_scene) == before
    assert not os.path.exists("/nonexistent/user")


def test_cancel_leaves_whole_files_and_resume_completes(shift_scene, tmp_path, monkeypatch):
    out = tmp_path / "out"
    done = []       # Esc after frame 3 is on disk (it is checked between renders too)
    with pytest.raises(B.BakeCancelled):
        B.run_bake(shift_scene, B.BakeSettings(out_dir=str(out), latent_factor=4, preview=True,
                                               exr=True),
                   progress=lambda d, total, frame: done.append(d),
                   cancelled=lambda: max(done, default=0) >= 3)
    names = sorted(os.listdir(out))
    assert [n for n in names if n.startswith(".")] == []
    assert [n for n in names if n.startswith("noise_") and n.endswith(".npy")] == \
        ["noise_0001.npy", "noise_0002.npy", "noise_0003.npy"]
    for n in names:
        if n.endswith(".npy"):
            assert np.load(out / n).shape == (48, 64, 4)
    assert json.loads((out / "bake.json").read_text())["status"] == "in progress"
    rendered = []
    real = VectorRenderer.render
    monkeypatch.setattr(VectorRenderer, "render",
                        lambda self, f: rendered.append(f) or real(self, f))
    res = bake(shift_scene, out, preview=True, exr=True)
    assert res.resumed_frames == 3 and res.frames == list(FRAMES)
    assert sorted(rendered) == [3, 4, 5]     # frame 3 only as the previous of 4
    bake(shift_scene, tmp_path / "whole")
    for f in FRAMES:
        np.testing.assert_array_equal(load(out, f), load(tmp_path / "whole", f))
        assert os.path.isfile(out / f"noise_{f:04d}.exr")


# --------------------------------------------------------------------------- errors

def test_errors(shift_scene, tmp_path):
    cam = shift_scene.camera
    shift_scene.camera = None
    with pytest.raises(BakeError, match="no camera"):
        bake(shift_scene, tmp_path / "a")
    shift_scene.camera = cam
    shift_scene.render.use_motion_blur = True
    with pytest.raises(BakeError, match="motion blur"):
        bake(shift_scene, tmp_path / "b")
    shift_scene.render.use_motion_blur = False
    (tmp_path / "file").write_text("x")
    with pytest.raises(BakeError, match="output folder"):
        bake(shift_scene, tmp_path / "file" / "sub")
    with pytest.raises(BakeError, match="no file for frame"):
        bake(shift_scene, tmp_path / "c", source="exr", exr_path=str(tmp_path / "none_####.exr"))
    # an EXR sequence rendered without the Vector pass
    seq = tmp_path / "novec"
    seq.mkdir()
    r = shift_scene.render
    if hasattr(r.image_settings, "media_type"):
        r.image_settings.media_type = "MULTI_LAYER_IMAGE"
    r.image_settings.file_format = "OPEN_EXR_MULTILAYER"
    for f in FRAMES:
        shift_scene.frame_set(f)
        r.filepath = str(seq / f"f_{f:04d}.exr")
        bpy.ops.render.render(write_still=True)
    with pytest.raises(BakeError, match="no Vector pass"):
        bake(shift_scene, tmp_path / "d", source="exr", exr_path=str(seq))


def test_operator_exec_bakes_and_loads_preview(shift_scene, tmp_path):
    s = shift_scene.cupy_noise
    s.out_dir = str(tmp_path / "op")
    s.latent_factor = 4
    assert bpy.ops.cupy_noise.bake() == {"FINISHED"}
    assert os.path.isfile(tmp_path / "op" / "noise_0005.npy")
    img = bpy.data.images["Warped noise preview"]
    assert img.source == "SEQUENCE"
    shift_scene.camera = None
    with pytest.raises(RuntimeError, match="no camera"):
        bpy.ops.cupy_noise.bake()


# --------------------------------------------------------------------------- headless

def _headless(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "blender_addon", "headless.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_headless(shift_blend, tmp_path):
    p = _headless(shift_blend, "--out", tmp_path / "h", "--frames", "2-4", "--method",
                  "particle", "--channels", "3", "--seed", "7", "--latent-factor", "2",
                  "--device", "cpu", "--exr", "--preview")
    assert p.returncode == 0, p.stderr
    assert "[noise] frame 4" in p.stdout
    names = os.listdir(tmp_path / "h")
    for f in (2, 3, 4):
        assert {f"noise_{f:04d}.npy", f"noise_{f:04d}.exr", f"preview_{f:04d}.png"} <= set(names)
    assert np.load(tmp_path / "h" / "latents.npy").shape == (3, 24, 32, 3)
    rec = json.loads((tmp_path / "h" / "bake.json").read_text())
    assert rec["seed"] == 7 and rec["method"] == "particle"


@pytest.mark.parametrize("args, message", [
    (["--out", "X"], "not found"),
    (["--out", "/proc/forbidden/x"], "output folder"),
    (["--out", "X", "--frames", "5-2"], "--frames"),
    (["--out", "X", "--source", "exr", "--exr-path", "/nonexistent"], "EXR sequence"),
])
def test_headless_errors(shift_blend, tmp_path, args, message):
    blend = str(tmp_path / "missing.blend") if message == "not found" else shift_blend
    p = _headless(blend, *args, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "error:" in p.stderr and message in p.stderr


# --------------------------------------------------------------------------- the zip

INSTALL_SCRIPT = r"""
import sys, os
sys.path[:] = [p for p in sys.path if os.path.abspath(p) != ROOT and p not in ("", ".")]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in getattr(f, "__name__", "").lower()]
import bpy
sys.path.insert(0, os.path.join(ROOT, "sample_scenes"))
import blender_scenes
scene = blender_scenes.shift_scene()   # factory settings first: they disable add-ons
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default",
                                               enable_on_install=True)
assert res == {"FINISHED"}, res
import importlib
mod = importlib.import_module("bl_ext.user_default.cupy_noise")
import cupy_core
assert os.path.abspath(cupy_core.__file__).startswith(USER), cupy_core.__file__
import OpenEXR
scene.cupy_noise.out_dir = OUT
scene.cupy_noise.latent_factor = 4
scene.cupy_noise.write_exr = True
assert bpy.ops.cupy_noise.bake() == {"FINISHED"}
print("INSTALLED-BAKE-OK", cupy_core.__file__, flush=True)
os._exit(0)   # bpy 4.2 may crash (SIGSEGV) at interpreter exit after an extension install
"""


def test_built_zip_installs_and_bakes(tmp_path):
    zip_path = os.environ.get("CUPY_NOISE_ADDON_ZIP")
    if not zip_path:
        dist = tmp_path / "dist"
        p = subprocess.run([sys.executable, os.path.join(ROOT, "build.py"), "addon",
                            "--dist", str(dist)], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        zip_path = str(next(dist.glob("*.zip")))
    user = tmp_path / "user"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user), PYTHONNOUSERSITE="1")
    script = (f"ROOT={ROOT!r}; ZIP={zip_path!r}; USER={str(user)!r}; "
              f"OUT={str(tmp_path / 'out')!r}\n" + INSTALL_SCRIPT)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0 and "INSTALLED-BAKE-OK" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    assert os.path.isfile(tmp_path / "out" / "noise_0005.exr")


def test_modal_cancel_runs_the_workers_last_blender_calls():
    # Blender may end a modal operator itself (a file load): cancel() must stop the
    # worker and still run the calls it hands over, e.g. restoring render settings.
    import queue
    import threading
    from types import SimpleNamespace
    from blender_addon.operators import CUPYNOISE_OT_bake

    op = SimpleNamespace(_calls=queue.Queue(), _cancel=False, _timer="timer")
    ran = []

    def main(fn):
        box, ev = {}, threading.Event()
        op._calls.put((fn, box, ev))
        ev.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def work():
        try:
            while not op._cancel:                      # frames, each with a Blender call
                main(lambda: ran.append(("frame", threading.get_ident())))
        finally:
            main(lambda: ran.append(("restore", threading.get_ident())))

    op._thread = threading.Thread(target=work, daemon=True)
    op._thread.start()
    removed = []
    wm = SimpleNamespace(event_timer_remove=removed.append, progress_end=lambda: None)
    CUPYNOISE_OT_bake.cancel(op, SimpleNamespace(window_manager=wm))
    assert not op._thread.is_alive() and op._cancel and removed == ["timer"]
    assert ran[-1] == ("restore", threading.get_ident())   # on this (the main) thread


# --------------------------------------------------------------------------- targets, preview

def test_headless_target_writes_model_latents(shift_blend, tmp_path):
    """--target animatediff: 4 channels, latents pooled by 8, [B, C, F, h, w]."""
    p = _headless(shift_blend, "--out", tmp_path / "t", "--frames", "1-5", "--device", "cpu",
                  "--target", "animatediff")
    assert p.returncode == 0, p.stderr
    model = np.load(tmp_path / "t" / "model_latents.npy")
    assert model.shape == (1, 4, 5, 6, 8)
    rec = json.loads((tmp_path / "t" / "bake.json").read_text())
    assert rec["target"]["target"] == "animatediff" and rec["channels"] == 4
    np.testing.assert_array_equal(model[0, :, 2], np.moveaxis(
        cupy_core.downsample(np.load(tmp_path / "t" / "noise_0003.npy"), 8), -1, 0))


@pytest.mark.parametrize("args, words", [
    (("--target", "wan", "--frames", "1-4"), ("4 frames", "1 or 5")),
    (("--target", "wan2.2-5b", "--frames", "1-5"), ("48",)),          # 64 x 48: needs 32k
    (("--target", "animatediff", "--channels", "16"), ("channels",)),
    (("--target", "nonsense",), ("target",)),
])
def test_headless_target_refused_before_rendering(shift_blend, tmp_path, args, words):
    out = tmp_path / "r"
    p = _headless(shift_blend, "--out", out, "--device", "cpu", *args)
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()
    assert err[-1].startswith("error:") and all(w in err[-1] for w in words), p.stderr
    assert "[noise] frame" not in p.stdout and not out.exists()


def test_list_targets_headless(tmp_path):
    p = _headless("--list-targets")
    assert p.returncode == 0 and "animatediff" in p.stdout and "wan" in p.stdout


def test_preview_writes_animation_and_flicker(shift_scene, tmp_path):
    """The add-on's preview also writes the animated side-by-side with the render, the
    slice picture and the flicker figures: the square moves by whole pixels and the
    background stands still, so the warped noise scores about 0 where fixed noise on
    the square scores about 2 (measured: warped 0.15 on the moving square, whose
    anti-aliased edges move by fractions of a pixel, 0.02 elsewhere; fixed 2.08)."""
    res = bake(shift_scene, tmp_path, preview=True)
    assert res.image is not None                       # the PNG sequence stays loaded
    assert (tmp_path / "comparison.gif").read_bytes()[:6] == b"GIF89a"
    assert (tmp_path / "space_time.png").exists()
    kinds = json.loads((tmp_path / "flicker.json").read_text())["kinds"]
    moving, still = "moving (>= 0.5 px/frame)", "still (< 0.5 px/frame)"
    # The square's anti-aliased edges have fractional vectors: not exactly 0 there.
    assert kinds["warped"][moving]["flicker"] < 0.1 * kinds["fixed"][moving]["flicker"]
    assert kinds["warped"][still]["flicker"] < 0.05, kinds["warped"]
    assert kinds["fixed"][moving]["flicker"] > 1.5 and kinds["fresh"]["all"]["flicker"] > 1.7
