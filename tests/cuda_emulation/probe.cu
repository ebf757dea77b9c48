// Test-only kernels around cupy_core's device functions, run by the CPU emulation
// (tests/test_kernels_emulated.py). "philox.cuh" and "bridge.cuh" resolve to
// cupy_core/ through cupy_core._cuda.source, exactly as the real kernels include them.
#include "launch.cuh"
#include "bridge.cuh"

// ctr: (n, 4) counters; out: (n, 4) Philox4x32-10 outputs.
extern "C" __global__ void probe_philox(long long start, long long n, const unsigned int* ctr,
                                        unsigned int k0, unsigned int k1, unsigned int* out) {
    long long i = item_index(start);
    if (i >= n) return;
    const unsigned int* c = ctr + 4 * i;
    uint4x r = philox4x32_10(c[0], c[1], c[2], c[3], k0, k1);
    for (int j = 0; j < 4; ++j) out[4 * i + j] = r.v[j];
}

// ctr: (n, 5) = (c0, c1, stream, group, frame); out: (n, 4) normals4.
extern "C" __global__ void probe_normals4(long long start, long long n, const unsigned int* ctr,
                                          unsigned int k0, unsigned int k1, float* out) {
    long long i = item_index(start);
    if (i >= n) return;
    const unsigned int* c = ctr + 5 * i;
    float z[4];
    normals4(c[0], c[1], c[2], c[3], c[4], k0, k1, z);
    for (int j = 0; j < 4; ++j) out[4 * i + j] = z[j];
}

// ctr: (n, 5) = (c0, c1, stream, channel, frame); out: (n,) normal_at.
extern "C" __global__ void probe_normal_at(long long start, long long n, const unsigned int* ctr,
                                           unsigned int k0, unsigned int k1, float* out) {
    long long i = item_index(start);
    if (i >= n) return;
    const unsigned int* c = ctr + 5 * i;
    out[i] = normal_at(c[0], c[1], c[2], c[3], c[4], k0, k1);
}

// to_fixed / from_fixed of bridge.cuh (the shim's __double2ll_rn under test).
extern "C" __global__ void probe_fixed(long long start, long long n, const double* v, double scale,
                                       unsigned long long* fixed, double* back) {
    long long i = item_index(start);
    if (i >= n) return;
    fixed[i] = to_fixed(v[i], scale);
    back[i] = from_fixed(fixed[i], scale);
}

// The fields of a BridgeKey passed by value, as the kernel sees them.
extern "C" __global__ void probe_key(long long start, long long n, BridgeKey key,
                                     unsigned int* out) {
    if (item_index(start) >= n) return;
    out[0] = key.k0; out[1] = key.k1; out[2] = key.frame;
    out[3] = (unsigned int)key.channels; out[4] = (unsigned int)key.normalise_all;
}
