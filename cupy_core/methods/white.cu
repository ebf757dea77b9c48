// Fresh white noise: one Philox block per cell and group of four channels.
// white.py is the NumPy reference.
#include "launch.cuh"
#include "philox.cuh"

extern "C" __global__ void white_noise(long long start, long long n, int channels,
                                       unsigned int frame, unsigned int k0, unsigned int k1,
                                       float* out) {
    long long idx = item_index(start);
    if (idx >= n) return;
    for (int c0 = 0; c0 < channels; c0 += 4) {
        float z[4];
        normals4((unsigned int)idx, 0u, STREAM_WHITE, (unsigned int)(c0 >> 2), frame, k0, k1, z);
        for (int c = c0; c < channels && c < c0 + 4; ++c) out[idx * channels + c] = (float)z[c - c0];
    }
}
