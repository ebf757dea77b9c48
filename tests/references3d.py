"""Independent references for the 3-D partitions, shared by the method tests and the
warp tests: the grid variant's volumes by brute force (each Kuhn tetrahedron clipped
against each voxel as a convex polytope, its vertices by enumerating plane triples,
its volume by scipy's ConvexHull) and the particle variant's trilinear weights."""
import itertools

import numpy as np
from scipy.spatial import ConvexHull, QhullError


def kuhn_tets():
    """The six tetrahedra of the Kuhn split as corner numbers b = dx + 2 dy + 4 dz:
    v0 -> v0 + e_a -> v0 + e_a + e_b -> v7 for each permutation (a, b, c) of the axes."""
    unit = (1, 2, 4)
    return [(0, unit[a], unit[a] + unit[b], 7) for a, b, _ in itertools.permutations(range(3))]


TRIPLES = np.array(list(itertools.combinations(range(10), 3)))


def tet_box_volume(P, lo):
    """Volume of conv(P) (4 points) inside the unit box at ``lo``: the polytope's
    vertices are the feasible intersections of 3 of its 10 bounding planes."""
    A, b = [], []
    for i in range(4):
        o = [P[j] for j in range(4) if j != i]
        n = np.cross(o[1] - o[0], o[2] - o[0])
        if np.linalg.norm(n) < 1e-14:
            return 0.0                                  # flat tetrahedron
        if n @ P[i] > n @ o[0]:
            n = -n
        A.append(n); b.append(n @ o[0])
    for a in range(3):
        e = np.zeros(3); e[a] = 1.0
        A += [e, -e]; b += [lo[a] + 1.0, -lo[a]]
    A, b = np.array(A), np.array(b)
    M = A[TRIPLES]
    ok = np.abs(np.linalg.det(M)) > 1e-12 * np.prod(np.linalg.norm(M, axis=2), axis=1)
    if not ok.any():
        return 0.0
    X = np.linalg.solve(M[ok], b[TRIPLES[ok]][..., None])[..., 0]
    scale = 1.0 + np.abs(A).sum(1)
    X = X[np.all(X @ A.T <= b + 1e-9 * scale, axis=1)]
    if len(X) < 4:
        return 0.0
    try:
        return ConvexHull(X).volume
    except QhullError:                                  # flat intersection
        return 0.0


def reference_record(corners, source_shape):
    """{(target, source): volume}, summing the six tetrahedra's unsigned volumes."""
    ds, hs, ws = source_shape
    D, H, W = (s - 1 for s in corners.shape[:3])
    ref = {}
    for k, i, j in itertools.product(range(D), range(H), range(W)):
        v = [corners[k + (b >> 2), i + ((b >> 1) & 1), j + (b & 1)] for b in range(8)]
        lo = np.floor(np.min(v, 0)).astype(int)
        hi = np.ceil(np.max(v, 0)).astype(int)
        p = (k * H + i) * W + j
        for tet in kuhn_tets():
            P = np.array([v[q] for q in tet])
            for z, y, x in itertools.product(range(max(lo[2], 0), min(hi[2], ds)),
                                             range(max(lo[1], 0), min(hi[1], hs)),
                                             range(max(lo[0], 0), min(hi[0], ws))):
                vol = tet_box_volume(P, (x, y, z))
                if vol > 0:
                    key = (p, (z * hs + y) * ws + x)
                    ref[key] = ref.get(key, 0.0) + vol
    return ref


def orientations(c):
    """Signed 6-volumes (6, D, H, W) of each cell's six tetrahedra, positive for the
    identity (test-side, from ``kuhn_tets``)."""
    D, H, W = (s - 1 for s in c.shape[:3])
    V = [c[b >> 2:(b >> 2) + D, (b >> 1) & 1:((b >> 1) & 1) + H, b & 1:(b & 1) + W] for b in range(8)]
    out = []
    for perm, tet in zip(itertools.permutations(range(3)), kuhn_tets()):
        det = np.linalg.det(np.stack([V[tet[1]] - V[tet[0]], V[tet[2]] - V[tet[0]],
                                      V[tet[3]] - V[tet[0]]], axis=-2))
        out.append(det * np.linalg.det(np.eye(3)[list(perm)]))
    return np.stack(out)


# ----------------------------------------------------------------------------- tables


def trilinear_reference(pos, source_shape):
    """Weights prod over axes of max(0, 1 - |p - centre|) to every source centre,
    divided by each source's total."""
    ds, hs, ws = source_shape
    zc, yc, xc = np.meshgrid(np.arange(ds) + 0.5, np.arange(hs) + 0.5, np.arange(ws) + 0.5,
                             indexing="ij")
    ref = {}
    for t, (x, y, z) in enumerate(pos.reshape(-1, 3)):
        if not np.isfinite([x, y, z]).all():
            continue
        wgt = (np.maximum(0, 1 - np.abs(x - xc)) * np.maximum(0, 1 - np.abs(y - yc))
               * np.maximum(0, 1 - np.abs(z - zc))).ravel()
        for k in np.flatnonzero(wgt > 0):
            ref[(t, int(k))] = wgt[k]
    totals = {}
    for (t, k), w in ref.items():
        totals[k] = totals.get(k, 0.0) + w
    return {key: w / totals[key[1]] for key, w in ref.items()}
