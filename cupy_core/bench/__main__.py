"""``python -m cupy_core.bench``: speed, memory and quality (cupy_core/bench/run.py)."""
import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main())
