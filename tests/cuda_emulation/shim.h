// Host-side shim: lets a CUDA .cu file of cupy_core compile as plain C++17 with g++,
// so its kernels can be run on the CPU (tests/cuda_emulation/emulate.py).
//
// What it assumes of the kernels (true of cupy_core's): one thread per item, no
// shared memory, no __syncthreads, no warp intrinsics, atomics used only as
// commutative accumulators. Under those assumptions running the threads one after
// the other is exact. Anything else (__shared__, __syncthreads, __shfl_*, ...) is
// deliberately left undefined, so a kernel that needs it fails to compile here instead
// of being emulated wrongly.
#pragma once

#include <math.h>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstddef>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)

// dim3 and the built-in index variables. thread_local: two Python threads may launch
// emulated kernels at once (ctypes releases the GIL during the call).
struct dim3 {
    unsigned int x, y, z;
};
thread_local dim3 blockIdx = {0u, 0u, 0u};
thread_local dim3 threadIdx = {0u, 0u, 0u};
thread_local dim3 blockDim = {1u, 1u, 1u};
thread_local dim3 gridDim = {1u, 1u, 1u};

// Atomics: plain read-modify-write (emulation runs threads one at a time). They
// return the old value, as CUDA's do.
__device__ __forceinline__ unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    unsigned long long old = *a; *a = old + v; return old;
}
__device__ __forceinline__ unsigned int atomicAdd(unsigned int* a, unsigned int v) {
    unsigned int old = *a; *a = old + v; return old;
}
__device__ __forceinline__ int atomicAdd(int* a, int v) {
    // Wraps like the hardware's two's-complement add (no signed-overflow UB).
    int old = *a; *a = (int)((unsigned int)old + (unsigned int)v); return old;
}
__device__ __forceinline__ float atomicAdd(float* a, float v) {
    float old = *a; *a = old + v; return old;
}
__device__ __forceinline__ double atomicAdd(double* a, double v) {
    double old = *a; *a = old + v; return old;
}

// cvt.rni.s64.f64: round to nearest even; NaN -> 0; out of range saturates
// (PTX ISA, "cvt": float-to-integer conversions saturate). llrint alone would give
// LLONG_MIN for out-of-range values on x86, which is not what the GPU does.
__device__ __forceinline__ long long __double2ll_rn(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775808.0) return LLONG_MAX;
    if (v < -9223372036854775808.0) return LLONG_MIN;
    return llrint(v);  // default rounding mode: to nearest, ties to even
}
__device__ __forceinline__ int __double2int_rn(double v) {
    if (v != v) return 0;
    if (v >= 2147483648.0) return INT_MAX;
    if (v < -2147483648.0) return INT_MIN;
    return (int)lrint(v);
}
// CUDA's device math is overloaded for float and double in the global namespace.
using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// Bit casts between float and its 32-bit pattern (CUDA intrinsics).
__device__ __forceinline__ unsigned int __float_as_uint(float v) {
    unsigned int u; std::memcpy(&u, &v, sizeof u); return u;
}
__device__ __forceinline__ float __uint_as_float(unsigned int u) {
    float v; std::memcpy(&v, &u, sizeof v); return v;
}

// Work counters (philox.cuh and bridge.cuh call WORK_COUNT; on the GPU it is nothing):
// Philox blocks, normals, geometry evaluations (a target's for_each_piece walk), read
// and reset around each launch by emulate.py (EmulatedKernel.work).
#define WORK_philox 0
#define WORK_normals 1
#define WORK_geometry 2
extern "C" { unsigned long long emu_work[8] = {0, 0, 0, 0, 0, 0, 0, 0}; }
#define WORK_COUNT(what, n) (emu_work[WORK_##what] += (unsigned long long)(n))
