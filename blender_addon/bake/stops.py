"""Stop requests: SIGINT (Ctrl-C) and SIGTERM (``timeout``, SLURM, ``docker stop``)
while a bake runs, and the UI's Esc (the ``cancelled`` callback).

Python's own Ctrl-C raises ``KeyboardInterrupt`` wherever the interpreter happens to
be; when that is a callback Blender runs (Cycles' scene sync, a driver, a handler),
Blender prints it and carries on, and the bake goes on to the end. SIGTERM kills the
process outright, with no clean-up. ``StopSignals`` instead installs handlers that only
*record* the signal; the bake checks the record at its safe points (between renders,
before each frame's backward map, after each frame is on disk: ``BakeContext.check_stop``)
and stops there with ``BakeInterrupted``: the files on disk are whole, the ``finally``
blocks restore the scene and remove the temporary files, and a rerun resumes.

Handlers can only be installed from the main thread (Python's rule); a bake in the
modal operator's worker thread has Esc instead. The previous handlers are put back
on exit, also ones installed by C code (Blender's own), which ``signal.signal``
cannot restore: those are saved and restored with ``sigaction`` itself.
"""
import signal
import threading

from ..errors import BakeInterrupted

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))
SIGNAL_WORDS = {getattr(signal, "SIGINT", 2): "Ctrl-C (SIGINT)",
                getattr(signal, "SIGTERM", 15): "SIGTERM"}


def _libc():
    try:
        import ctypes
        import ctypes.util
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name, use_errno=True) if name else None
    except Exception:
        return None


def _save_c_handler(signum):
    """The raw ``struct sigaction`` of ``signum`` (an opaque buffer), or None."""
    libc = _libc()
    if libc is None or not hasattr(libc, "sigaction"):
        return None
    import ctypes
    buf = ctypes.create_string_buffer(512)      # larger than any struct sigaction
    if libc.sigaction(int(signum), None, buf) != 0:
        return None
    return libc, buf


def _restore_c_handler(signum, saved):
    libc, buf = saved
    libc.sigaction(int(signum), buf, None)


class StopSignals:
    """Context manager: while inside, SIGINT and SIGTERM are recorded (``signum``, the
    first one) instead of acting; ``check(where)`` raises ``BakeInterrupted`` once one
    arrived. Outside the main thread it installs nothing (``installed`` False)."""

    def __init__(self):
        self.signum = None
        self.installed = False
        self._old = {}

    def _handle(self, signum, frame):   # only records: never raises, never prints
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOP_SIGNALS:
            try:
                old = signal.getsignal(sig)
                raw = _save_c_handler(sig) if old is None else None
                signal.signal(sig, self._handle)
            except (ValueError, OSError):
                continue
            self._old[sig] = (old, raw)
        self.installed = bool(self._old)
        return self

    def __exit__(self, exc_type, exc, tb):
        # A signal recorded after the last safe point (the bake done) is passed on to
        # the handler that was there before, once it is back, rather than lost (Python's
        # default Ctrl-C handler then raises KeyboardInterrupt, as it would have).
        unseen = self.signum if exc_type is None and self._old else None
        olds = {sig: old for sig, (old, _) in self._old.items()}
        self._restore()
        handler = olds.get(unseen)
        if callable(handler):
            handler(unseen, None)
        return False

    def _restore(self):
        for sig, (old, raw) in self._old.items():
            try:
                if old is not None:
                    signal.signal(sig, old)
                else:                      # a handler installed by C code (Blender's)
                    signal.signal(sig, signal.SIG_DFL)
                    if raw is not None:
                        _restore_c_handler(sig, raw)
            except (ValueError, OSError):
                pass
        self._old.clear()
        self.installed = False

    @property
    def requested(self):
        return self.signum is not None

    def words(self):
        return SIGNAL_WORDS.get(self.signum, f"signal {self.signum}")

    def check(self, message):
        """Raise ``BakeInterrupted(message)`` if a stop signal arrived."""
        if self.signum is not None:
            raise BakeInterrupted(f"{self.words()}: {message}", self.signum)
