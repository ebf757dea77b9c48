// Counter-based normals shared by every kernel: Philox4x32-10 and a float32 Box-Muller.
// cupy_core/methods/rng.py is the NumPy twin; both give the same bits for the same
// (seed, counter), so change them together (and bump rng.GENERATOR_VERSION).
#pragma once

// Work counters of the CPU emulation (tests/cuda_emulation/shim.h defines WORK_COUNT
// when counting); nothing on the GPU.
#ifndef WORK_COUNT
#define WORK_COUNT(what, n) ((void)0)
#endif

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

// The float32 normal transform (rng.py: ln_f32, sincos_turn_f32, box_muller_f32, the
// same operations in the same order). Only + - * / and sqrt on IEEE float32 and exact
// integer/bit operations, no libm: with --fmad=false (NVRTC) and -ffp-contract=off
// (g++), every GPU and CPU gives the same bits as NumPy. The constants are the float32
// values of rng.py (hex floats, so no decimal rounding is involved).
#define BM_TWO_M32 0x1p-32f
#define BM_TWO_M29 0x1p-29f
#define BM_PI_4 0x1.921fb6p-1f          // float32(pi / 4)
#define BM_LN2_HI 0x1.62e4p-1f          // 0.693145751953125
#define BM_LN2_LO 0x1.7f7d1cp-20f       // float32(ln 2 - LN2_HI)

// ln(u) for a normal float32 u > 0: u = m 2^e, m in about [sqrt(1/2), sqrt(2)), then
// e ln 2 + 2 atanh(f), f = (m - 1) / (m + 1), by its odd series to f^9.
__device__ __forceinline__ float ln_f32(float u) {
    // Integer steps only: shifting the bits by 0x3F800000 - 0x3F3504F3 moves the
    // exponent boundary to m = sqrt(1/2) (musl's logf reduction).
    unsigned int ix = __float_as_uint(u) + 0x004AFB0Du;
    int e = (int)(ix >> 23) - 127;
    float m = __uint_as_float((ix & 0x007FFFFFu) + 0x3F3504F3u);
    float f = (m - 1.0f) / (m + 1.0f);
    float f2 = f * f;
    float p = f2 * (0x1.555556p-2f + f2 * (0x1.99999ap-3f + f2 * (0x1.24924ap-3f + f2 * 0x1.c71c72p-4f)));
    float lnm = 2.0f * (f + f * p);
    float ef = (float)e;
    return ef * BM_LN2_HI + (ef * BM_LN2_LO + lnm);
}

// cos and sin of the turn fraction b / 2^32: b + 2^29 (mod 2^32) splits, exactly, into
// a quadrant (top 2 bits) and theta in [-pi/4, pi/4) (the other 30 bits less 2^29);
// Taylor series on that interval (sin to x^9, cos to x^10), then the quadrant's swap
// and signs.
__device__ __forceinline__ void sincos_turn_f32(unsigned int b, float* c_out, float* s_out) {
    unsigned int bq = b + 0x20000000u;
    unsigned int q = bq >> 30;
    int low = (int)(bq & 0x3FFFFFFFu) - 0x20000000;
    float x = ((float)low * BM_TWO_M29) * BM_PI_4;
    float x2 = x * x;
    float s = x + x * (x2 * (-0x1.555556p-3f + x2 * (0x1.111112p-7f + x2 * (-0x1.a01a02p-13f + x2 * 0x1.71de3ap-19f))));
    float c = 1.0f + x2 * (-0.5f + x2 * (0x1.555556p-5f + x2 * (-0x1.6c16c2p-10f + x2 * (0x1.a01a02p-16f + x2 * -0x1.27e4fcp-22f))));
    bool swap = (q & 1u) != 0u;                  // quadrants 1, 3
    float a = swap ? s : c, d = swap ? c : s;
    *c_out = ((q + 1u) & 2u) ? -a : a;           // quadrants 1, 2
    *s_out = (q & 2u) ? -d : d;                  // quadrants 2, 3
}

// Two standard normals from two words: u1 = (a + 1/2) 2^-32 in (0, 1] (>= 2^-33, so
// |z| <= sqrt(66 ln 2) = 6.7637), radius sqrt(-2 ln u1), angle 2 pi b 2^-32.
__device__ __forceinline__ void box_muller_f32(unsigned int a, unsigned int b, float* z0, float* z1) {
    float u1 = ((float)a + 0.5f) * BM_TWO_M32;
    float rad = sqrtf(-2.0f * ln_f32(u1));
    float c, s;
    sincos_turn_f32(b, &c, &s);
    *z0 = rad * c;
    *z1 = rad * s;
}

// Four standard normals (float32) from one Philox block: two Box-Muller pairs.
__device__ __forceinline__ void normals4(unsigned int c0, unsigned int c1,
                                         unsigned int stream, unsigned int group,
                                         unsigned int frame,
                                         unsigned int k0, unsigned int k1,
                                         float out[4]) {
    WORK_COUNT(philox, 1);
    WORK_COUNT(normals, 4);
    uint4x r = philox4x32_10(c0, c1, (stream << 24) | group, frame, k0, k1);
    box_muller_f32(r.v[0], r.v[1], &out[0], &out[1]);
    box_muller_f32(r.v[2], r.v[3], &out[2], &out[3]);
}

// Standard normal for channel ch of the draw (c0, c1, stream).
__device__ __forceinline__ float normal_at(unsigned int c0, unsigned int c1,
                                           unsigned int stream, unsigned int ch,
                                           unsigned int frame,
                                           unsigned int k0, unsigned int k1) {
    float z[4];
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
        float z[4];
        normals4((unsigned int)p, 0u, STREAM_FRESH, (unsigned int)(c0 >> 2), frame, k0, k1, z);
        for (int c = c0; c < ce && c < c0 + 4; ++c) out[p * C + c] = (float)z[c - c0];
    }
}
