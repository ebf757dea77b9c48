"""Benchmarks: ``python -m cupy_core.bench`` (``run``: speed, memory and quality
against the upsampling baseline) and ``python build.py gpu-check`` (``gpu_check``)."""
