"""``python -m cupy_core``: the command line (cupy_core/cli/flow.py)."""
import sys

from .cli.flow import main

if __name__ == "__main__":
    sys.exit(main())
