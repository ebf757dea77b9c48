"""Running cupy_core's CUDA kernels on the CPU (see emulate.py and fake_cupy.py)."""
