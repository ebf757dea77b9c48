"""Blender's paths: ``//`` at the start means "relative to the .blend file"."""
import os


def abspath(path):
    """``path`` with a leading ``//`` resolved against the open .blend file's folder
    (Blender's rule) and ``~`` expanded; other paths as given, "" stays ""."""
    path = str(path or "")
    if path.startswith("//"):
        import bpy
        path = bpy.path.abspath(path)
    return os.path.expanduser(path) if path else path


def abs_folder(path):
    """``abspath(path)`` made absolute (an output folder)."""
    return os.path.abspath(abspath(path))
