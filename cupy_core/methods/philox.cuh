// Counter-based normals shared by every kernel: Philox4x32-10 and Box-Muller.
// cupy_core/rng.py is the NumPy twin; both must give the same numbers for the
// same (seed, counter), so change them together.
#pragma once

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Streams keep the draws of different purposes apart (counter word 2, top byte).
#define STREAM_WHITE 1u
#define STREAM_PIECE 2u
#define STREAM_REMAINDER 3u
#define STREAM_FRESH 4u
#define STREAM_SUBPIXEL 5u   // the upsampling baseline's sub-pixels (upsample.cu)

struct uint4x { unsigned int v[4]; };

__device__ __forceinline__ uint4x philox4x32_10(unsigned int c0, unsigned int c1,
                                                unsigned int c2, unsigned int c3,
                                                unsigned int k0, unsigned int k1) {
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        unsigned long long p0 = (unsigned long long)PHILOX_M0 * c0;
        unsigned long long p1 = (unsigned long long)PHILOX_M1 * c2;
        unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        unsigned int n0 = hi1 ^ c1 ^ k0;
        unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += PHILOX_W0; k1 += PHILOX_W1;
    }
    uint4x out; out.v[0] = c0; out.v[1] = c1; out.v[2] = c2; out.v[3] = c3;
    return out;
}

// Four standard normals from one Philox block: two Box-Muller pairs, in double
// so that the NumPy path reproduces them to the last few ulps.
__device__ __forceinline__ void normals4(unsigned int c0, unsigned int c1,
                                         unsigned int stream, unsigned int group,
                                         unsigned int frame,
                                         unsigned int k0, unsigned int k1,
                                         double out[4]) {
    uint4x r = philox4x32_10(c0, c1, (stream << 24) | group, frame, k0, k1);
    const double two_m32 = 2.3283064365386963e-10;  // 2^-32
    const double two_pi = 6.283185307179586;
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        double u1 = ((double)r.v[2 * h] + 1.0) * two_m32;   // (0, 1]: log is finite
        double u2 = (double)r.v[2 * h + 1] * two_m32;       // [0, 1)
        double rad = sqrt(-2.0 * log(u1));
        out[2 * h] = rad * cos(two_pi * u2);
        out[2 * h + 1] = rad * sin(two_pi * u2);
    }
}

// Standard normal for channel ch of the draw (c0, c1, stream).
__device__ __forceinline__ double normal_at(unsigned int c0, unsigned int c1,
                                            unsigned int stream, unsigned int ch,
                                            unsigned int frame,
                                            unsigned int k0, unsigned int k1) {
    double z[4];
    normals4(c0, c1, stream, ch >> 2, frame, k0, k1, z);
    return z[ch & 3u];
}

// Channels a gather accumulates per walk over a target's sources (bridge.cuh, upsample.cu).
#define GATHER_CHUNK 16

// The last step of a gather, for target p's channels [cb, ce): the sum acc over its
// sources divided by sqrt(total) where it has any, else fresh noise (stream FRESH).
__device__ __forceinline__ void write_gathered(float* out, long long p, int C, int cb, int ce,
                                               const double* acc, double total,
                                               unsigned int frame, unsigned int k0,
                                               unsigned int k1) {
    if (total > 0.0) {
        double inv = 1.0 / sqrt(total);
        for (int c = cb; c < ce; ++c) out[p * C + c] = (float)(acc[c - cb] * inv);
        return;
    }
    for (int c0 = cb; c0 < ce; c0 += 4) {
        double z[4];
        normals4((unsigned int)p, 0u, STREAM_FRESH, (unsigned int)(c0 >> 2), frame, k0, k1, z);
        for (int c = c0; c < ce && c < c0 + 4; ++c) out[p * C + c] = (float)z[c - c0];
    }
}
