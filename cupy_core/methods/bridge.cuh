// The four passes of the Brownian-bridge sampling (docs/DESIGN.md 4.2, 4.3), generic over
// a geometry that enumerates the pieces of a target pixel. cupy_core/bridge.py holds
// the NumPy twin of each pass. Memory: S_k and T_k[C] per source, G_p[C] per target
// (the sum of the target's piece draws: each normal is drawn once) and, for a costly
// geometry (the grid variants), a piece cache: pass 1 keeps up to K pieces (source,
// weight) per target, and passes 2 and 4 read them instead of walking the geometry
// again (a target with more than K pieces walks it again: same pieces, same order).
//
// Per-source sums are accumulated in 64-bit fixed point: integer atomics are
// associative, so a seed gives the same bits whatever the thread order.
#pragma once
#include "launch.cuh"
#include "philox.cuh"

#define S_SCALE 4294967296.0       // 2^32: areas, up to 2^31 per source
#define T_SCALE 1099511627776.0    // 2^40: piece sums, |T| < 2^23
// A remainder this small is below the resolution of the area sums: not drawn.
#define REST_EPS 5.9604644775390625e-08   // 2^-24

struct BridgeKey {
    unsigned int k0, k1, frame;
    int channels;
    int normalise_all;   // 1: a = w / S (particle); 0: a = w / max(S, 1) (grid)
};

__device__ __forceinline__ unsigned long long to_fixed(double v, double scale) {
    return (unsigned long long)__double2ll_rn(v * scale);
}

__device__ __forceinline__ double from_fixed(unsigned long long v, double scale) {
    return (double)(long long)v / scale;
}

__device__ __forceinline__ double area_divisor(double S, int normalise_all) {
    return normalise_all ? (S > 0.0 ? S : 1.0) : fmax(S, 1.0);
}

// The piece cache: slot i of target p at [i * n + p] (coalesced), count in cnt[p]
// (more than k: not cached). k = 0: no cache (null pointers).
struct PieceCache {
    int* cnt;
    unsigned int* src;
    double* w;
    int k;
};

// Target p's pieces, from the cache when it holds them all, else from the geometry.
template <class Geom, class F>
__device__ __forceinline__ void for_each_cached(const Geom& g, const PieceCache& pc,
                                                long long p, long long n, F f) {
    if (pc.k > 0 && pc.cnt[p] <= pc.k) {
        const int m = pc.cnt[p];
        for (int i = 0; i < m; ++i) f((long long)pc.src[i * n + p], pc.w[i * n + p]);
        return;
    }
    WORK_COUNT(geometry, 1);
    g.for_each_piece(p, f);
}

// Pass 1: S_k = sum of raw weights requested from source k; fills the piece cache.
template <class Geom>
__device__ void bridge_sum_weights(const Geom& g, long long p, long long n,
                                   unsigned long long* S_fx, PieceCache pc) {
    WORK_COUNT(geometry, 1);
    int m = 0;
    g.for_each_piece(p, [&](long long k, double w) {
        atomicAdd(S_fx + k, to_fixed(w, S_SCALE));
        if (m < pc.k) {
            pc.src[m * n + p] = (unsigned int)k;
            pc.w[m * n + p] = w;
        }
        ++m;
    });
    if (pc.k > 0) pc.cnt[p] = m;
}

// Pass 2 (per target): T_k[c] += Z_i = sqrt(a_i) N(0, 1) for each piece, and the
// target's own sum of its Z_i, G_p[c], kept for pass 4: every piece's normals are drawn
// once per frame (pass 4 draws none).
template <class Geom>
__device__ void bridge_sum_pieces(const Geom& g, long long p, long long n, PieceCache pc,
                                  const unsigned long long* S_fx, unsigned long long* T_fx,
                                  double* G, BridgeKey key) {
    const int C = key.channels;
    for (int cb = 0; cb < C; cb += GATHER_CHUNK) {
        const int ce = (cb + GATHER_CHUNK < C) ? cb + GATHER_CHUNK : C;
        double acc[GATHER_CHUNK];
        for (int c = 0; c < GATHER_CHUNK; ++c) acc[c] = 0.0;
        for_each_cached(g, pc, p, n, [&](long long k, double w) {
            double a = w / area_divisor(from_fixed(S_fx[k], S_SCALE), key.normalise_all);
            double sa = sqrt(a);
            for (int c0 = cb; c0 < ce; c0 += 4) {
                float z[4];
                normals4((unsigned int)p, (unsigned int)k, STREAM_PIECE, (unsigned int)(c0 >> 2),
                         key.frame, key.k0, key.k1, z);
                for (int c = c0; c < ce && c < c0 + 4; ++c) {
                    double zi = sa * (double)z[c - c0];
                    atomicAdd(T_fx + k * C + c, to_fixed(zi, T_SCALE));
                    acc[c - cb] += zi;
                }
            }
        });
        for (int c = cb; c < ce; ++c) G[p * C + c] = acc[c - cb];
    }
}

// Pass 3 (per source): D_k = X_k - T_k - Z_r, written in place over T_fx as doubles.
__device__ void bridge_remainder(long long k, const float* prior, const unsigned long long* S_fx,
                                 unsigned long long* T_fx, BridgeKey key) {
    double S = from_fixed(S_fx[k], S_SCALE);
    const int C = key.channels;
    if (!(S > 0.0)) {
        // No piece, or only pieces below the fixed-point resolution: D = 0, as bridge.py.
        for (int c = 0; c < C; ++c) ((double*)T_fx)[k * C + c] = 0.0;
        return;
    }
    double rest = key.normalise_all ? 0.0 : fmax(1.0 - S / fmax(S, 1.0), 0.0);
    if (rest < REST_EPS) rest = 0.0;
    double sr = sqrt(rest);
    double* D = (double*)T_fx;
    for (int c0 = 0; c0 < C; c0 += 4) {
        float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        // Only sources not wholly claimed have a remainder to draw.
        if (rest > 0.0)
            normals4((unsigned int)k, 0xFFFFFFFFu, STREAM_REMAINDER, (unsigned int)(c0 >> 2),
                     key.frame, key.k0, key.k1, z);
        for (int c = c0; c < C && c < c0 + 4; ++c) {
            double T = from_fixed(T_fx[k * C + c], T_SCALE);
            D[k * C + c] = rest > 0.0 ? (double)prior[k * C + c] - (T + sr * (double)z[c - c0])
                                      : (double)prior[k * C + c] - T;
        }
    }
}

// Pass 4 (per target): Y_p = (G_p + sum_i a_i D_k) / sqrt(A_p), fresh noise if A_p = 0.
// No normals: G_p (pass 2) holds the sum of the target's piece draws.
template <class Geom>
__device__ void bridge_gather(const Geom& g, long long p, long long n, PieceCache pc,
                              const unsigned long long* S_fx, const double* D, const double* G,
                              float* out, BridgeKey key) {
    const int C = key.channels;
    for (int cb = 0; cb < C; cb += GATHER_CHUNK) {
        const int ce = (cb + GATHER_CHUNK < C) ? cb + GATHER_CHUNK : C;
        double acc[GATHER_CHUNK];
        for (int c = 0; c < GATHER_CHUNK; ++c) acc[c] = 0.0;
        double A = 0.0;
        for_each_cached(g, pc, p, n, [&](long long k, double w) {
            double a = w / area_divisor(from_fixed(S_fx[k], S_SCALE), key.normalise_all);
            for (int c = cb; c < ce; ++c) acc[c - cb] += a * D[k * C + c];
            A += a;
        });
        for (int c = cb; c < ce; ++c) acc[c - cb] = G[p * C + c] + acc[c - cb];
        write_gathered(out, p, C, cb, ce, acc, A, key.frame, key.k0, key.k1);
    }
}

// The piece cache's kernel parameters (null pointers and cache_k = 0: none).
#define PIECE_CACHE_ARGS int* cache_cnt, unsigned int* cache_src, double* cache_w, int cache_k
#define PIECE_CACHE_INIT PieceCache{cache_cnt, cache_src, cache_w, cache_k}

// The five extern "C" kernels of one geometry. GEOM_ARGS / GEOM_INIT: the geometry's
// kernel parameters and how to build the Geom from them.
#define BRIDGE_KERNELS(PREFIX, GEOM, GEOM_ARGS, GEOM_INIT)                                   \
extern "C" __global__ void PREFIX##_sum_weights(long long start, long long n, GEOM_ARGS,    \
                                                 PIECE_CACHE_ARGS,                           \
                                                 unsigned long long* S_fx) {                 \
    long long p = item_index(start);                                                         \
    if (p >= n) return;                                                                      \
    GEOM g = GEOM_INIT;                                                                      \
    bridge_sum_weights(g, p, n, S_fx, PIECE_CACHE_INIT);                                     \
}                                                                                            \
extern "C" __global__ void PREFIX##_sum_pieces(long long start, long long n, GEOM_ARGS,     \
                                                PIECE_CACHE_ARGS,                            \
                                                const unsigned long long* S_fx,              \
                                                unsigned long long* T_fx, double* G,         \
                                                BridgeKey key) {                             \
    long long p = item_index(start);                                                         \
    if (p >= n) return;                                                                      \
    GEOM g = GEOM_INIT;                                                                      \
    bridge_sum_pieces(g, p, n, PIECE_CACHE_INIT, S_fx, T_fx, G, key);                        \
}                                                                                            \
extern "C" __global__ void PREFIX##_remainder(long long start, long long n_source,         \
                                               const float* prior,                           \
                                               const unsigned long long* S_fx,               \
                                               unsigned long long* T_fx, BridgeKey key) {    \
    long long k = item_index(start);                                                         \
    if (k >= n_source) return;                                                               \
    bridge_remainder(k, prior, S_fx, T_fx, key);                                             \
}                                                                                            \
extern "C" __global__ void PREFIX##_gather(long long start, long long n, GEOM_ARGS,         \
                                            PIECE_CACHE_ARGS,                                \
                                            const unsigned long long* S_fx, const double* D, \
                                            const double* G, float* out, BridgeKey key) {    \
    long long p = item_index(start);                                                         \
    if (p >= n) return;                                                                      \
    GEOM g = GEOM_INIT;                                                                      \
    bridge_gather(g, p, n, PIECE_CACHE_INIT, S_fx, D, G, out, key);                          \
}
