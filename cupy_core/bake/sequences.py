"""Numbered file sequences on disk, the one reading of a frame pattern: a path whose
file name has a run of ``#`` is the frame number, zero-padded to the count of ``#``
(``render_####.exr`` -> ``render_0007.exr``), as in Blender's output paths. Used for
the EXR sequences of the add-on, velocity sequences (``cupy_core.volume``) and mesh
sequences (``cupy_core.surface.meshio``)."""
import os
import re

__all__ = ["has_frame_pattern", "frame_path", "sequence_files",
           "pattern_files"]

_RUN = re.compile(r"#+")


def has_frame_pattern(path):
    """True when the file name of ``path`` holds a run of ``#``."""
    return "#" in os.path.basename(str(path))


def _run(name):
    return _RUN.search(name).group(0)


def frame_path(path, frame):
    """``path`` with its (last-component) run of ``#`` replaced by ``frame``."""
    head, name = os.path.split(str(path))
    run = _run(name)
    return os.path.join(head, name.replace(run, f"{int(frame):0{len(run)}d}", 1))


def _pattern_regex(name):
    """A regular expression for the file names of a ``#`` pattern: the run of ``#`` is
    a frame number of at least that many digits (Blender writes more digits when the
    number needs them), optionally negative."""
    run = _run(name)
    head, tail = name.split(run, 1)
    digits = r"(-\d{%d,}|\d{%d,})" % (max(len(run) - 1, 1), len(run))
    return re.compile(re.escape(head) + digits + re.escape(tail) + "$")


def pattern_files(path, error=ValueError, what="sequence"):
    """``{frame: file}`` of every file on disk matching the ``#`` pattern ``path``
    (more digits than ``#`` allowed), in frame order. Two files giving one frame
    number (``mesh_07.obj`` and ``mesh_007.obj`` for ``mesh_##.obj``) are refused
    with ``error`` naming both: which of them is the frame is a guess."""
    head, name = os.path.split(str(path))
    regex = _pattern_regex(name)
    folder = head or "."
    found = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise error(f"{what} {str(path)!r}: cannot list {folder!r}: "
                    f"{exc.strerror or exc}") from None
    for n in names:
        m = regex.match(n)
        if m is None or not os.path.isfile(os.path.join(folder, n)):
            continue
        frame = int(m.group(1))
        if frame in found:
            raise error(f"{what} {str(path)!r}: {os.path.basename(found[frame])} and {n} "
                        f"are both frame {frame}; remove one")
        found[frame] = os.path.join(head, n) if head else n
    return dict(sorted(found.items()))


def sequence_files(path, frames, *, what, name_pattern, order=None, error=ValueError):
    """``{frame: file}`` for every frame of ``frames``: ``path`` is a pattern with ``#``
    (``frame_path``) or a folder whose file names match ``name_pattern`` (a regular
    expression, ``re.fullmatch``ed, whose first group is the frame number; where two
    names give one frame, the later in ``sorted(names, key=order)`` wins). ``error`` (an exception
    class) names ``what`` when ``path`` is neither or a frame has no file."""
    path = str(path)
    if has_frame_pattern(path):
        files = {f: frame_path(path, f) for f in frames}
        on_disk = pattern_files(path, error=error, what=what)   # refuses duplicates
        files.update({f: on_disk[f] for f in frames if f in on_disk and
                      not os.path.isfile(files[f])})
    elif os.path.isdir(path):
        files = {}
        for name in sorted(os.listdir(path), key=order):
            m = re.fullmatch(name_pattern, name)
            if m:
                frame = int(m.group(1))
                earlier = files.get(frame)
                if earlier is not None and (os.path.splitext(os.path.basename(earlier))[0]
                                            != os.path.splitext(name)[0]):
                    raise error(f"{what} {path!r}: {os.path.basename(earlier)} and {name} "
                                f"are both frame {frame}; remove one")
                files[frame] = os.path.join(path, name)
    else:
        raise error(f"{what} {path!r}: not a folder and no # in the file name")
    missing = [f for f in frames if f not in files or not os.path.isfile(files[f])]
    if missing:
        raise error(f"{what} {path!r} has no file for frame(s) "
                    f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''}")
    return {f: files[f] for f in frames}
