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
// and reset around each launch by emulate.py (EmulatedKernel.work); with
// EMU_COUNT_FP64 also the float64 operations by kind (below).
#define WORK_philox 0
#define WORK_normals 1
#define WORK_geometry 2
#define WORK_f64_add 3     // + - (and += -=)
#define WORK_f64_mul 4     // *
#define WORK_f64_div 5     // /
#define WORK_f64_sqrt 6    // sqrt
#define WORK_f64_cmp 7     // fmin, fmax, < <= > >= == !=
#define WORK_f64_cvt 8     // to and from integers and float
#define WORK_f64_other 9   // floor, ceil, copysign, fabs, isfinite
extern "C" { unsigned long long emu_work[16] = {0}; }
#define WORK_COUNT(what, n) (emu_work[WORK_##what] += (unsigned long long)(n))

#ifdef EMU_COUNT_FP64
// Every `double` of the kernel source becomes a cdouble: a double (same size and
// layout, so arrays pass through unchanged) whose operations are counted. Constants
// (a double literal) convert without being counted; integer and float conversions are
// counted as conversions. Counts the operations as written in the source (no
// compiler's common-subexpression elimination or constant folding), with fmad off.
struct cdouble {
    double v;
    cdouble() = default;
    constexpr cdouble(double x) : v(x) {}
    cdouble(float x) : v(x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(int x) : v(x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(unsigned int x) : v(x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(long x) : v((double)x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(unsigned long x) : v((double)x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(long long x) : v((double)x) { WORK_COUNT(f64_cvt, 1); }
    cdouble(unsigned long long x) : v((double)x) { WORK_COUNT(f64_cvt, 1); }
    explicit operator float() const { WORK_COUNT(f64_cvt, 1); return (float)v; }
    explicit operator int() const { WORK_COUNT(f64_cvt, 1); return (int)v; }
    explicit operator long() const { WORK_COUNT(f64_cvt, 1); return (long)v; }
    explicit operator long long() const { WORK_COUNT(f64_cvt, 1); return (long long)v; }
    explicit operator unsigned int() const { WORK_COUNT(f64_cvt, 1); return (unsigned int)v; }
    cdouble& operator+=(cdouble o) { WORK_COUNT(f64_add, 1); v += o.v; return *this; }
    cdouble& operator-=(cdouble o) { WORK_COUNT(f64_add, 1); v -= o.v; return *this; }
    cdouble& operator*=(cdouble o) { WORK_COUNT(f64_mul, 1); v *= o.v; return *this; }
    cdouble& operator/=(cdouble o) { WORK_COUNT(f64_div, 1); v /= o.v; return *this; }
};
static_assert(sizeof(cdouble) == sizeof(double), "cdouble must be a double");
inline cdouble operator+(cdouble a, cdouble b) { WORK_COUNT(f64_add, 1); return cdouble(a.v + b.v); }
inline cdouble operator-(cdouble a, cdouble b) { WORK_COUNT(f64_add, 1); return cdouble(a.v - b.v); }
inline cdouble operator*(cdouble a, cdouble b) { WORK_COUNT(f64_mul, 1); return cdouble(a.v * b.v); }
inline cdouble operator/(cdouble a, cdouble b) { WORK_COUNT(f64_div, 1); return cdouble(a.v / b.v); }
inline cdouble operator-(cdouble a) { return cdouble(-a.v); }   // a sign flip: free
inline bool operator<(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v < b.v; }
inline bool operator<=(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v <= b.v; }
inline bool operator>(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v > b.v; }
inline bool operator>=(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v >= b.v; }
inline bool operator==(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v == b.v; }
inline bool operator!=(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return a.v != b.v; }
inline cdouble sqrt(cdouble a) { WORK_COUNT(f64_sqrt, 1); return cdouble(std::sqrt(a.v)); }
inline cdouble fmin(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return cdouble(std::fmin(a.v, b.v)); }
inline cdouble fmax(cdouble a, cdouble b) { WORK_COUNT(f64_cmp, 1); return cdouble(std::fmax(a.v, b.v)); }
inline cdouble floor(cdouble a) { WORK_COUNT(f64_other, 1); return cdouble(std::floor(a.v)); }
inline cdouble ceil(cdouble a) { WORK_COUNT(f64_other, 1); return cdouble(std::ceil(a.v)); }
inline cdouble fabs(cdouble a) { WORK_COUNT(f64_other, 1); return cdouble(std::fabs(a.v)); }
inline cdouble copysign(cdouble a, cdouble b) {
    WORK_COUNT(f64_other, 1); return cdouble(std::copysign(a.v, b.v));
}
inline bool isfinite(cdouble a) { WORK_COUNT(f64_other, 1); return std::isfinite(a.v); }
inline long long __double2ll_rn(cdouble a) { WORK_COUNT(f64_cvt, 1); return __double2ll_rn(a.v); }
inline cdouble atomicAdd(cdouble* a, cdouble b) {
    WORK_COUNT(f64_add, 1); cdouble old = *a; a->v += b.v; return old;
}
#define double cdouble
#endif
