"""Bake warped noise without the UI, from a checkout or the installed add-on: the
flags become a ``settings.BakeSettings`` (``settings_from_flags``) and go to the same
``bake.run_bake`` as the panel's Bake button.

    blender -b FILE.blend --python blender_addon/headless.py -- FLAGS
    python blender_addon/headless.py FILE.blend FLAGS        (bpy from PyPI)

FLAGS: --out DIR [--source vectors|exr|surface|geometry|volume] [--texture-size N] [--exr-path PATH] [--method grid|particle]
[--channels C] [--seed S] [--frames A-B] [--latent-factor F] [--device auto|cpu|gpu]
[--target NAME [--temporal nearest|blend_norm] [--degradation A]] [--list-targets]
[--background camera|vectors|fresh] [--exr] [--preview] [--no-resume]
volume: --domain NAME [--motion-object NAME --follow all|inside | --velocity DIR |
--fluid-cache DIR | --volume-motion fluid] [--fluid-format auto|mantaflow|world]
[--velocity-units frame|second]
[--resolution N] [--no-vdb]
GPU support (what the preferences' buttons do; no .blend needed):
--install-gpu-support [--wheels DIR] | --remove-gpu-support

Prints progress; exit codes: 0 done, 2 bad input (one ``error:`` line says what), 1
other errors (a full disk: one ``error:`` line naming the folder), 130 interrupted by
Ctrl-C (SIGINT), 143 stopped by SIGTERM (``timeout``, SLURM, ``docker stop``): the bake
stops at the next safe point, removes its temporary files, and the same command
resumes it.
"""
import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build_parser(prog):
    p = argparse.ArgumentParser(prog=prog, description="Bake warped noise from a Blender "
                                "scene: its rendered motion vectors, an EXR sequence, its "
                                "meshes, or objects, a fluid cache or velocity files "
                                "moving a volume domain.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder "
                   "(// = relative to the .blend)")
    p.add_argument("--source", choices=("vectors", "exr", "surface", "geometry", "volume"),
                   default="vectors",
                   help="vectors: render the Vector/Depth passes (Cycles, 1 sample); "
                        "exr: read a multilayer EXR sequence (--exr-path); surface: noise "
                        "in the meshes' UV textures; geometry: screen noise moved by the "
                        "meshes' exact motion (both: no render); volume: 3-D noise in a "
                        "domain box (--domain)")
    p.add_argument("--texture-size", type=int, default=512, metavar="N",
                   help="surface: N x N noise texture per mesh (default 512)")
    p.add_argument("--exr-path", default="", metavar="PATH",
                   help="EXR sequence: a folder, or a path with # for the frame number")
    v = p.add_argument_group("volume source")
    v.add_argument("--domain", default="", metavar="NAME",
                   help="the domain box object (its bounding box is the voxel grid)")
    v.add_argument("--volume-motion", choices=("objects", "fluid", "velocity"), default=None,
                   help="what moves the noise (default: velocity with --velocity, fluid "
                        "with --fluid-cache, else objects)")
    v.add_argument("--motion-object", action="append", default=[], metavar="NAME",
                   help="objects motion: the object whose motion drives the noise (a "
                        "lattice or armature deforms it); repeat it with --follow inside "
                        "for several objects, each carrying the voxels in its box")
    v.add_argument("--follow", choices=("all", "inside"), default="all",
                   help="all: the whole domain follows the object; inside: only voxels "
                        "in its bounding box")
    v.add_argument("--velocity", default="", metavar="DIR",
                   help="velocity motion: folder of velocity_XXXX.npy (D, H, W, 3)")
    v.add_argument("--fluid-cache", default="", metavar="DIR",
                   help="fluid motion: a cache folder (with data/) instead of the "
                        "domain's Fluid modifier's")
    v.add_argument("--fluid-format", choices=("auto", "mantaflow", "world"), default="auto",
                   help="fluid cache layout: Blender's own (mantaflow), or world placement "
                        "and --velocity-units (a VDB from another tool); auto: detect")
    v.add_argument("--velocity-units", choices=("frame", "second"), default="frame",
                   help="velocity values in world units per frame or per second")
    v.add_argument("--resolution", type=int, default=32, metavar="N",
                   help="voxels along the domain's longest side (default 32)")
    v.add_argument("--no-vdb", action="store_true", help="do not write noise_XXXX.vdb")
    p.add_argument("--method", choices=("grid", "particle"), default="grid")
    p.add_argument("--channels", type=int, default=None, metavar="C",
                   help="noise channels (default: the target's, else 4)")
    p.add_argument("--target", default="none", metavar="NAME",
                   help="also write the latents a video model takes as they are "
                        "(wan, hunyuan, cogvideox, ltx, animatediff, gwtf, ...; "
                        "--list-targets shows them; default none)")
    p.add_argument("--list-targets", action="store_true",
                   help="print the targets and their rules, and exit")
    p.add_argument("--temporal", choices=("nearest", "blend_norm"), default="nearest",
                   help="the target's latent frames: nearest (exact, default) or "
                        "blend_norm (Go-with-the-Flow's, approximate)")
    p.add_argument("--degradation", type=float, default=0.0, metavar="A",
                   help="fresh noise mixed into the target's latents, 0..1 (default 0)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--frames", default=None, metavar="A-B",
                   help="frame range (default: the scene's)")
    p.add_argument("--latent-factor", type=int, default=None, metavar="F",
                   help="latents.npy pools the noise by F (default: the target's, "
                        "else 8; volume: 1)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--background", choices=("camera", "vectors", "fresh"), default="camera",
                   help="rule for pixels without geometry (default: camera)")
    p.add_argument("--exr", action="store_true", help="also write noise_XXXX.exr")
    p.add_argument("--preview", action="store_true", help="also write preview_XXXX.png")
    p.add_argument("--no-resume", action="store_true",
                   help="discard an earlier bake in DIR instead of resuming it")
    return p


def frames_joined(argv):
    """``--frames -3-1`` as ``--frames=-3-1``: argparse takes a value that starts with
    "-" for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--frames" and i + 1 < len(argv):
            out.append(f"--frames={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def one_line(text):
    return " ".join(str(text).split())


class Terminated(BaseException):
    """SIGTERM outside the bake (while the .blend loads)."""


def open_blend(bpy, path, error):
    """Open ``path``; a missing, damaged or foreign file is ``error`` naming it."""
    if not os.path.isfile(path):
        raise error(f"blend file {path!r} not found")
    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path))
    except RuntimeError as exc:
        said = one_line(exc).replace("Error: ", "")
        raise error(f"cannot open the blend file {path!r}: it is damaged (truncated?) or "
                    f"not a .blend ({said})") from None


def parse_frames(text):
    import re
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-|\.\.|:)\s*(-?\d+)\s*", text or "")
    if m is None:
        m1 = re.fullmatch(r"\s*(-?\d+)\s*", text or "")
        if m1 is None:
            raise ValueError(f"--frames must be A-B (for example 1-48), got {text!r}")
        return int(m1.group(1)), int(m1.group(1))
    a, b = int(m.group(1)), int(m.group(2))
    if b < a:
        raise ValueError(f"--frames {text}: the last frame is before the first")
    return a, b


# How the settings' check names what is missing (settings.UI_WORDS), in flags.
HEADLESS_WORDS = {
    "volume": "--source volume",
    "domain": "--domain NAME (the box object whose bounding box is the voxel grid)",
    "objects motion": "--source volume",
    "motion_objects": "--motion-object NAME (the object whose motion drives the noise), "
                      "or --velocity DIR, or --volume-motion fluid",
    "velocity motion": "--volume-motion velocity",
    "velocity_path": "--velocity DIR",
    "resolution": "--resolution",
    "channels": "--channels",
    "texture_size": "--texture-size",
    "latent_factor": "--latent-factor",
    "frames": "--frames",
    "target": "--target",
}


def settings_from_flags(settings_module, args):
    """The ``BakeSettings`` of the parsed flags (the volume motion, where not given:
    velocity with --velocity, fluid with --fluid-cache, else objects)."""
    start, end = parse_frames(args.frames) if args.frames else (None, None)
    motion = args.volume_motion or ("velocity" if args.velocity else
                                    "fluid" if args.fluid_cache else "objects")
    return settings_module.BakeSettings(
        out_dir=args.out, source=args.source, exr_path=args.exr_path, method=args.method,
        seed=args.seed, channels=args.channels, latent_factor=args.latent_factor,
        target=args.target, temporal=args.temporal, degradation=args.degradation,
        device=args.device, exr=args.exr, preview=args.preview, frame_start=start,
        frame_end=end, background=args.background, resume=not args.no_resume,
        texture_size=args.texture_size, domain=args.domain, volume_motion=motion,
        motion_objects=tuple(args.motion_object), follow=args.follow,
        velocity_path=args.velocity, fluid_cache=args.fluid_cache,
        velocity_units=args.velocity_units, fluid_format=args.fluid_format,
        resolution=args.resolution, vdb=not args.no_vdb)


def _import_addon():
    """The add-on package and cupy_core, from the checkout if this file is in one."""
    if os.path.isdir(os.path.join(ROOT, "cupy_core")) and ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    pkg = __package__
    if pkg:  # imported as part of the (installed) add-on
        import importlib
        return importlib.import_module(pkg)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import blender_addon
    return blender_addon


def _addon_with_bpy():
    """The add-on package once bpy imports; None, after one ``error:`` line, when it
    does not."""
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        print(f"error: cannot import bpy ({exc}): run inside Blender, or pip install bpy",
              file=sys.stderr)
        return None
    return _import_addon()


GPU_FLAGS = ("--install-gpu-support", "--remove-gpu-support")


def gpu_main(argv, run_probe=None):
    """``--install-gpu-support [--wheels DIR]`` / ``--remove-gpu-support``: what the
    preferences' buttons do, for render farms. 0 done, 2 with one ``error:`` line."""
    p = argparse.ArgumentParser(prog="headless.py", description="Install or remove the "
                                "add-on's GPU support (CuPy and NVRTC wheels).")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--install-gpu-support", action="store_true")
    g.add_argument("--remove-gpu-support", action="store_true")
    p.add_argument("--wheels", default=None, metavar="DIR",
                   help="install from this folder of wheels (no network)")
    args = p.parse_args(argv)
    addon = _addon_with_bpy()    # the folder is the extension's user folder: bpy's
    if addon is None:
        return 2
    from importlib import import_module
    G = import_module(addon.__name__ + ".gpu_support")
    try:
        folder = G.folder_for(addon.__name__)
        if args.remove_gpu_support:
            note = G.remove(folder)
            print(f"[gpu] removed GPU support from {folder}" + (f" ({note})" if note else ""),
                  flush=True)
            return 0
        shown = [-1]

        def progress(fraction, line):
            pct = int(100 * fraction)
            print(f"[gpu] {pct:3d}% {line}" if pct != shown[0] else f"[gpu]      {line}",
                  flush=True)
            shown[0] = pct
        _, act, status = G.install_and_probe(folder, wheels=args.wheels, progress=progress,
                                             run_probe=run_probe or G.probe)
    except KeyboardInterrupt:
        print("\nerror: interrupted; nothing was installed", file=sys.stderr)
        return 2
    except (G.GpuSupportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if act is not None and act.error:
        print(f"error: GPU support installed in {folder}, but {act.error}", file=sys.stderr)
        return 2
    if not status.ok:
        print(f"error: GPU support installed in {folder}, but the GPU probe failed: "
              f"{status.summary()}", file=sys.stderr)
        return 2
    print(f"[gpu] GPU support installed in {folder}: {status.summary()}", flush=True)
    return 0


def activate_gpu_support(addon):
    """The installed GPU support on sys.path before the bake imports cupy (the add-on's
    register() does this inside Blender; here the add-on may not be registered)."""
    from importlib import import_module
    G = import_module(addon.__name__ + ".gpu_support")
    try:
        act = G.activate(G.folder_for(addon.__name__))
    except Exception as exc:  # never stop a bake for this
        print(f"[noise] GPU support not activated: {exc}", file=sys.stderr)
        return
    if act is not None and act.error:
        print(f"[noise] GPU support not activated: {act.error}", file=sys.stderr)


def main(argv=None, blend_file=None):
    in_blender = "bpy" in sys.modules and blend_file is None and argv is None
    if argv is None:
        if in_blender:
            argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
        else:
            argv = sys.argv[1:]
    if any(a in GPU_FLAGS for a in argv):
        return gpu_main(argv)
    if "--list-targets" in argv:
        _import_addon()
        from cupy_core.targets import format_targets
        print(format_targets())
        return 0
    prog = ("blender -b FILE.blend --python headless.py --" if in_blender
            else "python headless.py FILE.blend")
    parser = build_parser(prog)
    if not in_blender and blend_file is None:
        if not argv or argv[0].startswith("-"):
            parser.print_usage(sys.stderr)
            print("error: give the .blend file first", file=sys.stderr)
            return 2
        blend_file, argv = argv[0], argv[1:]
    args = parser.parse_args(frames_joined(argv))
    addon = _addon_with_bpy()
    if addon is None:
        return 2
    import bpy
    activate_gpu_support(addon)
    from importlib import import_module
    bake = import_module(addon.__name__ + ".bake")
    settings_module = import_module(addon.__name__ + ".settings")

    # Before the bake a stop signal raises (nothing written yet). From the bake's start
    # it is only recorded: the bake's own handlers (bake.stops) stop it at a safe
    # point, and one arriving just outside them (as the bake begins or ends) is
    # reported after it, never raised in the middle of putting the handlers back.
    late = []
    old_handlers = {}
    for sig, handler in ((signal.SIGTERM, _terminated), (signal.SIGINT, _interrupted)):
        try:
            old_handlers[sig] = signal.signal(sig, handler)
        except (ValueError, OSError, AttributeError):
            pass
    try:
        settings = settings_from_flags(settings_module, args)
        settings.check(HEADLESS_WORDS)      # the flags' own words, before the .blend loads
        if blend_file is not None:
            open_blend(bpy, blend_file, bake.BakeError)
        t0 = time.monotonic()

        def progress(done, total, frame):
            print(f"[noise] frame {frame}: {done}/{total} done "
                  f"({time.monotonic() - t0:.1f} s)", flush=True)

        for sig in old_handlers:
            signal.signal(sig, lambda signum, frame: late.append(signum))
        result = bake.run_bake(bpy.context.scene, settings, progress=progress)
    except bake.BakeInterrupted as exc:
        print(f"\ninterrupted by {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:     # before the bake started
        code = 143 if isinstance(exc, Terminated) else 130
        print(f"\ninterrupted by {'SIGTERM' if code == 143 else 'Ctrl-C (SIGINT)'} before "
              "the bake started; nothing was written (rerun the same command to bake)",
              file=sys.stderr)
        return code
    except (bake.BakeError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in old_handlers.items():   # as a script: record the late ones
            signal.signal(sig, handler if _LATE is None else _record)
    kept = f" ({result.resumed_frames} resumed)" if result.resumed_frames else ""
    print(f"[noise] wrote {len(result.frames)} frames{kept} of {result.noise_shape} noise, "
          f"latents {result.latents_shape}, to {result.out_dir}", flush=True)
    if late:
        return _ended_by(late[0])
    return 0


def _ended_by(signum):
    """A stop signal that came as the bake ended: the bake is complete; say so."""
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    print(f"interrupted by {name} as the bake ended: every file is whole (a rerun "
          "finds the bake complete)", file=sys.stderr, flush=True)
    return 128 + signum


_LATE = None       # run_as_script: stop signals that arrive after the bake


def _terminated(signum, frame):
    raise Terminated()


def _interrupted(signum, frame):
    raise KeyboardInterrupt()


def _record(signum, frame):
    _LATE.append(signum)


def run_as_script():
    """``main()``, with SIGINT and SIGTERM handled everywhere: before the bake they
    raise (exit 130 / 143, nothing written), during it ``bake.stops`` stops it at a
    safe point, after it they are recorded (exit 130 / 143 with a message), and while
    the process shuts down (the bake complete) they are ignored rather than killing
    it mid-exit."""
    global _LATE
    _LATE = []
    old = {}
    for sig, handler in ((signal.SIGTERM, _terminated), (signal.SIGINT, _interrupted)):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        code = main()
    except (KeyboardInterrupt, Terminated) as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        print(f"\ninterrupted by {'SIGTERM' if code == 143 else 'Ctrl-C (SIGINT)'} before "
              "the bake started; nothing was written (rerun the same command to bake)",
              file=sys.stderr)
    for sig in old:
        signal.signal(sig, _record)
    sys.stdout.flush()
    if _LATE and not code:
        code = _ended_by(_LATE[0])
    sys.stderr.flush()
    for sig in old:   # ignored while the interpreter and Blender shut down (a stop
        signal.signal(sig, signal.SIG_IGN)   # then would kill it mid-exit: exit -2/-15)
    return code


if __name__ == "__main__":
    code = run_as_script()
    if code:
        sys.exit(code)
