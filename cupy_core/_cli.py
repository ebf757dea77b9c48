"""What the command lines share (``python -m cupy_core`` and its ``surface``
subcommand): ``--gpu``, the closing summary, and the exit codes: 0 done, 2 bad input
(``error: ...``), 1 other OS errors, 130 interrupted (every file written is whole: the
same command resumes)."""
import sys


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


def array_module_for(gpu):
    """CuPy for ``--gpu`` (a ValueError, exit code 2, when it cannot run), else None."""
    if not gpu:
        return None
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # not installed, no driver, no device
        raise ValueError(f"--gpu needs CuPy and a CUDA device: {exc}") from None
    return cupy


def print_summary(result):
    kept = f" ({result.resumed_frames} resumed)" if result.resumed_frames else ""
    print(f"wrote {len(result.frames)} frames{kept} of {result.noise_shape} noise and "
          f"latents {result.latents_shape} to {result.out_dir}")
