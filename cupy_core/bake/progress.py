"""A small progress bar on stderr, with no dependencies.

On a terminal it redraws one line (``frames  12/48 [######------]  25%  3.1 fps  ETA 0:11``)
at most ten times a second. When stderr is not a terminal (a log file, CI) it writes
a plain line each time another ``every_percent`` of the work is done, so logs stay
short. Use it as a context manager::

    with Progress(total=48, initial=12) as bar:
        for ...:
            bar.update()

or wrap an iterable: ``for x in progress(items): ...``.
"""
import sys
import time

__all__ = ["Progress", "progress"]


def _clock_text(seconds):
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts units of work done out of ``total`` (None if unknown).

    ``initial`` units were done before this run (a resumed bake): they count towards
    the bar but not towards the speed. ``enabled=False`` makes every call a no-op.
    ``tty`` forces terminal (True) or log (False) style; by default it asks the stream.
    """

    def __init__(self, total=None, *, initial=0, label="frames", stream=None,
                 enabled=True, every_percent=10, tty=None, clock=time.monotonic,
                 width=24):
        self.total = None if total is None else int(total)
        self.done = int(initial)
        self.initial = int(initial)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.every_percent = max(1, int(every_percent))
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.clock = clock
        self.width = width
        self.start = clock()
        self._last_draw = None
        self._last_step = self._step(self.done)
        self._closed = False

    # -- reporting
    def _step(self, done):
        """Which ``every_percent`` slice ``done`` is in (log style)."""
        if not self.total:
            return 0
        return (100 * done // self.total) // self.every_percent

    def rate(self):
        """Units per second in this run (None before any unit or any time)."""
        elapsed = self.clock() - self.start
        new = self.done - self.initial
        return new / elapsed if new > 0 and elapsed > 0 else None

    def text(self):
        """The progress line, without a line ending."""
        parts = [self.label]
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(round(frac * self.width))
            parts.append(f"{self.done}/{self.total}")
            parts.append("[" + "#" * filled + "-" * (self.width - filled) + "]")
            parts.append(f"{100 * frac:3.0f}%")
        else:
            parts.append(str(self.done))
        rate = self.rate()
        if rate is not None:
            parts.append(f"{rate:.2f} fps" if rate < 10 else f"{rate:.0f} fps")
            if self.total:
                parts.append("ETA " + _clock_text(max(0, self.total - self.done) / rate))
        return "  ".join(parts)

    def _write(self, s):
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # a closed or broken stream must not stop the work

    def _draw(self, force=False):
        if not self.enabled:
            return
        if self.tty:
            now = self.clock()
            if force or self._last_draw is None or now - self._last_draw >= 0.1:
                self._last_draw = now
                self._write("\r" + self.text() + "\033[K")  # \033[K clears the rest
        else:
            step = self._step(self.done)
            if force or step != self._last_step:
                self._last_step = step
                self._write(self.text() + "\n")

    def update(self, n=1):
        """Record ``n`` more units done."""
        self.done += n
        self._draw(force=self.total is not None and self.done >= self.total)

    def close(self):
        """Finish the line (terminal style). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and self.tty:
            self._draw(force=True)
            self._write("\n")

    # -- context manager and iteration
    def __enter__(self):
        self._draw(force=True)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


def progress(iterable, total=None, **kwargs):
    """Yield the items of ``iterable``, counting them on a ``Progress`` bar.
    ``total`` defaults to ``len(iterable)`` where there is one."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    with Progress(total, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
