"""A waving flag (a deforming grid mesh with UVs) under a moving perspective camera,
as a mesh sequence for ``python -m cupy_core surface`` (no Blender needed):

    python sample_scenes/flag_sequence.py OUT_DIR [--frames 8] [--width 64 --height 48]
    python -m cupy_core surface OUT_DIR/meshes --camera OUT_DIR/camera.json --out noise/

Writes ``OUT_DIR/meshes/flag_XXXX.obj`` (same vertices and triangles every frame,
UVs u along the flag, v up) and ``OUT_DIR/camera.json`` (one pinhole camera per frame,
OpenGL convention, sliding sideways while it looks at the flag). ``flag(t)`` and
``cameras(...)`` give the same data in memory (tests use them).
"""
import argparse
import json
import math
import os

import numpy as np

WIDTH, HEIGHT = 2.0, 1.2       # the flag, world units (x along, z up)


def flag(t, nx=24, ny=12, amplitude=0.12, wavelength=1.0, speed=0.25):
    """``(vertices (V, 3), faces (T, 3), uv (V, 2))`` at time ``t`` (frames): a grid in
    the x-z plane (pole at x = 0), waving in y with an amplitude growing along x."""
    u, v = np.meshgrid(np.linspace(0, 1, nx + 1), np.linspace(0, 1, ny + 1))
    x = u * WIDTH
    z = v * HEIGHT
    phase = 2 * math.pi * (x / wavelength - speed * t)
    y = amplitude * (x / WIDTH) * np.sin(phase) + 0.03 * (x / WIDTH) * np.sin(3 * z + t)
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    uv = np.stack([u, v], axis=-1).reshape(-1, 2)
    idx = np.arange((nx + 1) * (ny + 1)).reshape(ny + 1, nx + 1)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, faces, uv


def look_at(eye, target, up=(0.0, 0.0, 1.0)):
    """camera_to_world (OpenGL: the camera looks along -Z, +Y up)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    upv = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, upv, back, eye
    return m


def camera(t, width=64, height=48, focal=1.1):
    """The camera JSON entry of frame ``t``: sliding along x, looking at the flag."""
    eye = (0.9 + 0.04 * t, -3.0, 0.6 + 0.01 * t)
    f = focal * width
    return {"camera_to_world": look_at(eye, (1.0, 0.0, 0.6)).tolist(), "fx": f, "fy": f,
            "cx": width / 2, "cy": height / 2, "convention": "opengl", "near": 0.1,
            "far": 100.0}


def cameras(frames, width=64, height=48):
    return {"width": width, "height": height,
            "frames": [camera(t, width, height) for t in range(frames)]}


def write_obj(path, verts, faces, uv):
    with open(path, "w") as f:
        f.write("# waving flag\n")
        f.writelines(f"v {x:.9f} {y:.9f} {z:.9f}\n" for x, y, z in verts)
        f.writelines(f"vt {a:.9f} {b:.9f}\n" for a, b in uv)
        f.writelines(f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}\n" for a, b, c in faces)


def write(out, frames=8, width=64, height=48):
    meshes = os.path.join(out, "meshes")
    os.makedirs(meshes, exist_ok=True)
    for t in range(frames):
        write_obj(os.path.join(meshes, f"flag_{t:04d}.obj"), *flag(t))
    with open(os.path.join(out, "camera.json"), "w") as f:
        json.dump(cameras(frames, width, height), f, indent=1)
    return meshes, os.path.join(out, "camera.json")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    a = ap.parse_args()
    m, c = write(a.out, a.frames, a.width, a.height)
    print(f"wrote {a.frames} meshes to {m} and the cameras to {c}")
