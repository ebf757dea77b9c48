"""``python -m cupy_core surface MESH_SEQUENCE --camera CAMERA.json --out DIR``: bake
surface noise (or geometric screen-space motion) from a mesh sequence with trimesh.

MESH_SEQUENCE: a folder of mesh files (natural name order), a glob pattern, or a path
with # for the frame number; OBJ, PLY, glTF/GLB (anything trimesh loads), every frame
with the same vertices and triangles (a deforming mesh), and UVs for ``--source
surface``. CAMERA.json: see ``cupy_core/surface/camera.py`` (README "Camera JSON").
"""
import argparse
from pathlib import Path

from .common import add_device_option, array_module_for, print_summary, run_command


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m cupy_core surface",
        description="Bake noise that sticks to a deforming mesh's surface (its UV "
                    "texture space), or screen-space noise warped by the mesh's exact "
                    "motion, from a mesh sequence and a camera file; needs trimesh.")
    p.add_argument("meshes", metavar="MESH_SEQUENCE",
                   help="folder of mesh files, a glob pattern, or a path with # (OBJ, "
                        "PLY, glTF; same topology in every frame)")
    p.add_argument("--camera", required=True, metavar="CAMERA.json",
                   help="camera file: width, height, and one camera or one per frame")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--source", choices=("surface", "geometry"), default="surface",
                   help="surface: noise in the mesh's UV texture, carried to the screen "
                        "each frame (default); geometry: screen-space noise warped by "
                        "the mesh's motion")
    p.add_argument("--texture-size", type=int, default=256, metavar="N",
                   help="surface: the texture noise is N x N (default 256)")
    p.add_argument("--method", choices=("grid", "particle"), default="grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=4, metavar="C")
    p.add_argument("--latent-factor", type=int, default=1, metavar="F")
    p.add_argument("--background", default=None,
                   help="pixels not wholly on a surface: fresh|static (surface, default "
                        "fresh); camera|fresh for pixels on no surface (geometry, "
                        "default camera)")
    p.add_argument("--preview", action="store_true")
    p.add_argument("--no-resume", action="store_true")
    add_device_option(p)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def run(args):
    from ..surface.bake import bake_geometry_sequence, bake_surface_sequence
    from ..surface.camera import load_cameras
    from ..surface.maps import BACKGROUND_RULES, GEOMETRY_BACKGROUND_RULES
    from ..surface.meshio import (geometry_positions_rays, load_mesh_sequence, sequence_files,
                         uv_positions_rays)

    if args.channels < 1:
        raise ValueError(f"--channels must be >= 1, got {args.channels}")
    if args.texture_size < 1:
        raise ValueError(f"--texture-size must be >= 1, got {args.texture_size}")
    rules = BACKGROUND_RULES if args.source == "surface" else GEOMETRY_BACKGROUND_RULES
    background = args.background or rules[0]
    if background not in rules:
        raise ValueError(f"--background for --source {args.source} must be one of "
                         f"{', '.join(rules)}, got {background!r}")
    seq = load_mesh_sequence(args.meshes)
    cams = load_cameras(args.camera, len(seq))
    shape = cams[0].shape
    xp = array_module_for(args.device)
    source = {"meshes": [str(Path(f).resolve()) for f in sequence_files(args.meshes)],
              "camera": str(Path(args.camera).resolve()), "route": "trimesh rays"}
    common = dict(shape=shape, method=args.method, seed=args.seed, channels=args.channels,
                  latent_factor=args.latent_factor, source=source,
                  progress=not args.quiet, preview=args.preview,
                  resume=not args.no_resume, xp=xp)
    if args.source == "surface":
        if seq[0][1].uv is None:
            raise ValueError(f"mesh {sequence_files(args.meshes)[0]!r} has no UVs (the "
                             "surface source needs them)")

        class Maps:
            def __getitem__(self, i):
                tm, m = seq[i]
                return uv_positions_rays(tm, m, cams[i], args.texture_size)

        result = bake_surface_sequence(Maps(), args.out, frame_count=len(seq),
                                       texture_size=args.texture_size,
                                       background=background, **common)
    else:
        class Positions:
            def __len__(self):
                return len(seq) - 1

            def __getitem__(self, t):
                if not 0 <= t < len(seq) - 1:
                    raise IndexError(t)
                (tp, mp), (tn, mn) = seq[t], seq[t + 1]
                return geometry_positions_rays(tn, mn, tp, mp, cams[t + 1], cams[t],
                                               background=background)

        result = bake_geometry_sequence(Positions(), args.out, **common)
    if not args.quiet:
        print_summary(result)
    return 0


def main(argv=None):
    return run_command(run, build_parser().parse_args(argv))
