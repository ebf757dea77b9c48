"""``python -m cupy_core surface MESH_SEQUENCE --camera CAMERA.json --out DIR``: bake
surface noise (or geometric screen-space motion) from a mesh sequence with trimesh.

MESH_SEQUENCE: a folder of mesh files (natural name order), a glob pattern, or a path
with # for the frame number; OBJ, PLY, glTF/GLB (anything trimesh loads), every frame
with the same vertices and triangles (a deforming mesh), and UVs for ``--source
surface``. CAMERA.json: see ``cupy_core/surface/camera.py`` (README "Camera JSON").
"""
import argparse
from pathlib import Path

from ..bake.loop import LazyFrames
from .common import (add_bake_options, add_run_options, array_module_for, check_memory,
                     listed_targets, print_summary, resolve_target, run_command)


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
    add_bake_options(p)
    p.add_argument("--source", choices=("surface", "geometry"), default="surface",
                   help="surface: noise in the mesh's UV texture, carried to the screen "
                        "each frame (default); geometry: screen-space noise warped by "
                        "the mesh's motion")
    p.add_argument("--texture-size", type=int, default=256, metavar="N",
                   help="surface: the texture noise is N x N (default 256)")
    p.add_argument("--background", default=None,
                   help="pixels not wholly on a surface: fresh|static (surface, default "
                        "fresh); camera|fresh for pixels on no surface (geometry, "
                        "default camera)")
    add_run_options(p)
    return p


def run(args):
    from ..surface.bake import bake_geometry_sequence, bake_surface_sequence
    from ..surface.camera import load_cameras
    from ..surface.maps import BACKGROUND_RULES, GEOMETRY_BACKGROUND_RULES
    from ..surface.meshio import (geometry_positions_rays, load_mesh_sequence, sequence_files,
                         uv_positions_rays)

    if args.texture_size < 1:
        raise ValueError(f"--texture-size must be >= 1, got {args.texture_size}")
    rules = BACKGROUND_RULES if args.source == "surface" else GEOMETRY_BACKGROUND_RULES
    background = args.background or rules[0]
    if background not in rules:
        raise ValueError(f"--background for --source {args.source} must be one of "
                         f"{', '.join(rules)}, got {background!r}")
    from ..bake.fingerprint import hash_file, hash_files
    from ..bake.sequences import has_frame_pattern, pattern_files

    if has_frame_pattern(args.meshes):   # two files of one frame: refused, naming them
        pattern_files(args.meshes, what="mesh sequence")
    seq = load_mesh_sequence(args.meshes)
    cams = load_cameras(args.camera, len(seq))
    shape = cams[0].shape
    target, channels, latent_factor = resolve_target(args, len(seq), shape[0], shape[1])
    xp = array_module_for(args.device)
    max_memory = check_memory(args, shape, channels, xp=xp,
                              source="surface" if args.source == "surface" else "flow",
                              texture_size=args.texture_size)
    mesh_files = sequence_files(args.meshes)
    source = {"meshes": [str(Path(f).resolve()) for f in mesh_files],
              "camera": str(Path(args.camera).resolve()), "route": "trimesh rays"}
    inputs = {"meshes": hash_files(mesh_files), "camera": hash_file(args.camera)}
    common = dict(shape=shape, method=args.method, seed=args.seed, channels=channels,
                  latent_factor=latent_factor, source=source, target=target,
                  progress=not args.quiet, preview=args.preview,
                  resume=not args.no_resume, xp=xp, inputs=inputs, max_memory=max_memory)
    if args.source == "surface":
        if seq[0][1].uv is None:
            raise ValueError(f"mesh {sequence_files(args.meshes)[0]!r} has no UVs (the "
                             "surface source needs them)")

        def uv_map(i):
            tm, m = seq[i]
            return uv_positions_rays(tm, m, cams[i], args.texture_size)

        result = bake_surface_sequence(LazyFrames(len(seq), uv_map), args.out, frame_count=len(seq),
                                       texture_size=args.texture_size,
                                       background=background, **common)
    else:
        def positions(t):
            (tp, mp), (tn, mn) = seq[t], seq[t + 1]
            return geometry_positions_rays(tn, mn, tp, mp, cams[t + 1], cams[t],
                                           background=background)

        result = bake_geometry_sequence(LazyFrames(len(seq) - 1, positions), args.out,
                                        **common)
    if not args.quiet:
        print_summary(result)
    return 0


def main(argv=None):
    argv = list(argv) if argv is not None else None
    if argv is not None and listed_targets(argv):
        return 0
    return run_command(run, build_parser().parse_args(argv))
