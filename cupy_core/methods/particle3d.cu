// Particle-based partition in 3-D: trilinear requests to the eight surrounding source
// centres, normalised per source in the bridge. particle3d.py is the NumPy reference.
#include "bridge.cuh"

struct Particle3D {
    const double* centers;        // (D, H, W, 3) backward positions of the voxel centres
    const unsigned char* valid;   // (D, H, W) or null
    long long D, H, W, Ds, Hs, Ws;   // target and source shapes (D: depth)

    template <class F>
    __device__ void for_each_piece(long long p, F f) const {
        if (valid && !valid[p]) return;
        double x = centers[3 * p], y = centers[3 * p + 1], z = centers[3 * p + 2];
        if (!isfinite(x) || !isfinite(y) || !isfinite(z)) return;
        // Clip before flooring so that far-away particles cannot overflow.
        double fx = fmin(fmax(x, -2.0), (double)Ws + 2.0) - 0.5;
        double fy = fmin(fmax(y, -2.0), (double)Hs + 2.0) - 0.5;
        double fz = fmin(fmax(z, -2.0), (double)Ds + 2.0) - 0.5;
        double j0 = floor(fx), i0 = floor(fy), k0 = floor(fz);
        double tx = fx - j0, ty = fy - i0, tz = fz - k0;
        double wx[2] = {1 - tx, tx}, wy[2] = {1 - ty, ty}, wz[2] = {1 - tz, tz};
        for (int q = 0; q < 8; ++q) {
            int dx = q & 1, dy = (q >> 1) & 1, dz = q >> 2;
            double w = (wx[dx] * wy[dy]) * wz[dz];
            long long ck = (long long)k0 + dz, ci = (long long)i0 + dy, cj = (long long)j0 + dx;
            if (w > 0.0 && ck >= 0 && ck < Ds && ci >= 0 && ci < Hs && cj >= 0 && cj < Ws)
                f((ck * Hs + ci) * Ws + cj, w);
        }
    }
};

#define PARTICLE3D_ARGS const double* centers, const unsigned char* valid, long long Dn, long long H, \
                        long long W, long long Ds, long long Hs, long long Ws
#define PARTICLE3D_INIT Particle3D{centers, valid, Dn, H, W, Ds, Hs, Ws}
BRIDGE_KERNELS(particle3d, Particle3D, PARTICLE3D_ARGS, PARTICLE3D_INIT)
