// Grid-based partition in 2-D: exact areas of warped pixel quads in source cells.
// grid2d.py is the readable NumPy reference: same formulas, same order of operations
// (compiled with --fmad=false so that the two agree to the last bits).
#include "bridge.cuh"
#include "quad2d.cuh"

// Green's theorem per source cell, split so that the per-column work is done once per
// column, not once per cell (grid2d.py: edge_columns, edge_row; same operations in the
// same order, branch-free).
// Per edge A->B, once (edge_setup): dx with a vertical edge's 0 replaced by 1 (its
// pieces have width 0 anyway), and its x range.
struct Edge {
    double xa, ya, dx, dy, dxs, xmin, xmax;
};

__device__ __forceinline__ Edge edge_setup(double xa, double ya, double xb, double yb) {
    Edge e;
    e.xa = xa; e.ya = ya;
    e.dx = xb - xa; e.dy = yb - ya;
    e.dxs = e.dx + (e.dx == 0.0 ? 1.0 : 0.0);
    e.xmin = fmin(xa, xb); e.xmax = fmax(xa, xb);
    return e;
}

// Per edge and column [x0, x0+1]: the signed width w of the edge's piece in the column
// (0 if it misses it or is vertical), the piece's low and high y, z = (hi == lo) and
// hz = hi - lo + z.
struct EdgeColumn {
    double w, lo, hi, z, hz;
};

__device__ __forceinline__ EdgeColumn edge_column(const Edge& e, double x0) {
    double xl = fmax(e.xmin, x0);
    double xr = fmin(e.xmax, x0 + 1.0);
    // Edge parameters clamped to [0, 1]: no change where the edge meets the column;
    // elsewhere (w = 0) lo and hi stay finite even when |dx| is tiny.
    double yl = e.ya + clampd((xl - e.xa) / e.dxs, 0.0, 1.0) * e.dy;
    double yr = e.ya + clampd((xr - e.xa) / e.dxs, 0.0, 1.0) * e.dy;
    EdgeColumn r;
    r.w = copysign(fmax(xr - xl, 0.0), e.dx);
    r.lo = fmin(yl, yr);
    r.hi = fmax(yl, yr);
    r.z = r.hi == r.lo ? 1.0 : 0.0;
    r.hz = (r.hi - r.lo) + r.z;
    return r;
}

// The piece's term for the cell of row [y0, y1 = y0+1]: w times the mean over the piece
// of clamp(y, y0, y1) - y0 (exact: the piece is straight).
__device__ __forceinline__ double edge_row(const EdgeColumn& e, double y0, double y1) {
    double a = fmin(fmax(e.lo, y0), y1);
    double b = fmin(fmax(e.hi, y0), y1);
    double num = (b - a) * (0.5 * (a + b) - y0) + fmax(e.hi - fmax(e.lo, y1), 0.0);
    return e.w * ((num + e.z * (a - y0)) / e.hz);
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
        Edge edges[4];
        for (int e = 0; e < 4; ++e) {
            int n = (e + 1) & 3;
            edges[e] = edge_setup(qx[e], qy[e], qx[n], qy[n]);
        }
        // Columns outer, rows inner: each edge's piece in a column is found once.
        for (long long cx = cx0; cx < cx1; ++cx) {
            EdgeColumn ec[4];
            for (int e = 0; e < 4; ++e) ec[e] = edge_column(edges[e], (double)cx);
            for (long long cy = cy0; cy < cy1; ++cy) {
                double y0 = (double)cy, y1 = y0 + 1.0;
                double total = 0.0;
                for (int e = 0; e < 4; ++e) total = total + edge_row(ec[e], y0, y1);
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
