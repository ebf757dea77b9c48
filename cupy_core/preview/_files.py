"""The bake-file helpers the previews use (``cupy_core.bake.files``)."""
from ..bake.files import (BAKE_JSON_NAME, atomic_path, frame_name,  # noqa: F401
                          parse_frame_name, write_png_atomic)


def atomic_write_bytes(path, data):
    """Write ``data`` at ``path`` atomically (a temporary beside it, then renamed)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path
