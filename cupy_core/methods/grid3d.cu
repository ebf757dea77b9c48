// Grid-based partition in 3-D: exact volumes of warped voxels inside source voxels.
// grid3d.py is the readable NumPy reference and explains the method: the same
// formulas, in the same order of operations (compiled with --fmad=false so that the
// two agree to the last bit). The tables below are grid3d.TRIS, TETS, TET_CORNERS,
// BOUNDARY and BOUNDARY_SIGN (tests/test_grid3d.py checks that they match).
#include "bridge.cuh"

#define G3_MAXV 16                  // grid3d.MAXV
#define G3_LIMIT 1073741824.0       // grid3d.LIMIT = 2^30

// The 18 triangles of the Kuhn split (corner numbers b = dx + 2 dy + 4 dz).
__device__ const int G3_TRIS[18][3] = {
    {0, 1, 3}, {0, 1, 7}, {0, 3, 7}, {1, 3, 7}, {0, 1, 5}, {0, 5, 7}, {1, 5, 7},
    {0, 2, 3}, {0, 2, 7}, {2, 3, 7}, {0, 2, 6}, {0, 6, 7}, {2, 6, 7}, {0, 4, 5},
    {0, 4, 7}, {4, 5, 7}, {0, 4, 6}, {4, 6, 7}};
// The six tetrahedra: (triangle, sign) of their four outward faces.
__device__ const int G3_TETS[6][4][2] = {
    {{0, -1}, {1, 1}, {2, -1}, {3, 1}}, {{4, 1}, {5, 1}, {1, -1}, {6, -1}},
    {{7, 1}, {2, 1}, {8, -1}, {9, -1}}, {{10, -1}, {8, 1}, {11, -1}, {12, 1}},
    {{13, -1}, {14, 1}, {5, -1}, {15, 1}}, {{16, 1}, {11, 1}, {14, -1}, {17, -1}}};
// Their corners, positively oriented for the identity map.
__device__ const int G3_TET_CORNERS[6][4] = {
    {0, 1, 3, 7}, {0, 5, 1, 7}, {0, 3, 2, 7}, {0, 2, 6, 7}, {0, 4, 5, 7}, {0, 6, 4, 7}};
// The 12 boundary triangles and their signs (used for cells of one orientation).
__device__ const int G3_BOUNDARY[12] = {0, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 17};
__device__ const int G3_BOUNDARY_SIGN[12] = {-1, 1, 1, -1, 1, -1, -1, 1, -1, 1, 1, -1};

struct G3Poly {
    double x[G3_MAXV], y[G3_MAXV], z[G3_MAXV];
    int n;
};

__device__ __forceinline__ double g3_coord(const G3Poly& p, int axis, int i) {
    return axis == 0 ? p.x[i] : (axis == 1 ? p.y[i] : p.z[i]);
}

// Sutherland-Hodgman (grid3d.clip): keep coord <= v (keep_le) or coord >= v.
__device__ void g3_clip(const G3Poly& in, G3Poly& out, int axis, double v, bool keep_le) {
    out.n = 0;
    for (int i = 0; i < in.n; ++i) {
        int j = (i + 1 == in.n) ? 0 : i + 1;
        double ca = g3_coord(in, axis, i), cb = g3_coord(in, axis, j);
        double da = keep_le ? ca - v : v - ca;
        double db = keep_le ? cb - v : v - cb;
        if (da <= 0.0 && out.n < G3_MAXV) {
            out.x[out.n] = in.x[i]; out.y[out.n] = in.y[i]; out.z[out.n] = in.z[i];
            ++out.n;
        }
        if (((da < 0.0 && db > 0.0) || (da > 0.0 && db < 0.0)) && out.n < G3_MAXV) {
            double t = da / (da - db);
            double qx = in.x[i] + t * (in.x[j] - in.x[i]);
            double qy = in.y[i] + t * (in.y[j] - in.y[i]);
            double qz = in.z[i] + t * (in.z[j] - in.z[i]);
            if (axis == 0) qx = v; else if (axis == 1) qy = v; else qz = v;
            out.x[out.n] = qx; out.y[out.n] = qy; out.z[out.n] = qz;
            ++out.n;
        }
    }
}

// Twice the signed projected area by the fan from vertex 0 (grid3d.fan_cross).
__device__ double g3_fan_cross(const G3Poly& p) {
    double acc = 0.0;
    for (int i = 1; i + 1 < p.n; ++i) {
        double cr = (p.x[i] - p.x[0]) * (p.y[i + 1] - p.y[0]) - (p.y[i] - p.y[0]) * (p.x[i + 1] - p.x[0]);
        acc = acc + cr;
    }
    return acc;
}

// 6 M(c) of a polygon wholly below z = c (grid3d.fan_moment).
__device__ double g3_fan_moment(const G3Poly& p, double c) {
    double w0 = c - p.z[0];
    double acc = 0.0;
    for (int i = 1; i + 1 < p.n; ++i) {
        double cr = (p.x[i] - p.x[0]) * (p.y[i + 1] - p.y[0]) - (p.y[i] - p.y[0]) * (p.x[i + 1] - p.x[0]);
        acc = acc + cr * ((w0 + (c - p.z[i])) + (c - p.z[i + 1]));
    }
    return acc;
}

// 6 M(c) of a polygon cut by z = c, edge by edge (grid3d.cut_moment).
__device__ double g3_cut_moment(const G3Poly& p, double c) {
    double rx = 0.0, ry = 0.0;
    bool found = false;
    for (int i = 0; i < p.n && !found; ++i) {
        int j = (i + 1 == p.n) ? 0 : i + 1;
        double d = p.z[i] - c, dn = p.z[j] - c;
        bool cross = (d < 0.0 && dn > 0.0) || (d > 0.0 && dn < 0.0);
        if (cross || d == 0.0) {
            double t = cross ? d / (d - dn) : 0.0;
            rx = p.x[i] + t * (p.x[j] - p.x[i]);
            ry = p.y[i] + t * (p.y[j] - p.y[i]);
            found = true;
        }
    }
    if (!found && p.n > 0) {   // cannot happen for a cut polygon; as argmax picks slot 0
        int j = (1 == p.n) ? 0 : 1;
        double d = p.z[0] - c, dn = p.z[j] - c;
        bool cross = (d < 0.0 && dn > 0.0) || (d > 0.0 && dn < 0.0);
        double t = cross ? d / (d - dn) : 0.0;
        rx = p.x[0] + t * (p.x[j] - p.x[0]);
        ry = p.y[0] + t * (p.y[j] - p.y[0]);
    }
    double acc = 0.0;
    for (int i = 0; i < p.n; ++i) {
        int j = (i + 1 == p.n) ? 0 : i + 1;
        double d = p.z[i] - c, dn = p.z[j] - c;
        bool ins = d <= 0.0, insn = dn <= 0.0;
        if (!(ins || insn)) continue;
        bool cross = (d < 0.0 && dn > 0.0) || (d > 0.0 && dn < 0.0);
        double t = cross ? d / (d - dn) : 0.0;
        double ix = p.x[i] + t * (p.x[j] - p.x[i]);
        double iy = p.y[i] + t * (p.y[j] - p.y[i]);
        double sx = ins ? p.x[i] : (cross ? ix : p.x[j]);
        double sy = ins ? p.y[i] : (cross ? iy : p.y[j]);
        double sw = ins ? -d : (cross ? 0.0 : -dn);
        double ex = insn ? p.x[j] : (cross ? ix : p.x[i]);
        double ey = insn ? p.y[j] : (cross ? iy : p.y[i]);
        double ew = insn ? -dn : (cross ? 0.0 : -d);
        double cr = (sx - rx) * (ey - ry) - (sy - ry) * (ex - rx);
        acc = acc + cr * ((0.0 + sw) + ew);
    }
    return acc;
}

// 6 Phi of triangle f of a cell (corners v, clamped) in source voxel (X, Y, K):
// grid3d.triangle_pieces for one column and one level.
__device__ double g3_tri_phi(const double (&v)[8][3], int f, double X, double Y, double K,
                             double Ws, double Hs) {
    const int a = G3_TRIS[f][0], b = G3_TRIS[f][1], c = G3_TRIS[f][2];
    double o[3];
    for (int ax = 0; ax < 3; ++ax) o[ax] = floor(fmin(fmin(v[a][ax], v[b][ax]), v[c][ax]));
    G3Poly P, Q;
    P.n = 3;
    P.x[0] = v[a][0] - o[0]; P.y[0] = v[a][1] - o[1]; P.z[0] = v[a][2] - o[2];
    P.x[1] = v[b][0] - o[0]; P.y[1] = v[b][1] - o[1]; P.z[1] = v[b][2] - o[2];
    P.x[2] = v[c][0] - o[0]; P.y[2] = v[c][1] - o[1]; P.z[2] = v[c][2] - o[2];
    // 1. the x strip.
    double xmin = fmin(fmin(P.x[0], P.x[1]), P.x[2]), xmax = fmax(fmax(P.x[0], P.x[1]), P.x[2]);
    double x0 = X - o[0];
    if (!(x0 >= fmax(floor(xmin), -o[0]) && x0 < fmin(ceil(xmax), Ws - o[0]))) return 0.0;
    g3_clip(P, Q, 0, x0, false);
    g3_clip(Q, P, 0, x0 + 1.0, true);
    if (P.n == 0) return 0.0;
    // 2. the y row.
    double ymin = P.y[0], ymax = P.y[0];
    for (int i = 1; i < P.n; ++i) { ymin = fmin(ymin, P.y[i]); ymax = fmax(ymax, P.y[i]); }
    double y0 = Y - o[1];
    if (!(y0 >= fmax(floor(ymin), -o[1]) && y0 < fmin(ceil(ymax), Hs - o[1]))) return 0.0;
    g3_clip(P, Q, 1, y0, false);
    g3_clip(Q, P, 1, y0 + 1.0, true);
    // A piece needs 3 distinct vertices to have any area.
    int nd = P.n > 0 ? 1 : 0;
    for (int i = 1; i < P.n; ++i)
        nd += (P.x[i] != P.x[i - 1]) || (P.y[i] != P.y[i - 1]) || (P.z[i] != P.z[i - 1]);
    if (nd < 3) return 0.0;
    // 3. the level.
    double zmin = P.z[0], zmax = P.z[0];
    for (int i = 1; i < P.n; ++i) { zmin = fmin(zmin, P.z[i]); zmax = fmax(zmax, P.z[i]); }
    double zlo = floor(zmin), zhi = ceil(zmax);
    double kk = K - o[2];
    if (kk < zlo) return 0.0;
    if (kk >= zhi) return -(3.0 * g3_fan_cross(P));
    double mlo = (kk == zlo) ? 0.0 : g3_cut_moment(P, kk);
    double mhi = (kk + 1.0 == zhi) ? g3_fan_moment(P, zhi) : g3_cut_moment(P, kk + 1.0);
    return mlo - mhi;
}

struct Grid3D {
    const double* corners;        // (D+1, H+1, W+1, 3) backward positions (x, y, z)
    const unsigned char* valid;   // (D, H, W) or null
    long long D, H, W, Ds, Hs, Ws;   // target and source shapes (D: depth)

    template <class F>
    __device__ void for_each_piece(long long p, F f) const {
        if (valid && !valid[p]) return;
        long long j = p % W, i = (p / W) % H, k = p / (W * H);
        double v[8][3];
        for (int b = 0; b < 8; ++b) {
            long long idx = ((k + (b >> 2)) * (H + 1) + (i + ((b >> 1) & 1))) * (W + 1) + (j + (b & 1));
            for (int ax = 0; ax < 3; ++ax) {
                double val = corners[idx * 3 + ax];
                if (!isfinite(val)) return;
                v[b][ax] = fmin(fmax(val, -G3_LIMIT), G3_LIMIT);
            }
        }
        // The source voxels of the bounding box, clipped to the source grid.
        const double size[3] = {(double)Ws, (double)Hs, (double)Ds};
        double b0[3];
        long long n[3];
        for (int ax = 0; ax < 3; ++ax) {
            double lo = v[0][ax], hi = v[0][ax];
            for (int b = 1; b < 8; ++b) { lo = fmin(lo, v[b][ax]); hi = fmax(hi, v[b][ax]); }
            b0[ax] = floor(fmin(fmax(lo, 0.0), size[ax]));
            n[ax] = (long long)(ceil(fmin(fmax(hi, 0.0), size[ax])) - b0[ax]);
            if (n[ax] <= 0) return;
        }
        // One orientation for all six tetrahedra: the boundary faces suffice.
        bool pos = true, neg = true;
        for (int t = 0; t < 6; ++t) {
            const int* q = G3_TET_CORNERS[t];
            double ax_ = v[q[1]][0] - v[q[0]][0], ay = v[q[1]][1] - v[q[0]][1], az = v[q[1]][2] - v[q[0]][2];
            double bx = v[q[2]][0] - v[q[0]][0], by = v[q[2]][1] - v[q[0]][1], bz = v[q[2]][2] - v[q[0]][2];
            double cx = v[q[3]][0] - v[q[0]][0], cy = v[q[3]][1] - v[q[0]][1], cz = v[q[3]][2] - v[q[0]][2];
            double det = ax_ * (by * cz - bz * cy) - ay * (bx * cz - bz * cx) + az * (bx * cy - by * cx);
            pos = pos && det > 0.0;
            neg = neg && det < 0.0;
        }
        const bool consistent = pos || neg;
        const double ws = (double)Ws, hs = (double)Hs;
        for (long long lz = 0; lz < n[2]; ++lz) {
            for (long long ly = 0; ly < n[1]; ++ly) {
                for (long long lx = 0; lx < n[0]; ++lx) {
                    double X = b0[0] + (double)lx, Y = b0[1] + (double)ly, Z = b0[2] + (double)lz;
                    double vol;
                    if (consistent) {
                        double s = 0.0;
                        for (int q = 0; q < 12; ++q)
                            s = s + (double)G3_BOUNDARY_SIGN[q] * g3_tri_phi(v, G3_BOUNDARY[q], X, Y, Z, ws, hs);
                        vol = fabs(s) / 6.0;
                    } else {
                        // Six of the 18 triangles are shared by two tetrahedra: each once.
                        double phi[18];
                        for (int q = 0; q < 18; ++q) phi[q] = g3_tri_phi(v, q, X, Y, Z, ws, hs);
                        double total = 0.0;
                        for (int t = 0; t < 6; ++t) {
                            double s = 0.0;
                            for (int e = 0; e < 4; ++e)
                                s = s + (double)G3_TETS[t][e][1] * phi[G3_TETS[t][e][0]];
                            total = total + fabs(s);
                        }
                        vol = total / 6.0;
                    }
                    if (vol > 0.0)
                        f(((long long)b0[2] + lz) * Hs * Ws + ((long long)b0[1] + ly) * Ws + ((long long)b0[0] + lx), vol);
                }
            }
        }
    }
};

#define GRID3D_ARGS const double* corners, const unsigned char* valid, long long Dn, long long H, \
                    long long W, long long Ds, long long Hs, long long Ws
#define GRID3D_INIT Grid3D{corners, valid, Dn, H, W, Ds, Hs, Ws}
BRIDGE_KERNELS(grid3d, Grid3D, GRID3D_ARGS, GRID3D_INIT)
