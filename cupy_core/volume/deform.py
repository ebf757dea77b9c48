"""Space deformations known at sample points (lattices, armatures): backward maps.

A deformer (a Blender lattice or armature, say) moves every point of space; the add-on
measures it by deforming a *probe*: the points ``r`` of a regular rest grid, whose
deformed world positions ``D_f(r)`` and ``D_{f-1}(r)`` it reads at frames f and f-1.
Between the probe points ``D`` is trilinear. The material at a world point ``x`` of
frame f sat, one frame earlier, at ``D_{f-1}(D_f^{-1}(x))``: ``SampledDeformation``
inverts ``D_f`` by damped Newton steps on the trilinear interpolant (so the inverse is
exact for it, whatever its accuracy against the true deformer) and evaluates ``D_{f-1}``
at the rest point found.

* An affine deformation (a deformer moved, rotated, scaled as a whole) is reproduced
  exactly: the trilinear interpolant of affine samples is that affine map.
* Where ``D_f`` has no pre-image inside the probe (material that came from outside the
  sampled region) or folds space so that Newton fails, the result is NaN: the warp
  gives those voxels fresh noise (docs/DESIGN.md 3).

Rest grid: ``origin + spacing * (j, i, k)`` for the point ``[k, i, j]`` of a
``(nz, ny, nx)`` grid; samples are ``(nz, ny, nx, 3)`` world positions.
"""
import numpy as np

from .grid import VolumeInputError, float_field, trilinear

__all__ = ["SampledDeformation", "probe_grid", "rest_points"]


def rest_points(origin, spacing, counts):
    """``(nz, ny, nx, 3)`` rest positions of the probe ``counts = (nx, ny, nz)``."""
    nx, ny, nz = (int(n) for n in counts)
    k, i, j = np.meshgrid(np.arange(nz, dtype=np.float64), np.arange(ny, dtype=np.float64),
                          np.arange(nx, dtype=np.float64), indexing="ij")
    idx = np.stack([j, i, k], axis=-1)
    return np.asarray(origin, np.float64) + idx * np.asarray(spacing, np.float64)


def probe_grid(points, *, margin=0.25, max_cells=64, min_cells=2):
    """A rest grid ``(origin, spacing, counts)`` covering the box of ``points``
    (``(..., 3)``) enlarged by ``margin`` times its largest side on every side, with at
    most ``max_cells`` cells along the longest side and cubic cells."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if pts.size == 0 or not np.isfinite(pts).all():
        raise VolumeInputError("the probe needs finite points to cover")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    ext = float((hi - lo).max())
    if ext <= 0:
        ext = 1.0
    pad = float(margin) * ext
    lo, hi = lo - pad, hi + pad
    size = hi - lo
    cells = max(int(max_cells), int(min_cells))
    h = float(size.max()) / cells
    counts = np.maximum(np.ceil(size / h - 1e-9).astype(int), int(min_cells)) + 1
    centre = 0.5 * (lo + hi)
    origin = centre - 0.5 * h * (counts - 1)
    return origin, np.full(3, h), tuple(int(n) for n in counts)


def _check_samples(a, counts, name):
    a = np.asarray(a)
    nx, ny, nz = counts
    if a.shape != (nz, ny, nx, 3):
        raise VolumeInputError(f"{name} must be (nz, ny, nx, 3) = {(nz, ny, nx, 3)}, got "
                               f"{a.shape}")
    return float_field(a, name)


class SampledDeformation:
    """The deformation of a rest grid at frames f (``now``) and f-1 (``prev``); see the
    module's notes. ``origin``, ``spacing``: the rest grid (3-vectors, spacing > 0);
    ``now``, ``prev``: ``(nz, ny, nx, 3)`` world positions of its points."""

    def __init__(self, origin, spacing, now, prev):
        self.origin = np.asarray(origin, np.float64).reshape(3)
        self.spacing = np.asarray(spacing, np.float64).reshape(3)
        if not np.isfinite(self.origin).all() or not (self.spacing > 0).all():
            raise VolumeInputError(f"the probe's origin must be finite and its spacing > 0, "
                                   f"got {self.origin}, {self.spacing}")
        shape = np.shape(now)
        if len(shape) != 4:
            raise VolumeInputError(f"probe samples must be (nz, ny, nx, 3), got {shape}")
        self.counts = (shape[2], shape[1], shape[0])
        if min(self.counts) < 2:
            raise VolumeInputError(f"the probe needs at least 2 points per axis, got "
                                   f"{self.counts} (x, y, z)")
        self.now = _check_samples(now, self.counts, "the probe's positions at frame f")
        self.prev = _check_samples(prev, self.counts, "the probe's positions at frame f-1")
        self._affine_now = self._fit_affine(self.now)

    # ------------------------------------------------------------------ interpolation
    def _eval(self, samples, rest, jacobian=False):
        """``D`` (and ``dD/dr``) at rest points; NaN where ``rest`` is."""
        bad = ~np.isfinite(rest).all(axis=-1)
        if bad.any():
            rest = np.where(bad[..., None], self.origin, rest)
        val, jac = trilinear(samples, (rest - self.origin) / self.spacing, jacobian)
        val[bad] = np.nan
        if jacobian:
            jac = jac / self.spacing          # column a of dD/du over the spacing: dD/dr
        return val, jac

    def forward(self, rest, which="now"):
        """``D`` (trilinear) at rest points ``(..., 3)``; ``which``: "now" or "prev"."""
        samples = self.now if which == "now" else self.prev
        return self._eval(samples, np.asarray(rest, np.float64))[0]

    def _fit_affine(self, samples):
        """Least-squares ``(A, b)`` with ``D(r) ~ A r + b``: Newton's starting guess."""
        r = rest_points(self.origin, self.spacing, self.counts).reshape(-1, 3)
        d = samples.reshape(-1, 3)
        step = max(1, len(r) // 20000)
        r, d = r[::step], d[::step]
        x = np.concatenate([r, np.ones((len(r), 1))], axis=1)
        coef, *_ = np.linalg.lstsq(x, d, rcond=None)
        a, b = coef[:3].T, coef[3]
        if abs(np.linalg.det(a)) < 1e-12 * float(np.abs(a).max() or 1.0) ** 3:
            a = np.eye(3)
        return a, b

    # ------------------------------------------------------------------ inversion
    def invert(self, world, *, max_iter=60):
        """Rest points ``r`` with ``D_f(r) = world`` (``(..., 3)``); NaN where Newton
        does not converge or the pre-image lies outside the probe. Newton starts from
        the affine fit's inverse; points where that fails start again from the probe
        point whose image is nearest (strong twists and bends)."""
        x = np.asarray(world, np.float64)
        shape = x.shape
        x = x.reshape(-1, 3)
        a, b = self._affine_now
        r, err = self._newton(x, np.linalg.solve(a, (x - b).T).T, max_iter)
        h = float(self.spacing.min())
        again = np.nonzero(~self._accepted(r, err, h) & np.isfinite(x).all(axis=-1))[0]
        if again.size:
            r2, err2 = self._newton(x[again], self._nearest_rest(x[again]), max_iter)
            better = ~(err2 >= err[again])
            r[again[better]], err[again[better]] = r2[better], err2[better]
        r[~self._accepted(r, err, h)] = np.nan
        return r.reshape(shape)

    def _accepted(self, r, err, h):
        u = (r - self.origin) / self.spacing
        top = np.array(self.counts) - 1
        slack = 1e-6
        inside = ((u >= -slack) & (u <= top + slack)).all(axis=-1)
        return inside & (err <= 1e-6 * h)

    def _nearest_rest(self, x, chunk=64, most=20000):
        """For each point of ``x``, the rest position of the probe point whose image at
        frame f is nearest, among at most ``most`` probe points (every s-th along each
        axis): brute force in chunks, only for Newton's failures."""
        step = 1
        while np.prod([-(-n // step) for n in self.counts]) > most:
            step += 1
        sl = (slice(None, None, step),) * 3
        d = self.now[sl].reshape(-1, 3)
        rest = rest_points(self.origin, self.spacing, self.counts)[sl].reshape(-1, 3)
        d2 = (d * d).sum(axis=1)
        out = np.empty_like(x)
        for i in range(0, len(x), chunk):
            q = x[i:i + chunk]
            dist = d2[None, :] - 2.0 * q @ d.T
            out[i:i + chunk] = rest[np.argmin(dist, axis=1)]
        return out

    def _newton(self, x, r, max_iter):
        """Damped Newton steps for ``D_f(r) = x`` from ``r``, kept inside the probe (its
        linear extrapolation outside could offer false pre-images): ``(r,
        |residual|)``."""
        lo = self.origin
        hi = self.origin + self.spacing * (np.array(self.counts) - 1)
        r = np.clip(r, lo, hi)
        tol = 1e-10 * float(self.spacing.min())
        val, jac = self._eval(self.now, r, jacobian=True)
        err = np.linalg.norm(x - val, axis=-1)
        err[~np.isfinite(err)] = np.inf
        active = np.isfinite(err) & (err > tol)
        for _ in range(int(max_iter)):
            idx = np.nonzero(active)[0]
            if idx.size == 0:
                break
            jj = jac[idx]
            ok = np.abs(np.linalg.det(jj)) > 1e-300
            step = np.zeros((idx.size, 3))
            if ok.any():
                step[ok] = np.linalg.solve(jj[ok], (x[idx[ok]] - val[idx[ok]])[..., None])[..., 0]
            # Damped: halve the step while the residual grows (folds, cell seams).
            scale = np.ones(idx.size)
            for _ in range(12):
                trial = np.clip(r[idx] + scale[:, None] * step, lo, hi)
                tv, tj = self._eval(self.now, trial, jacobian=True)
                te = np.linalg.norm(x[idx] - tv, axis=-1)
                worse = (te >= err[idx]) & (te > tol)
                if not worse.any():
                    break
                scale[worse] *= 0.5
            stuck = worse | ~ok
            moved = ~stuck
            r[idx[moved]] = trial[moved]
            val[idx[moved]], jac[idx[moved]], err[idx[moved]] = tv[moved], tj[moved], te[moved]
            active[idx[stuck]] = False
            active[idx[moved]] = te[moved] > tol
        return r, err

    def backward(self, world):
        """World positions at frame f-1 of the material at ``world`` (frame f):
        ``D_{f-1}(D_f^{-1}(world))``; NaN where unknown."""
        return self._eval(self.prev, self.invert(world))[0]
