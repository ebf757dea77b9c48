"""Temporary folders of a bake (the rendered passes, the preview's maps): named
``cupy_noise_<kind>_<pid>_<random>`` in the system's temporary folder (``TMPDIR``), each
with an ``owner.lock`` file that the bake holds locked (``flock``) while it runs, and
removed however the bake ends. A bake killed outright (SIGKILL, a crash, a power cut)
cannot remove its folder: the next bake does (``remove_leftovers``), leaving alone the
folders of bakes still running (their lock is held; without ``flock``: their pid is
alive)."""
import os
import shutil
import tempfile

from ..errors import disk_full

PREFIX = "cupy_noise_"
LOCK_NAME = "owner.lock"

try:
    import fcntl
except ImportError:          # Windows: the pid in the name tells
    fcntl = None


def _pid_alive(pid):
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _name_pid(name):
    """The pid in ``cupy_noise_<kind>_<pid>_<random>``, or None."""
    parts = name[len(PREFIX):].split("_")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def _in_use(folder):
    """True while a live bake owns ``folder``."""
    lock = os.path.join(folder, LOCK_NAME)
    if fcntl is not None and os.path.isfile(lock):
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True              # held: its bake is running
        finally:
            os.close(fd)             # closing releases a lock we got
        return False
    pid = _name_pid(os.path.basename(folder))
    return pid is None or _pid_alive(pid)


def remove_leftovers(parent=None, log=None):
    """Remove the temporary folders of bakes that died without removing them; return
    their paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if not name.startswith(PREFIX) or not os.path.isdir(path) or os.path.islink(path):
            continue
        if _in_use(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    if removed and log is not None:
        log(f"[noise] removed {len(removed)} temporary folder(s) left by a bake that was "
            f"killed: {', '.join(removed)}")
    return removed


class ScratchFolder:
    """A temporary folder of ``kind``, locked while it exists; ``close()`` removes it."""

    def __init__(self, kind):
        parent = tempfile.gettempdir()
        try:
            self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{kind}_{os.getpid()}_", dir=parent)
        except OSError as exc:
            full = disk_full(exc, "temporary folder")
            if full is not None:
                raise DiskFull(parent, exc) from None
            raise
        self._fd = None
        try:
            self._fd = os.open(os.path.join(self.path, LOCK_NAME),
                               os.O_RDWR | os.O_CREAT, 0o600)
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.close()
            if disk_full(exc) is not None:
                raise DiskFull(self.path, exc) from None
            raise

    def close(self):
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def DiskFull(folder, exc=None):
    """``DiskFullError`` naming the temporary folder ``folder``."""
    from ..errors import DiskFullError
    free = free_bytes(folder)
    return DiskFullError(
        f"disk full: the temporary folder {folder!r} has no space left"
        + (f" ({free} bytes free)" if free is not None else "")
        + ": free space there, or point TMPDIR (TEMP on Windows) to a larger disk, "
          "and rerun to resume", folder)


def free_bytes(folder):
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None
