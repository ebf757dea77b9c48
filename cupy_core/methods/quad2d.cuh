// Warped pixel quads shared by the grid variant and the upsampling baseline:
// orientation tests and the fail-safe that turns a bow-tie into its convex hull.
// grid2d.py (_orient, _crosses, quads) is the NumPy twin.
#pragma once

__device__ __forceinline__ double clampd(double v, double lo, double hi) {
    return fmin(fmax(v, lo), hi);
}

__device__ __forceinline__ double orient2(double ax, double ay, double bx, double by,
                                          double cx, double cy) {
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
}

__device__ __forceinline__ bool crosses(double px, double py, double qx, double qy,
                                        double rx, double ry, double sx, double sy) {
    double d1 = orient2(px, py, qx, qy, rx, ry);
    double d2 = orient2(px, py, qx, qy, sx, sy);
    double d3 = orient2(rx, ry, sx, sy, px, py);
    double d4 = orient2(rx, ry, sx, sy, qx, qy);
    return (d1 * d2 < 0.0) && (d3 * d4 < 0.0);
}

// Corners x, y (P0..P3) -> qx, qy: unchanged for a simple quad; for a bow-tie the
// order that makes the crossing edges diagonals, i.e. its convex hull.
__device__ __forceinline__ void hull_order(const double x[4], const double y[4],
                                           double qx[4], double qy[4]) {
    bool bow01 = crosses(x[0], y[0], x[1], y[1], x[2], y[2], x[3], y[3]);
    bool bow12 = !bow01 && crosses(x[1], y[1], x[2], y[2], x[3], y[3], x[0], y[0]);
    qx[0] = x[0]; qy[0] = y[0];
    qx[1] = bow01 ? x[2] : x[1]; qy[1] = bow01 ? y[2] : y[1];
    qx[2] = bow01 ? x[1] : (bow12 ? x[3] : x[2]); qy[2] = bow01 ? y[1] : (bow12 ? y[3] : y[2]);
    qx[3] = bow12 ? x[2] : x[3]; qy[3] = bow12 ? y[2] : y[3];
}

// Target pixel p's warped quad from the (H+1, W+1, 2) corner grid, with the bow-tie
// fail-safe applied: false when p is masked out (valid) or a corner is not finite.
__device__ __forceinline__ bool load_quad(const double* corners, const unsigned char* valid,
                                          long long W, long long p,
                                          double qx[4], double qy[4]) {
    if (valid && !valid[p]) return false;
    long long i = p / W, j = p % W;
    const double* c0 = corners + (i * (W + 1) + j) * 2;
    const double* c3 = corners + ((i + 1) * (W + 1) + j) * 2;
    double x[4] = {c0[0], c0[2], c3[2], c3[0]};
    double y[4] = {c0[1], c0[3], c3[3], c3[1]};
    for (int e = 0; e < 4; ++e)
        if (!isfinite(x[e]) || !isfinite(y[e])) return false;
    hull_order(x, y, qx, qy);
    return true;
}
