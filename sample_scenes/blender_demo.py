"""The demo behind ``python build.py demo``: build the animated sample scene, bake it
headless through bpy (grid method, 4 channels, latent factor 8, PNG previews), and
write ``demo_preview.png``: four frames of the noise side by side.

Then the pictures of ``cupy_core.preview`` (issue 16): every frame is rendered once
more through the add-on's own Vector/Depth renderer (Cycles, 1 sample, no bounces: a
fraction of a second a frame), which gives the same backward positions the bake used
and, in the same file, an object-index pass marking the moving objects; the picture
of the scene is a Workbench render (material colours, studio light: about 0.1 s a
frame headless; where Workbench cannot render, the Cycles pass's own image). Written
beside the bake:

* ``comparison.gif``: the animated side-by-side: the render, warped, fixed and fresh
  noise, a window of pixels enlarged and the whole frame softened;
* ``space_time.png``: one line of pixels across the moving objects over all frames;
* ``flicker.json``, also printed: the warping error of each kind of noise on the
  moving objects and on the rest (0 = moves with the scene, 2 = unrelated noise).

    python sample_scenes/blender_demo.py OUT_DIR       (bpy from PyPI)
"""
import os
import shutil
import sys
import tempfile
import time

import bpy  # noqa: F401  (first)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import blender_scenes  # noqa: E402
from blender_addon import headless  # noqa: E402
from cupy_core.bake import files as cio  # noqa: E402

MOVING = ("CubeA", "CubeB", "Ball")   # the objects blender_scenes.demo_scene animates


def main(out):
    out = os.path.abspath(out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    blend = os.path.join(out, "scene.blend")
    blender_scenes.save("demo", blend)
    code = headless.main(["--out", out, "--method", "grid", "--channels", "4",
                          "--seed", "0", "--latent-factor", "8", "--device", "auto",
                          "--preview", "--no-resume"], blend_file=blend)
    if code:
        return code
    frames = [1, 8, 16, 24]
    tiles = [cio.noise_to_preview(np.load(os.path.join(out, cio.frame_name("noise", f, "npy"))))
             for f in frames]
    gap = np.full((tiles[0].shape[0], 4, tiles[0].shape[2]), 255, np.uint8)
    row = np.concatenate(sum(([t, gap] for t in tiles), [])[:-1], axis=1)
    cio.write_png_atomic(os.path.join(out, "demo_preview.png"), row)
    print(f"[demo] {out}: scene.blend, noise_XXXX.npy, preview_XXXX.png, latents.npy, "
          f"bake.json, demo_preview.png (frames {', '.join(map(str, frames))})", flush=True)
    show(out, blend)
    return 0


# --------------------------------------------------------------------------- the pictures

def _srgb(linear):
    """Scene-linear RGB -> sRGB uint8 (the standard view transform)."""
    x = np.clip(np.nan_to_num(linear, nan=0.0), 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(np.rint(s * 255.0), 0, 255).astype(np.uint8)


def render_passes(blend, frames):
    """Render ``frames`` of ``blend`` with the add-on's Vector/Depth renderer, the
    object-index pass on (the moving objects are index 1). Returns ``(positions,
    renders, moving)``: the backward positions of every frame after the first, as the
    bake computes them (``readers.vectors.backward_positions``, camera background),
    the beauty pass as sRGB uint8, and the moving objects' masks."""
    from blender_addon.readers import vectors as V
    try:                                  # where the add-on's restructuring puts them
        from cupy_core.vector_pass import backward_positions
    except ImportError:
        backward_positions = V.backward_positions
    try:
        from blender_addon.bake.scene_changes import VectorRenderer
    except ImportError:
        from blender_addon.render import VectorRenderer

    bpy.ops.wm.open_mainfile(filepath=blend)
    scene = bpy.context.scene
    layer = bpy.context.view_layer
    for name in MOVING:
        bpy.data.objects[name].pass_index = 1
    layer.use_pass_object_index = True
    folder = tempfile.mkdtemp(prefix="cupy_demo_render_")
    passes = []
    try:
        with VectorRenderer(scene, layer, folder) as renderer:
            for f in frames:
                path, cam = renderer.render(f)
                ch = V.read_exr_channels(path)
                vec, depth = V.read_vector_exr(path)
                beauty = V.find_pass(ch, "Combined", ("R", "G", "B"), path)
                index = V.find_pass(ch, "IndexOB", ("X",), path)[..., 0]
                passes.append((vec, depth, cam, _srgb(beauty), index > 0.5))
                os.remove(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    beauty = workbench_renders(scene, frames)
    if beauty is not None:
        passes = [p[:3] + (b,) + p[4:] for p, b in zip(passes, beauty)]
    positions = [backward_positions(passes[i][0], passes[i][1], passes[i - 1][0],
                                      passes[i - 1][1], background="camera",
                                      cam_now=passes[i][2], cam_prev=passes[i - 1][2])
                 for i in range(1, len(passes))]
    return positions, [p[3] for p in passes], [p[4] for p in passes]


def workbench_renders(scene, frames):
    """sRGB uint8 Workbench renders of ``frames`` (None if Workbench fails here)."""
    r = scene.render
    old = (r.engine, r.filepath, r.image_settings.file_format, scene.frame_current)
    folder = tempfile.mkdtemp(prefix="cupy_demo_workbench_")
    images = []
    try:
        r.engine = "BLENDER_WORKBENCH"
        scene.display.shading.color_type = "MATERIAL"
        scene.display.shading.show_shadows = True
        r.image_settings.file_format = "PNG"
        for f in frames:
            scene.frame_set(f)
            r.filepath = os.path.join(folder, f"frame_{f:06d}.png")
            bpy.ops.render.render(write_still=True)
            img = bpy.data.images.load(r.filepath)
            try:
                w, h = img.size
                px = np.empty(w * h * 4, dtype=np.float32)
                img.pixels.foreach_get(px)
            finally:
                bpy.data.images.remove(img)
            rgb = px.reshape(h, w, 4)[::-1, :, :3]          # Blender's rows: bottom first
            images.append(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))
    except Exception as exc:   # no OpenGL here: keep the Cycles pass's image
        print(f"[demo] Workbench render failed ({exc}); showing the Cycles pass",
              flush=True)
        return None
    finally:
        r.engine, r.filepath, r.image_settings.file_format = old[:3]
        scene.frame_set(old[3])
        shutil.rmtree(folder, ignore_errors=True)
    return images


def focus_of(masks):
    """``((x, y), line)``: the centre of the moving objects over all frames, and the
    row that crosses them most often (the slice's line, left to right)."""
    total = np.sum(masks, axis=0).astype(np.float64)
    h, w = total.shape
    if total.sum() == 0:
        return (w / 2.0, h / 2.0), ((0.0, h / 2.0), (float(w), h / 2.0))
    row = int(np.argmax(total.sum(axis=1)))
    x = float((total.sum(axis=0) * (np.arange(w) + 0.5)).sum() / total.sum())
    return (x, row + 0.5), ((0.0, row + 0.5), (float(w), row + 0.5))


def show(out, blend):
    """comparison.gif, space_time.png and the flicker figures of the bake in ``out``."""
    from cupy_core.preview import preview_bake

    start = time.perf_counter()
    bpy.ops.wm.open_mainfile(filepath=blend)
    first, last = bpy.context.scene.frame_start, bpy.context.scene.frame_end
    frames = list(range(first, last + 1))
    positions, renders, moving = render_passes(blend, frames)
    rendered = time.perf_counter() - start
    focus, line = focus_of(moving)
    result = preview_bake(
        out, positions=positions, renders=renders, focus=focus, line=line,
        regions={"moving objects": moving, "the rest": [~m for m in moving]},
        zoom=4, panel=256, blur=2.0, delay_ms=120,
        title="BLENDER SCENE: WARPED, FIXED, FRESH NOISE")
    print("[demo] flicker (warping error: mean of (frame t - frame t-1 moved by the "
          "scene's motion)^2 over pixels visible in both, nearest sampling; 0 = moves "
          "with the scene, 2 = unrelated noise):")
    for line in result.lines:
        print("[demo]   " + line)
    print(f"[demo] pictures in {time.perf_counter() - start:.1f} s ({rendered:.1f} s "
          f"rendering): {result.gif}, {result.slices}, {result.flicker_json}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "demo_output")))
