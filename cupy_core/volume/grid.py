"""Domain grids, backward maps at voxel corners and velocity grids (no Blender).

Coordinates
-----------
*Voxel coordinates* ``(x, y, z)`` of a domain of shape ``(D, H, W)``: voxel
``(k, i, j)`` (array index ``[k, i, j]``) is the cube ``[j, j+1] x [i, i+1] x
[k, k+1]``; its corners are the integer points, its centre ``(j+.5, i+.5, k+.5)``.
``Domain.voxel_to_world`` is a 4x4 matrix (column vectors) with
``world = A @ (x, y, z, 1)``. A backward map (docs/DESIGN.md 3) gives, for each corner of
frame f's grid, the voxel coordinates in frame f-1's grid the material came from:
an array ``(D+1, H+1, W+1, 3)`` of ``(x, y, z)``, what ``cupy_core.warp(...,
at="corners")`` takes. When the domain itself moves, frame f's corners are placed with
frame f's ``voxel_to_world`` and the result is expressed with frame f-1's.

Object motion
-------------
Noise *attached to an object* with world matrix ``M_f`` (any invertible affine: rigid,
scaled, sheared) comes from ``M_{f-1} M_f^{-1} p`` for a world point p of frame f.
``object_positions`` decides which corners follow which object:

* ``follow="all"``: the (single) object's motion drives the whole domain: every corner
  follows it. The map is affine and injective, so every frame is exactly white.
* ``follow="inside"``: a corner follows the first object whose local bounding box (at
  frame f) contains it; other corners are static in world space. Cubes straddling a
  box boundary get a folded region; the warp's fail-safe keeps them N(0, 1) (possibly
  correlated with their neighbours along the seam).

A mover may instead carry a *deformation* (``deform.SampledDeformation``: a lattice or
an armature measured by a probe): its corners go where the deformation takes them
(NaN, i.e. fresh noise, where it has no pre-image); its matrix then only places its box.

Velocity grids
--------------
``VelocityGrid``: world-space velocity ``(vx, vy, vz)`` at the voxel *centres* of its
own grid (``(D, H, W, 3)``, array ``[k, i, j]``) placed by its own ``voxel_to_world``,
in world units per frame (``units="frame"``) or per second (``units="second"``,
divided by ``fps``). Sampling is trilinear between centres, edge values extended
outside. ``backtrace_positions`` traces every corner of frame f back one frame through
frame f's velocity with the midpoint rule (RK2), in ``substeps`` equal steps.
"""
import os

import numpy as np

from ..bake.sequences import sequence_files
from ..conventions import pixel_corners

__all__ = ["Domain", "VelocityGrid", "VolumeInputError", "corner_points", "affine_positions",
           "rigid_positions", "object_positions", "backtrace_positions",
           "load_velocity_frame", "velocity_sequence", "check_velocity_files", "trilinear",
           "VELOCITY_PREFIX"]

VELOCITY_PREFIX = "velocity"


class VolumeInputError(ValueError):
    """Bad volume input (no domain, a velocity grid of the wrong shape, a missing
    frame...): the message says what and where."""


def as_matrix(m, name):
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise VolumeInputError(f"{name} must be a finite 4x4 matrix, got shape {m.shape}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise VolumeInputError(f"{name} is singular (zero scale?)")
    return m


def float_field(a, what):
    """``a`` as float64 if it is a floating-point array of finite values; otherwise a
    ``VolumeInputError`` naming ``what``."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise VolumeInputError(f"{what} must be floating point, got {a.dtype}")
    if not np.isfinite(a).all():
        raise VolumeInputError(f"{what} has non-finite values")
    return a.astype(np.float64)


def _apply(m, pts):
    """4x4 affine ``m`` applied to points ``(..., 3)``."""
    return pts @ m[:3, :3].T + m[:3, 3]


class Domain:
    """A voxel grid of ``shape`` ``(D, H, W)`` placed in the world by ``voxel_to_world``."""

    def __init__(self, shape, voxel_to_world):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise VolumeInputError(f"domain shape must be (D, H, W) with each >= 1, got {shape}")
        self.shape = shape
        self.voxel_to_world = as_matrix(voxel_to_world, "the domain's voxel-to-world matrix")

    @classmethod
    def from_box(cls, bmin, bmax, resolution, matrix=None, scale=None):
        """The grid of a box ``bmin..bmax`` (local coordinates of an object with world
        ``matrix``; identity if None), by the rule of Blender's fluid domain
        (``manta_set_domain_from_mesh`` in blenkernel's fluid.cc), so that voxels are
        cubic in the world and match a fluid cache's cells one to one: the box's size
        times the object's ``scale`` (default: the lengths of ``matrix``'s axes; pass
        Blender's ``Object.scale`` to match a domain with scaled parents exactly) gets
        ``resolution`` voxels along its longest side and the nearest count along the
        others (float32 ``int(x + 0.5)``, at least 4 as in Blender, or ``resolution``
        if smaller); voxels stretch slightly to fill the box. Local x -> voxel x (j, W),
        y -> y (i, H), z -> z (k, D)."""
        bmin = np.asarray(bmin, np.float64)
        bmax = np.asarray(bmax, np.float64)
        ext = bmax - bmin
        if bmin.shape != (3,) or not np.isfinite(ext).all() or (ext <= 0).any():
            flat = "" if bmin.shape != (3,) or not np.isfinite(ext).all() else (
                " (0 along " + ", ".join("xyz"[i] for i in range(3) if ext[i] <= 0) + ")")
            raise VolumeInputError(f"the domain object has no size{flat}: use a mesh box "
                                   f"with a size as the domain (the box must have positive size, got {bmin} .. {bmax})")
        res = int(resolution)
        if res < 1:
            raise VolumeInputError(f"domain resolution must be >= 1, got {resolution}")
        m = np.eye(4) if matrix is None else as_matrix(matrix, "the domain's world matrix")
        scale = (np.linalg.norm(m[:3, :3], axis=0) if scale is None
                 else np.asarray(scale, np.float64))
        size = np.abs(ext * scale).astype(np.float32)
        if scale.shape != (3,) or not np.isfinite(size).all() or (size <= 0).any():
            raise VolumeInputError(f"the domain's scale must be non-zero, got {scale}")
        longest = int(np.argmax(size))   # the first of equal sides, as Blender's tests
        per = np.float32(res) / size[longest]
        n = np.maximum((size * per + np.float32(0.5)).astype(np.int64), min(4, res))
        n[longest] = res
        local = np.eye(4)
        local[:3, :3] = np.diag(ext / n)
        local[:3, 3] = bmin
        return cls((n[2], n[1], n[0]), m @ local)

    @property
    def voxel_size(self):
        """World size of a voxel along its x, y and z axes."""
        return tuple(float(v) for v in np.linalg.norm(self.voxel_to_world[:3, :3], axis=0))

    @property
    def world_to_voxel(self):
        return np.linalg.inv(self.voxel_to_world)

    def corners_world(self):
        return _apply(self.voxel_to_world, corner_points(self.shape))

    def centers_world(self):
        return _apply(self.voxel_to_world, corner_points(self.shape)[:-1, :-1, :-1] + 0.5)

    def __repr__(self):
        return f"Domain(shape={self.shape})"


def corner_points(shape):
    """``(D+1, H+1, W+1, 3)`` float64 voxel coordinates ``(x, y, z) = (j, i, k)``."""
    return pixel_corners(tuple(int(n) for n in shape))


def affine_positions(shape, backward):
    """Corners of ``shape`` mapped by the 4x4 ``backward`` (voxel coords of frame f ->
    voxel coords of frame f-1)."""
    return _apply(as_matrix(backward, "the backward matrix"), corner_points(shape))


def rigid_positions(domain_now, domain_prev, matrix_now, matrix_prev):
    """Backward positions of noise attached to an object (world matrices ``matrix_now``
    at f, ``matrix_prev`` at f-1), for the whole domain:
    ``V_{f-1}^{-1} M_{f-1} M_f^{-1} V_f`` at every corner."""
    m_now = as_matrix(matrix_now, "the object's matrix at frame f")
    m_prev = as_matrix(matrix_prev, "the object's matrix at frame f-1")
    b = np.linalg.inv(domain_prev.voxel_to_world) @ m_prev @ np.linalg.inv(m_now) @ \
        domain_now.voxel_to_world
    return affine_positions(domain_now.shape, b)


def object_positions(domain_now, domain_prev, movers, follow="all"):
    """Backward positions from object motion. ``movers``: a list of ``(matrix_now,
    matrix_prev, box)`` or ``(matrix_now, matrix_prev, box, deformation)``, ``box`` =
    ``(bmin, bmax)`` in the object's local coordinates (or None), ``deformation`` an
    object with ``backward(world_f) -> world_{f-1}`` (or None: the matrices move it).
    ``follow``: "all" (the first object drives the whole domain) or "inside" (corners in
    an object's box at frame f follow it, others stay put in world space). See the
    module's notes."""
    if domain_now.shape != domain_prev.shape:
        raise VolumeInputError(f"the domain's resolution changed between frames: "
                               f"{domain_prev.shape} -> {domain_now.shape}")
    if follow not in ("all", "inside"):
        raise VolumeInputError(f"follow must be 'all' or 'inside', got {follow!r}")
    movers = list(movers)
    if not movers:
        raise VolumeInputError("object motion needs at least one object")
    movers = [tuple(m) + (None,) * (4 - len(m)) for m in movers]
    world = domain_now.corners_world()
    to_prev = np.linalg.inv(domain_prev.voxel_to_world)
    if follow == "all":
        m_now, m_prev, _, deformation = movers[0]
        if deformation is None:
            return rigid_positions(domain_now, domain_prev, m_now, m_prev)
        return _apply(to_prev, deformation.backward(world))
    out = _apply(to_prev, world)                  # static in world
    taken = np.zeros(world.shape[:-1], bool)
    for m_now, m_prev, box, deformation in movers:
        m_now = as_matrix(m_now, "an object's matrix at frame f")
        local = _apply(np.linalg.inv(m_now), world)
        if box is None:
            inside = np.ones(taken.shape, bool)
        else:
            lo, hi = (np.asarray(b, np.float64) for b in box)
            inside = ((local >= lo) & (local <= hi)).all(axis=-1)
        sel = inside & ~taken
        if deformation is None:
            m_prev = as_matrix(m_prev, "an object's matrix at frame f-1")
            out[sel] = _apply(to_prev @ m_prev, local[sel])
        else:
            out[sel] = _apply(to_prev, deformation.backward(world[sel]))
        taken |= sel
    return out


class VelocityGrid:
    """World velocity at the voxel centres of a grid (see the module's notes)."""

    def __init__(self, data, voxel_to_world, *, units="frame", fps=None):
        data = np.asarray(data)
        if data.ndim != 4 or data.shape[-1] != 3 or min(data.shape[:3]) < 1:
            raise VolumeInputError(f"a velocity grid must be (D, H, W, 3), got shape "
                                   f"{tuple(data.shape)}")
        data = float_field(data, "the velocity grid")
        if units == "second":
            if fps is None or not fps > 0:
                raise VolumeInputError(f"velocity in units per second needs fps > 0, got {fps}")
            data = data / float(fps)
        elif units != "frame":
            raise VolumeInputError(f"velocity units must be 'frame' or 'second', got {units!r}")
        self.data = data
        self.voxel_to_world = as_matrix(voxel_to_world, "the velocity grid's voxel-to-world matrix")
        self._to_voxel = np.linalg.inv(self.voxel_to_world)

    @property
    def shape(self):
        return self.data.shape[:3]

    def sample(self, world):
        """Trilinear world velocity (per frame) at world points ``(..., 3)``."""
        u = _apply(self._to_voxel, np.asarray(world, np.float64)) - 0.5  # centre index coords
        d, h, w = self.shape
        u = np.clip(u, 0.0, np.array([w - 1, h - 1, d - 1], np.float64))  # edges extended
        return trilinear(self.data, u)[0]


def trilinear(samples, u, jacobian=False):
    """Trilinear interpolation of ``samples`` ``(nz, ny, nx, C)`` (sample ``[k, i, j]``
    sits at index coordinates ``(j, i, k)``) at index coordinates ``u`` ``(..., 3)``,
    finite. Outside the samples: the boundary cell's linear extension (clamp ``u``
    first for constant edges). Returns ``(values (..., C), d values / du (..., C, 3)
    or None)``."""
    n = np.array(samples.shape[2::-1])                    # (nx, ny, nz)
    base = np.clip(np.floor(u), 0, np.maximum(n - 2, 0)).astype(np.int64)
    t = u - base
    val = np.zeros(u.shape[:-1] + samples.shape[3:], np.float64)
    jac = np.zeros(val.shape + (3,), np.float64) if jacobian else None
    for dz in (0, 1):
        kz = np.minimum(base[..., 2] + dz, n[2] - 1)
        wz, gz = (t[..., 2], 1.0) if dz else (1 - t[..., 2], -1.0)
        for dy in (0, 1):
            iy = np.minimum(base[..., 1] + dy, n[1] - 1)
            wy, gy = (t[..., 1], 1.0) if dy else (1 - t[..., 1], -1.0)
            for dx in (0, 1):
                jx = np.minimum(base[..., 0] + dx, n[0] - 1)
                wx, gx = (t[..., 0], 1.0) if dx else (1 - t[..., 0], -1.0)
                c = samples[kz, iy, jx]
                val += (wx * wy * wz)[..., None] * c
                if jacobian:
                    jac[..., 0] += (gx * wy * wz)[..., None] * c
                    jac[..., 1] += (wx * gy * wz)[..., None] * c
                    jac[..., 2] += (wx * wy * gz)[..., None] * c
    return val, jac


def backtrace_positions(domain_now, domain_prev, velocity, substeps=1):
    """Backward positions: each corner of frame f (world, ``domain_now``) traced back
    one frame through ``velocity`` (a ``VelocityGrid``, frame f's field) with the
    midpoint rule in ``substeps`` steps, in ``domain_prev``'s voxel coordinates."""
    if domain_now.shape != domain_prev.shape:
        raise VolumeInputError(f"the domain's resolution changed between frames: "
                               f"{domain_prev.shape} -> {domain_now.shape}")
    n = int(substeps)
    if n < 1:
        raise VolumeInputError(f"substeps must be >= 1, got {substeps}")
    p = domain_now.corners_world()
    dt = 1.0 / n
    for _ in range(n):
        mid = p - 0.5 * dt * velocity.sample(p)
        p = p - dt * velocity.sample(mid)
    return _apply(np.linalg.inv(domain_prev.voxel_to_world), p)


# --------------------------------------------------------------------------- on disk

def load_velocity_frame(path, shape=None):
    """One velocity frame ``.npy``: ``(D, H, W, 3)`` float, world units (per frame or
    per second, as the caller says) at voxel centres, array ``[k, i, j]``; ``shape``
    ``(D, H, W)`` when it must match a domain."""
    if not os.path.isfile(path):
        raise VolumeInputError(f"velocity file {path!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VolumeInputError(f"cannot read velocity file {path!r}: {exc}") from None
    if data.ndim != 4 or data.shape[-1] != 3:
        raise VolumeInputError(f"velocity file {path!r} has shape {data.shape}; expected "
                               "(D, H, W, 3): (vx, vy, vz) at each voxel centre")
    if shape is not None and tuple(data.shape[:3]) != tuple(shape):
        raise VolumeInputError(f"velocity file {path!r} is {data.shape[:3]} voxels (D, H, W); "
                               f"the domain is {tuple(shape)}")
    float_field(data, f"velocity file {path!r}")
    return data


_VDB_MAGIC = 0x56444220   # OpenVDB files start with this int32 (" BDV" little-endian)


def check_velocity_files(files, shape=None):
    """Open and check every file of a velocity sequence (``{frame: file}``, as
    ``velocity_sequence`` gives) before the first frame is baked, so that a bad file
    stops the bake before anything is written and not at its frame: ``.npy`` files by
    their header and size (shape ``(D, H, W, 3)``, float, ``shape`` when given) and
    values (finite), frame by frame memory-mapped; ``.vdb`` files by their magic
    number (their grids are read by OpenVDB, in the add-on). Returns ``files``."""
    for frame, path in files.items():
        path = str(path)
        if not os.path.isfile(path):
            raise VolumeInputError(f"velocity file {path!r} (frame {frame}) does not exist")
        if path.endswith(".vdb"):
            try:
                with open(path, "rb") as f:
                    head = f.read(8)
            except OSError as exc:
                raise VolumeInputError(f"cannot read velocity file {path!r}: "
                                       f"{exc.strerror or exc}") from None
            if len(head) < 8 or int.from_bytes(head[:4], "little") != _VDB_MAGIC:
                raise VolumeInputError(f"velocity file {path!r} (frame {frame}) is not an "
                                       "OpenVDB file (damaged or of another kind)")
            continue
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise VolumeInputError(f"velocity file {path!r} (frame {frame}) is damaged or "
                                   f"not a .npy array: {exc}") from None
        if data.ndim != 4 or data.shape[-1] != 3 or data.dtype.kind != "f":
            raise VolumeInputError(f"velocity file {path!r} (frame {frame}) is {data.dtype} "
                                   f"{data.shape}; expected float (D, H, W, 3): (vx, vy, vz) "
                                   "at each voxel centre")
        if shape is not None and tuple(data.shape[:3]) != tuple(shape):
            raise VolumeInputError(f"velocity file {path!r} (frame {frame}) is "
                                   f"{data.shape[:3]} voxels (D, H, W); the domain is "
                                   f"{tuple(shape)}")
        for k in range(data.shape[0]):
            if not np.isfinite(data[k]).all():
                raise VolumeInputError(f"velocity file {path!r} (frame {frame}) has "
                                       "non-finite values")
    return files


def velocity_sequence(path, frames, *, check=False, shape=None):
    """``{frame: file}`` for a velocity sequence: ``path`` is a folder of
    ``velocity_XXXX.npy`` or ``velocity_XXXX.vdb`` (frame number, zero-padded to 4; a
    ``.npy`` wins over a ``.vdb`` of the same frame) or a pattern with # (the frame
    number zero-padded to the count of #). Every frame of ``frames`` must have a file;
    otherwise ``VolumeInputError`` lists the missing ones; two files of one frame
    number are refused. ``check``: also open and check every file now
    (``check_velocity_files``, with ``shape`` the domain's (D, H, W) if given)."""
    path = str(path)
    if not path:
        raise VolumeInputError("no velocity sequence given (a folder of velocity_XXXX.npy "
                               "or .vdb, or a path with #)")
    files = sequence_files(path, frames, what="velocity sequence",
                           name_pattern=VELOCITY_PREFIX + r"_(-?\d+)\.(?:npy|vdb)",
                           order=lambda name: (name.endswith(".npy"), name),
                           error=VolumeInputError)
    return check_velocity_files(files, shape) if check else files
