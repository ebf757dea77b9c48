"""Fingerprints of a bake's inputs (issue 17): what decides the noise, hashed so that a
resume can tell whether its inputs are the ones the frames on disk were made from.

``bake.json`` records ``inputs``, a JSON-able dict of fingerprints (``{"flows":
"sha256:..."}``; values may be nested dicts, e.g. one fingerprint per file or per
frame); a resume whose ``inputs`` differ is refused naming what changed
(``describe_changes``). Files are hashed streamed (a flow file may be larger than
memory); arrays by dtype, shape and bytes.
"""
import hashlib
import json
import os

import numpy as np

__all__ = ["Hasher", "hash_file", "hash_files", "hash_array", "hash_json",
           "describe_changes", "INPUT_NAMES"]

ALGORITHM = "sha256"
_CHUNK = 1 << 20

# How a message names an input key; other keys are named "input 'KEY'".
INPUT_NAMES = {
    "flows": "the flow file", "meshes": "the mesh files", "camera": "the camera file",
    "velocity": "the velocity files", "blend": "the .blend file",
    "motion": "the scene's motion", "renders": "the renders", "exr": "the EXR files",
    "fluid": "the fluid cache", "positions": "the motion (backward positions)",
}


class Hasher:
    """An incremental fingerprint: feed it files, arrays, bytes and JSON-able values
    in a fixed order, then ``hexdigest()`` ("sha256:..."). Each item is framed with
    its kind and length, so ``b"ab" + b"c"`` and ``b"a" + b"bc"`` differ."""

    def __init__(self):
        self._h = hashlib.new(ALGORITHM)

    def _frame(self, kind, length):
        self._h.update(f"{kind}:{int(length)};".encode("ascii"))

    def update_bytes(self, data):
        data = bytes(data)
        self._frame("bytes", len(data))
        self._h.update(data)
        return self

    def update_file(self, path, chunk=_CHUNK):
        """The file's content, read in chunks (never whole in memory)."""
        size = os.path.getsize(path)
        self._frame("file", size)
        with open(path, "rb") as f:
            while True:
                block = f.read(chunk)
                if not block:
                    break
                self._h.update(block)
        return self

    def update_array(self, array):
        """dtype, shape and C-order bytes of a NumPy (or CuPy: copied) array; large
        arrays (memory maps) are hashed slice by slice."""
        if not isinstance(array, np.ndarray) and hasattr(array, "get"):
            array = array.get()
        a = np.asarray(array)
        self._frame("array", a.nbytes)
        self._h.update(f"{a.dtype.str}{tuple(a.shape)}".encode("ascii"))
        if a.ndim and a.shape[0] > 1 and a.nbytes > _CHUNK:
            for i in range(a.shape[0]):
                self._h.update(np.ascontiguousarray(a[i]).tobytes())
        else:
            self._h.update(np.ascontiguousarray(a).tobytes())
        return self

    def update_json(self, value):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        self._frame("json", len(text))
        self._h.update(text.encode("utf-8"))
        return self

    def hexdigest(self):
        return f"{ALGORITHM}:{self._h.hexdigest()}"


def hash_file(path):
    """"sha256:..." of a file's content, streamed."""
    return Hasher().update_file(path).hexdigest()


def hash_files(paths, *, key=None):
    """``{name: hash_file(path)}`` for ``paths`` (a list, or a ``{key: path}`` dict such
    as ``velocity_sequence``'s ``{frame: file}``); names are the base names (or
    ``str(key)``), so that a resume names the file that changed."""
    items = paths.items() if isinstance(paths, dict) else (
        (os.path.basename(str(p)) if key is None else key(p), p) for p in paths)
    return {str(k): hash_file(p) for k, p in items}


def hash_array(array):
    return Hasher().update_array(array).hexdigest()


def hash_json(value):
    return Hasher().update_json(value).hexdigest()


def _name(key):
    return INPUT_NAMES.get(key, f"input {key!r}")


def describe_changes(old, new):
    """A list of phrases naming what differs between two ``inputs`` records
    (``["the flow file changed", "the mesh files changed (flag_0003.obj)"]``); empty
    when they are the same. ``old`` None: a bake that recorded no fingerprint."""
    if old == new:
        return []
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old is None:
            return ["the bake there recorded no fingerprint of its inputs"]
        return ["the inputs changed"]
    out = []
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key not in old:
            out.append(f"{_name(key)} {'is' if not key.endswith('s') else 'are'} new "
                       "(not recorded when the frames were baked)")
        elif key not in new:
            out.append(f"{_name(key)} no longer given")
        elif isinstance(a, dict) and isinstance(b, dict):
            changed = [k for k in b if a.get(k) != b.get(k)] + [k for k in a if k not in b]
            shown = ", ".join(str(k) for k in changed[:3]) + (" ..." if len(changed) > 3 else "")
            out.append(f"{_name(key)} changed ({shown})")
        else:
            out.append(f"{_name(key)} changed")
    return out
