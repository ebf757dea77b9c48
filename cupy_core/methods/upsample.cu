// The baseline: Chang et al. 2024 upsampling-based integral noise (docs/DESIGN.md 5).
// upsample.py is the readable NumPy reference (same formulas, same order of
// operations; compiled with --fmad=false so that sub-pixel membership, which hangs on
// comparisons of computed crossings, is decided identically on both).
//
// Two passes, and nothing stored per sub-pixel (each is redrawn from its counter):
//   upsample_offsets (per source): off_k = X_k / N - mean of the N^2 draws u_s of k
//   upsample_gather  (per target): Y_p = sum over sub-pixel centres in R_p of
//                                  (u_s + off_k) / sqrt(count), fresh noise if none
// Sub-pixel values and offsets are summed in 64-bit fixed point (2^-32 units, UP_SCALE):
// integer sums do not depend on their order, so this gather's sums and the CPU's
// running sums along sub-pixel rows give the same bits.
#include "launch.cuh"
#include "philox.cuh"
#include "quad2d.cuh"


#define UP_SCALE 4294967296.0   // 2^32

// u_s in fixed point: z * 2^32 rounded to nearest even (upsample.py: fixed).
__device__ __forceinline__ long long up_fixed(float z) {
    return __double2ll_rn((double)z * UP_SCALE);
}

struct UpKey {
    unsigned int k0, k1, frame;
    int channels;
    int factor;    // N: N x N sub-pixels per source pixel
};

// First global sub-pixel column whose centre is at or right of x (as upsample.py).
__device__ __forceinline__ long long up_col(double x, double Ws, double n, long long cols) {
    double c = ceil(clampd(x, -1.0, Ws + 1.0) * n - 0.5);
    if (c < 0.0) c = 0.0;
    if (c > (double)cols) c = (double)cols;
    return (long long)c;
}

// Pass 1 (per source): off_k[c] = X_k[c] / N - (sum of the N^2 draws) / N^2, in fixed point.
extern "C" __global__ void upsample_offsets(long long start, long long n_source,
                                            const float* prior, long long* off, UpKey key) {
    long long k = item_index(start);
    if (k >= n_source) return;
    const int C = key.channels;
    const unsigned int nn = (unsigned int)key.factor * (unsigned int)key.factor;
    for (int c0 = 0; c0 < C; c0 += 4) {
        long long sum[4] = {0, 0, 0, 0};
        for (unsigned int s = 0; s < nn; ++s) {
            float z[4];
            normals4((unsigned int)k, s, STREAM_SUBPIXEL, (unsigned int)(c0 >> 2), key.frame,
                     key.k0, key.k1, z);
            for (int q = 0; q < 4; ++q) sum[q] += up_fixed(z[q]);
        }
        for (int c = c0; c < C && c < c0 + 4; ++c) {
            double o = (double)prior[k * C + c] / (double)key.factor
                     - ((double)sum[c - c0] / UP_SCALE) / (double)nn;
            off[k * C + c] = __double2ll_rn(o * UP_SCALE);
        }
    }
}

// Pass 2 (per target): the sub-pixel centres inside the warped quad, row by row.
extern "C" __global__ void upsample_gather(long long start, long long n,
                                           const double* corners, const unsigned char* valid,
                                           long long H, long long W, long long Hs, long long Ws,
                                           const long long* off, float* out, UpKey key) {
    long long p = item_index(start);
    if (p >= n) return;
    const int C = key.channels;
    const long long N = key.factor;
    const double nd = (double)key.factor;
    const long long cols = Ws * N, rows = Hs * N;
    // The grid variant's quad and bow-tie fail-safe (quad2d.cuh).
    double qx[4], qy[4];
    long long gy0 = 0, gy1 = 0;
    if (load_quad(corners, valid, W, p, qx, qy)) {
        double ymin = fmin(fmin(qy[0], qy[1]), fmin(qy[2], qy[3]));
        double ymax = fmax(fmax(qy[0], qy[1]), fmax(qy[2], qy[3]));
        double lo = ceil(clampd(ymin, -1.0, (double)Hs + 1.0) * nd - 0.5) - 1.0;
        double hi = ceil(clampd(ymax, -1.0, (double)Hs + 1.0) * nd - 0.5) + 1.0;
        gy0 = (long long)clampd(lo, 0.0, (double)rows);
        gy1 = (long long)clampd(hi, 0.0, (double)rows);
    }
    for (int cb = 0; cb < C; cb += GATHER_CHUNK) {
        const int ce = (cb + GATHER_CHUNK < C) ? cb + GATHER_CHUNK : C;
        long long acc[GATHER_CHUNK];
        for (int c = 0; c < GATHER_CHUNK; ++c) acc[c] = 0;
        long long count = 0;
        for (long long gy = gy0; gy < gy1; ++gy) {
            double yc = ((double)gy + 0.5) / nd;
            double xs[4];
            int m = 0;
            for (int e = 0; e < 4; ++e) {
                int f = (e + 1) & 3;
                bool low = qy[e] <= qy[f];   // each edge lower end first
                double xa = low ? qx[e] : qx[f], ya = low ? qy[e] : qy[f];
                double xb = low ? qx[f] : qx[e], yb = low ? qy[f] : qy[e];
                if (ya <= yc && yc < yb) xs[m++] = xa + (yc - ya) * (xb - xa) / (yb - ya);
            }
            for (int a = 1; a < m; ++a)      // insertion sort of at most four crossings
                for (int b = a; b > 0 && xs[b - 1] > xs[b]; --b) {
                    double t = xs[b]; xs[b] = xs[b - 1]; xs[b - 1] = t;
                }
            for (int sp = 0; sp + 1 < m; sp += 2) {
                long long ga = up_col(xs[sp], (double)Ws, nd, cols);
                long long gb = up_col(xs[sp + 1], (double)Ws, nd, cols);
                for (long long gx = ga; gx < gb; ++gx) {
                    long long k = (gy / N) * Ws + gx / N;
                    unsigned int s = (unsigned int)((gy % N) * N + gx % N);
                    for (int c0 = cb; c0 < ce; c0 += 4) {
                        float z[4];
                        normals4((unsigned int)k, s, STREAM_SUBPIXEL, (unsigned int)(c0 >> 2),
                                 key.frame, key.k0, key.k1, z);
                        for (int c = c0; c < ce && c < c0 + 4; ++c)
                            acc[c - cb] += up_fixed(z[c - c0]) + off[k * C + c];
                    }
                    ++count;
                }
            }
        }
        double sums[GATHER_CHUNK];
        for (int c = 0; c < GATHER_CHUNK; ++c) sums[c] = (double)acc[c] / UP_SCALE;
        write_gathered(out, p, C, cb, ce, sums, (double)count, key.frame, key.k0, key.k1);
    }
}
