"""The warping methods, each a NumPy twin beside its CUDA kernel: ``grid2d``,
``particle2d``, ``grid3d``, ``particle3d`` (Deng et al.'s partitions), ``upsample``
(Chang et al.'s baseline), ``white`` (fresh noise), ``bridge`` (the sampling passes
they share), ``rng`` / ``philox.cuh`` (counter-based normals) and ``cuda`` (compiling
and launching the kernels). docs/DESIGN.md sections 4-6 and 12."""
