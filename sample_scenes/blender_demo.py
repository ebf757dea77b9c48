"""The demo behind ``python build.py demo``: build the animated sample scene, bake it
headless through bpy (grid method, 4 channels, latent factor 8, PNG previews), and
write ``demo_preview.png``: four frames of the noise side by side.

    python sample_scenes/blender_demo.py OUT_DIR       (bpy from PyPI)
"""
import os
import shutil
import sys

import bpy  # noqa: F401  (first)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import blender_scenes  # noqa: E402
from blender_addon import headless  # noqa: E402
from cupy_core.bake import files as cio  # noqa: E402


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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "demo_output")))
