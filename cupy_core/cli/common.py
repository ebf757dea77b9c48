"""What the command lines share (``python -m cupy_core`` and its ``surface``
subcommand): their options, the target choice, the closing summary, and the exit
codes: 0 done, 2 bad input (``error: ...``), 1 other OS errors, 130 interrupted
(every file written is whole: the same command resumes)."""
import sys

from ..device import DEVICES, use_gpu
from ..targets import TARGETS, TEMPORAL_MODES, format_targets, plan, target_settings


def run_command(run, args):
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"\ninterrupted: every file in {args.out} is whole; rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except ValueError as exc:  # bad input, bad output folder, mismatched bake
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions changed mid-way...
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


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
                        help="discard an earlier bake in DIR instead of resuming it")
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
