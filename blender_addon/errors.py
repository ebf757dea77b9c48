"""Errors the user can fix (no Blender import: the readers use them too)."""


class BakeError(ValueError):
    """A problem the user can fix; the message says what and how."""
