"""Reading what a render wrote: the Vector and Depth passes of multilayer EXR files
(rows top first, as stored) and the camera's ``projection @ view`` matrix. What the
passes mean (backward positions, disocclusion, background rules) is
``cupy_core.vector_pass``.

``camera_matrices`` is the only function that touches Blender objects; nothing here
changes the scene.
"""
import os
import sys

import numpy as np

from ..errors import BakeError


class PassError(BakeError):
    """A render or an EXR lacks a pass the bake needs; the message names it."""


class DamagedExrError(PassError):
    """An EXR file that cannot be read whole (truncated: a render or a copy cut short,
    a full disk; or corrupt); the message names the file."""


def _damaged(path, detail):
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    return DamagedExrError(f"EXR file {path!r} is damaged (truncated or corrupt, "
                           f"{size} bytes): {detail}; render or copy it again")


# --------------------------------------------------------------------------- EXR files

def _oiio():
    """OpenImageIO's Python module: the bpy 4.5/5.0 wheels and Blender ship one."""
    try:
        import OpenImageIO
        return OpenImageIO
    except ImportError:
        pass
    try:
        import bpy
        local = bpy.utils.resource_path("LOCAL")
        for sub in ("python/lib/python3.11/site-packages",
                    f"python/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"):
            path = os.path.join(local, sub)
            if os.path.isdir(path) and path not in sys.path:
                sys.path.append(path)
        import OpenImageIO
        return OpenImageIO
    except Exception:
        return None


def read_exr_channels(path):
    """All channels of an EXR file, every part, as ``{name: float32 (H, W)}``, rows
    top first (as stored). Uses the OpenEXR module, else OpenImageIO."""
    path = str(path)
    if not os.path.isfile(path):
        raise PassError(f"EXR file {path!r} not found")
    try:
        import OpenEXR
    except ImportError:
        OpenEXR = None
    if OpenEXR is not None:
        try:
            with OpenEXR.File(path, header_only=True) as f:
                declared = [c.name for part in f.parts
                            for c in (part.header.get("channels") or [])]
        except Exception as exc:
            raise _damaged(path, f"its header cannot be read ({exc})") from None
        try:
            # OpenEXR reads a truncated file's header and leaves out the pixels it
            # cannot read (a warning, no exception): compare with the header's list.
            with OpenEXR.File(path, separate_channels=True) as f:
                channels = {k: np.array(v.pixels, dtype=np.float32)
                            for part in f.parts for k, v in part.channels.items()}
        except Exception as exc:
            raise _damaged(path, f"its pixels cannot be read ({exc})") from None
        missing = [n for n in declared if n not in channels]
        if missing or not channels:
            raise _damaged(path, f"its header lists {len(declared)} channels, "
                                 f"{len(declared) - len(missing)} could be read")
        return channels
    oiio = _oiio()
    if oiio is None:
        raise PassError("reading EXR files needs the OpenEXR Python module "
                        "(pip install OpenEXR) or OpenImageIO")
    channels = {}
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise _damaged(path, f"it cannot be opened ({oiio.geterror()})")
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            data = inp.read_image(0, spec.nchannels, "float")
            if data is None:
                raise _damaged(path, f"its pixels cannot be read ({inp.geterror()})")
            for c, name in enumerate(spec.channelnames):
                channels[name] = np.array(data[:, :, c], dtype=np.float32)
            sub += 1
    finally:
        inp.close()
    return channels


def find_pass(channels, pass_name, components, path="render"):
    """``(H, W, len(components))`` from channels named ``[<layer>.]<pass>.<c>``.

    The first view layer that has the pass wins. Raises ``PassError`` naming the pass
    and what the file has instead."""
    for name in sorted(channels):
        parts = name.split(".")
        if len(parts) >= 2 and parts[-2] == pass_name and parts[-1] == components[0]:
            prefix = name[: -len(components[0])]
            try:
                return np.stack([channels[prefix + c] for c in components], axis=-1)
            except KeyError:
                break
    passes = sorted({".".join(n.split(".")[:-1]) for n in channels})
    raise PassError(f"{path} has no {pass_name} pass (channels {pass_name}."
                    f"{'/'.join(components)}); it has: {', '.join(passes) or 'nothing'}. "
                    f"Render it with the {pass_name} pass on (View Layer properties)")


def read_combined_exr(path, channels=None):
    """The Combined (beauty) pass of a multilayer EXR as an 8-bit sRGB-ish image
    ``(H, W, 3)`` for looking at, or None where the file has none."""
    try:
        ch = read_exr_channels(path) if channels is None else channels
        rgb = find_pass(ch, "Combined", ("R", "G", "B"), repr(str(path)))
    except PassError:
        return None
    return (np.clip(np.nan_to_num(rgb), 0.0, 1.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def read_vector_exr(path, channels=None):
    """``(vector (H, W, 4), depth (H, W) or None)`` from a multilayer EXR (or from its
    ``channels``, already read)."""
    ch = read_exr_channels(path) if channels is None else channels
    vector = find_pass(ch, "Vector", ("X", "Y", "Z", "W"), repr(str(path)))
    try:
        depth = find_pass(ch, "Depth", ("Z",), repr(str(path)))[..., 0]
    except PassError:
        depth = None
    return vector, depth


# --------------------------------------------------------------------------- cameras

def pixel_aspect(scene):
    """``(x, y)`` of the render's pixel aspect (Output properties > Format > Aspect)."""
    r = scene.render
    return float(r.pixel_aspect_x), float(r.pixel_aspect_y)


def render_size(scene):
    """``(H, W)`` of the scene's render (resolution times its percentage)."""
    r = scene.render
    return (int(r.resolution_y * r.resolution_percentage / 100),
            int(r.resolution_x * r.resolution_percentage / 100))


def camera_matrices(scene, camera, width, height):
    """``projection @ view`` (4x4 NumPy) of ``camera`` at the scene's current frame,
    for a ``width`` x ``height`` render (Blender objects in, NumPy out)."""
    import bpy

    dg = bpy.context.evaluated_depsgraph_get()
    cam = camera.evaluated_get(dg)
    proj = cam.calc_matrix_camera(dg, x=width, y=height,
                                  scale_x=scene.render.pixel_aspect_x,
                                  scale_y=scene.render.pixel_aspect_y)
    view = cam.matrix_world.inverted()
    return np.array(proj @ view, dtype=np.float64)
