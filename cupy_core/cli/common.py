"""What the command lines share (``python -m cupy_core`` and its ``surface``
subcommand): ``--device``, the closing summary, and the exit codes: 0 done, 2 bad input
(``error: ...``), 1 other OS errors, 130 interrupted (every file written is whole: the
same command resumes)."""
import sys

from ..device import DEVICES, use_gpu


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
