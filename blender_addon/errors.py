"""Errors of a bake (no Blender import: the settings and the readers use them too)."""


class BakeError(ValueError):
    """A problem the user can fix; the message says what and how."""


class BakeCancelled(Exception):
    """The user cancelled; every file on disk is whole and the bake can resume."""
