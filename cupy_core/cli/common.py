"""What the command lines share (``python -m cupy_core`` and its ``surface``
subcommand): their options, the target choice, the closing summary, and the exit
codes: 0 done, 2 bad input (``error: ...``, nothing written), 1 other OS errors (a
full disk: ``error: disk full writing DIR/noise_0007.npy``), 130 interrupted by Ctrl-C
and 143 by SIGTERM (every file written is whole, the temporaries removed: the same
command resumes)."""
import os
import sys
import warnings

from ..device import DEVICES, use_gpu
from ..targets import TARGETS, TEMPORAL_MODES, format_targets, plan, target_settings


def run_command(run, args):
    """Run ``run(args)`` with Ctrl-C and SIGTERM stopping at the next safe point, and
    turn the outcome into an exit code and one message."""
    from ..bake.loop import LatentCropWarning
    from ..bake.stop import Stopped, exit_code, signal_name, stop_on_signals

    shown = warnings.showwarning

    def show_note(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LatentCropWarning):   # a note, not a warning's trace
            print(f"note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with stop_on_signals():
            warnings.showwarning = show_note
            try:
                return run(args)
            finally:
                warnings.showwarning = shown
    except KeyboardInterrupt as exc:
        _remove_temporaries(getattr(args, "out", None))
        how = (f"stopped by {signal_name(exc.signum)}" if isinstance(exc, Stopped)
               else "interrupted")
        print(f"\n{how}: every file in {args.out} is whole; rerun the same command to "
              "resume", file=sys.stderr)
        return exit_code(exc)
    except ValueError as exc:  # bad input, bad output folder, mismatched bake
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions changed mid-way...
        _remove_temporaries(getattr(args, "out", None))
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def _remove_temporaries(out):
    """Clear what a stopped write left (each write removes its own; this is the net)."""
    from ..bake.files import remove_stale_temporaries
    try:
        if out and os.path.isdir(out):
            remove_stale_temporaries(out)
    except OSError:
        pass


def check_memory(args, shape, channels, *, source="flow", texture_size=None, xp=None):
    """The memory check before reading or hashing the inputs at length (the bake loop
    checks again before its first write): ``--max-memory`` and the free memory."""
    from ..bake import memory
    max_memory = None if args.max_memory is None else memory.parse_size(args.max_memory)
    gpu = xp is not None and getattr(xp, "__name__", "") == "cupy"
    memory.check_memory(memory.estimate_bake_memory(
        shape, channels, source=source, method=args.method, gpu=gpu,
        texture_size=texture_size), max_memory)
    return max_memory


def add_bake_options(parser):
    """The options every bake command has: ``--out``, ``--method``, ``--seed``,
    ``--channels``, ``--latent-factor`` (no default, so that a target's values apply
    unless given, and a given one that contradicts the target is an error) and the
    target options."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--method", choices=("grid", "particle"), default="grid",
                        help="grid: exact polygon overlaps; particle: bilinear splats "
                             "(default: grid)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--channels", type=int, default=None, metavar="C",
                        help="noise channels (default: the target's, else 4 as Stable "
                             "Diffusion latents)")
    parser.add_argument("--latent-factor", type=int, default=None, metavar="F",
                        help="latents.npy is the noise pooled by F x F blocks (default: "
                             "the target's VAE factor, else 1: no pooling)")
    add_target_options(parser)


def add_run_options(parser):
    """``--preview``, ``--no-resume``, ``--device``/``--gpu`` and ``-q``."""
    parser.add_argument("--preview", action="store_true",
                        help="also write preview_XXXX.png (channels 0-2 as colour)")
    parser.add_argument("--no-resume", action="store_true",
                        help="remove every file of an earlier bake in DIR (frames, "
                             "previews, sidecars, latents, targets' files) and start afresh")
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="refuse to start when the bake's estimated peak memory is "
                             "more than SIZE (bytes, or with K, M, G: 8G); a bake that "
                             "would not fit the free memory is always refused")
    add_device_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar or summary")


def add_device_option(parser):
    """``--device auto|cpu|gpu`` (default auto) and ``--gpu``, short for ``--device gpu``."""
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto (default): the GPU when CuPy can compile and run the "
                             "kernels here, else the CPU with a warning saying why; the "
                             "same bits either way")
    parser.add_argument("--gpu", dest="device", action="store_const", const="gpu",
                        help="the same as --device gpu")


def array_module_for(device):
    """CuPy when ``device`` runs on the GPU, else None; ``device="gpu"`` where the GPU
    path cannot run is a ValueError (exit code 2) naming why and what to install."""
    if not use_gpu(device):
        return None
    import cupy
    return cupy


def print_summary(result):
    kept = f" ({result.resumed_frames} resumed)" if result.resumed_frames else ""
    print(f"wrote {len(result.frames)} frames{kept} of {result.noise_shape} noise and "
          f"latents {result.latents_shape} to {result.out_dir}")


def add_target_options(parser):
    """``--target``, ``--list-targets``, ``--temporal``, ``--degradation``."""
    parser.add_argument("--target", choices=TARGETS, default="none", metavar="NAME",
                        help="also write the latents a video model takes as they are "
                             "(model_latents.npy for diffusers, model_latents.latent for "
                             "ComfyUI, noises.npy for gwtf); --list-targets shows them "
                             "(default: none)")
    parser.add_argument("--list-targets", action="store_true",
                        help="print the targets' channels, factors, frame rules and "
                             "layouts, and exit")
    parser.add_argument("--temporal", choices=TEMPORAL_MODES, default="nearest",
                        help="latent frames: nearest (default; latent frame i is video "
                             "frame s*i, exact) or blend_norm (Go-with-the-Flow's "
                             "blend-and-normalise, approximate)")
    parser.add_argument("--degradation", type=float, default=0.0, metavar="A",
                        help="mix fresh noise into the target's latents, A in [0, 1] "
                             "(default 0: off)")


def listed_targets(argv):
    """True (after printing the table) when ``--list-targets`` is on the command line:
    it needs no other argument."""
    if "--list-targets" not in argv:
        return False
    print(format_targets())
    return True


def resolve_target(args, frame_count, height, width):
    """The bake's target settings, channels and latent factor for ``args``, checked
    against the target's rules before any work: ``(target, channels, latent_factor)``.
    A ValueError (exit 2) names what does not fit and what would."""
    target = target_settings(args.target, args.temporal, args.degradation)
    if target is None:
        channels = 4 if args.channels is None else args.channels
        factor = 1 if args.latent_factor is None else args.latent_factor
        if channels < 1:
            raise ValueError(f"--channels must be >= 1, got {channels}")
        if factor < 1:
            raise ValueError(f"--latent-factor must be >= 1, got {factor}")
        return None, channels, factor
    info = plan(args.target, frame_count, height, width, args.channels, args.latent_factor,
                temporal=args.temporal, degradation=args.degradation)
    return target, info["channels"], info["latent_factor"]
