"""Every stop stops (issue 17): Ctrl-C (SIGINT) and SIGTERM end a bake at the next
safe point with ``Stopped`` (a ``KeyboardInterrupt``), every file on disk whole and the
temporaries removed, so that the same command resumes.

``stop_on_signals()`` installs the handlers (the command lines do; a host such as
Blender keeps its own): a signal raises ``Stopped`` at once, except inside a
``deferred()`` block (the few steps of an atomic write that must not be cut: creating
the temporary, the rename, removing the temporary), where it is kept and raised when
the block ends.
"""
import contextlib
import signal
import threading

__all__ = ["Stopped", "stop_on_signals", "deferred", "exit_code"]

_state = {"depth": 0, "pending": None, "installed": 0}


class Stopped(KeyboardInterrupt):
    """A bake stopped by a signal; ``signum`` is the signal's number."""

    def __init__(self, signum):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(self.signum)}")


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(exc):
    """The shell's exit code for a stop: 128 + the signal (130 for Ctrl-C, 143 for
    SIGTERM)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def _handler(signum, frame):
    if _state["depth"]:
        if _state["pending"] is None:
            _state["pending"] = signum
        return
    raise Stopped(signum)


@contextlib.contextmanager
def deferred():
    """A block a signal must not cut: a stop arriving inside is raised when it ends."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Install the stop handler for ``signals`` for the block (main thread only;
    elsewhere a no-op), and put the old handlers back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for s in signals:
        try:
            old[s] = signal.signal(s, _handler)
        except (ValueError, OSError):
            pass
    _state["installed"] += 1
    try:
        yield
    finally:
        _state["installed"] -= 1
        _state["pending"] = None
        for s, h in old.items():
            signal.signal(s, h)
