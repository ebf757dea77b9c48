// Particle-based partition in 2-D: bilinear requests to the four surrounding source
// centres, normalised per source in the bridge. particle2d.py is the NumPy reference.
#include "bridge.cuh"

struct Particle2D {
    const double* centers;        // (H, W, 2) backward positions of the pixel centres
    const unsigned char* valid;   // (H, W) or null
    long long H, W, Hs, Ws;

    template <class F>
    __device__ void for_each_piece(long long p, F f) const {
        if (valid && !valid[p]) return;
        double x = centers[2 * p], y = centers[2 * p + 1];
        if (!isfinite(x) || !isfinite(y)) return;
        // Clip before flooring so that far-away particles cannot overflow.
        double fx = fmin(fmax(x, -2.0), (double)Ws + 2.0) - 0.5;
        double fy = fmin(fmax(y, -2.0), (double)Hs + 2.0) - 0.5;
        double j0 = floor(fx), i0 = floor(fy);
        double tx = fx - j0, ty = fy - i0;
        double w[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
        for (int q = 0; q < 4; ++q) {
            long long ci = (long long)i0 + (q >> 1), cj = (long long)j0 + (q & 1);
            if (w[q] > 0.0 && ci >= 0 && ci < Hs && cj >= 0 && cj < Ws) f(ci * Ws + cj, w[q]);
        }
    }
};

#define PARTICLE2D_ARGS const double* centers, const unsigned char* valid, long long H, long long W, \
                        long long Hs, long long Ws
#define PARTICLE2D_INIT Particle2D{centers, valid, H, W, Hs, Ws}
BRIDGE_KERNELS(particle2d, Particle2D, PARTICLE2D_ARGS, PARTICLE2D_INIT)
