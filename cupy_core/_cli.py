"""Exit codes shared by the command lines (``python -m cupy_core`` and its ``surface``
subcommand): 0 done, 2 bad input (``error: ...``), 1 other OS errors, 130 interrupted
(every file written is whole: the same command resumes)."""
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
