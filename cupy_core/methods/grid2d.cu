// Grid-based partition in 2-D: exact areas of warped pixel quads in source cells.
// grid2d.py is the readable NumPy reference: same formulas, same order of operations
// (compiled with --fmad=false so that the two agree to the last bits).
#include "bridge.cuh"
#include "quad2d.cuh"

// Integral over edge A->B of 1[x in [x0, x0+1]] * (clamp(y, y0, y0+1) - y0) dx.
__device__ __forceinline__ double edge_term(double xa, double ya, double xb, double yb,
                                            double x0, double y0) {
    double dx = xb - xa, dy = yb - ya;
    if (dx == 0.0) return 0.0;
    double ta = (x0 - xa) / dx, tb = (x0 + 1.0 - xa) / dx;
    double lo = clampd(fmin(ta, tb), 0.0, 1.0);
    double hi = clampd(fmax(ta, tb), 0.0, 1.0);
    if (!(hi > lo)) return 0.0;
    double ua, ub;
    if (dy == 0.0) {
        ua = lo; ub = lo;
    } else {
        ua = clampd((y0 - ya) / dy, lo, hi);
        ub = clampd((y0 + 1.0 - ya) / dy, lo, hi);
    }
    double m1 = fmin(ua, ub), m2 = fmax(ua, ub);
    double glo = clampd(ya + lo * dy, y0, y0 + 1.0) - y0;
    double g1 = clampd(ya + m1 * dy, y0, y0 + 1.0) - y0;
    double g2 = clampd(ya + m2 * dy, y0, y0 + 1.0) - y0;
    double ghi = clampd(ya + hi * dy, y0, y0 + 1.0) - y0;
    double integral = 0.5 * ((m1 - lo) * (glo + g1) + (m2 - m1) * (g1 + g2) + (hi - m2) * (g2 + ghi));
    return dx * integral;
}

struct Grid2D {
    const double* corners;        // (H+1, W+1, 2) backward positions
    const unsigned char* valid;   // (H, W) or null
    long long H, W, Hs, Ws;

    template <class F>
    __device__ void for_each_piece(long long p, F f) const {
        // Fail-safe 1 (in load_quad): a bow-tie becomes its convex hull.
        double qx[4], qy[4];
        if (!load_quad(corners, valid, W, p, qx, qy)) return;
        // Fail-safe 2: orientation from the quad's signed area.
        double twice = (qx[0] * qy[1] - qx[1] * qy[0]) + (qx[1] * qy[2] - qx[2] * qy[1])
                     + (qx[2] * qy[3] - qx[3] * qy[2]) + (qx[3] * qy[0] - qx[0] * qy[3]);
        double sign = twice < 0.0 ? -1.0 : 1.0;
        double xmin = fmin(fmin(qx[0], qx[1]), fmin(qx[2], qx[3]));
        double xmax = fmax(fmax(qx[0], qx[1]), fmax(qx[2], qx[3]));
        double ymin = fmin(fmin(qy[0], qy[1]), fmin(qy[2], qy[3]));
        double ymax = fmax(fmax(qy[0], qy[1]), fmax(qy[2], qy[3]));
        double bx0 = floor(clampd(xmin, -1.0, (double)Ws + 1.0));
        double bx1 = ceil(clampd(xmax, -1.0, (double)Ws + 1.0));
        double by0 = floor(clampd(ymin, -1.0, (double)Hs + 1.0));
        double by1 = ceil(clampd(ymax, -1.0, (double)Hs + 1.0));
        long long cx0 = (long long)fmax(bx0, 0.0), cx1 = (long long)fmin(bx1, (double)Ws);
        long long cy0 = (long long)fmax(by0, 0.0), cy1 = (long long)fmin(by1, (double)Hs);
        for (long long cy = cy0; cy < cy1; ++cy) {
            for (long long cx = cx0; cx < cx1; ++cx) {
                double total = 0.0;
                for (int e = 0; e < 4; ++e) {
                    int n = (e + 1) & 3;
                    total = total + edge_term(qx[e], qy[e], qx[n], qy[n], (double)cx, (double)cy);
                }
                double area = fmax(-total * sign, 0.0);  // fail-safe 3
                if (area > 0.0) f(cy * Ws + cx, area);
            }
        }
    }
};

#define GRID2D_ARGS const double* corners, const unsigned char* valid, long long H, long long W, \
                    long long Hs, long long Ws
#define GRID2D_INIT Grid2D{corners, valid, H, W, Hs, Ws}
BRIDGE_KERNELS(grid2d, Grid2D, GRID2D_ARGS, GRID2D_INIT)
