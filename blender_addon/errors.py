"""Errors of a bake (no Blender import: the settings and the readers use them too)."""
import errno
import os


class BakeError(ValueError):
    """A problem the user can fix; the message says what and how."""


class BakeCancelled(Exception):
    """The user cancelled; every file on disk is whole and the bake can resume."""


class BakeInterrupted(BakeCancelled):
    """A stop signal (SIGINT: Ctrl-C; SIGTERM: ``timeout``, SLURM, ``docker stop``)
    stopped the bake at the next safe point; every file on disk is whole, the
    temporary files are removed, and the same command resumes. ``signum`` is the
    signal; ``exit_code`` is 128 + it (130, 143), the shell's convention."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self):
        return 128 + self.signum


class DiskFullError(OSError):
    """A write failed because the disk holding ``folder`` is full; the message names
    the folder (the temporary renders' or the output's)."""

    def __init__(self, message, folder=None):
        super().__init__(errno.ENOSPC, message)
        self.message = message
        self.folder = folder

    def __str__(self):
        return self.message


LOW_SPACE = 1 << 20     # a write that failed with less room than this: the disk is full


def _free(folder):
    import shutil
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return LOW_SPACE


FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(exc, what="folder", folder=None):
    """``DiskFullError`` for an error that is ENOSPC (or EDQUOT: over quota), naming the
    folder of the file it wrote (else ``folder``); None for other errors. The core's
    ``OutputError`` (a ValueError) carries the system's words only: they are
    recognised by ``strerror``."""
    if isinstance(exc, DiskFullError):
        return exc
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        name = exc.filename or ""
        where = os.path.dirname(str(name)) if name else (folder or "?")
        writing = f" (writing {os.path.basename(str(name))!r})" if name else ""
    elif any(os.strerror(e) in str(exc) for e in FULL_ERRNOS):
        where, writing = folder or "?", f" ({exc})"
    elif isinstance(exc, OSError) and folder and _free(folder) < LOW_SPACE:
        # NumPy's writer says "problem writing element N to file", without errno
        where, writing = folder, f" ({exc})"
    else:
        return None
    return DiskFullError(f"disk full: no space left in the {what} {where!r}{writing}: "
                         "free space there and rerun to resume", where)
