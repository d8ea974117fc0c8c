"""A minimal text progress bar (no dependency), written to stderr and redrawn in place.

    demo  [##########..........]  21/42  loss 0.5120  3.1 s

On a terminal it redraws at most every ``min_interval`` seconds (and always at the end), so it
costs nothing measurable in a training loop. On anything else (a log file, a CI pipe) carriage
returns would pile up on one line, so it writes only the final state, once, at ``close()``;
``live=True``/``False`` overrides the detection. ``disable=True`` makes every call a no-op.
"""
import sys
import time


class ProgressBar:
    """``update(n=1, **info)`` advances the bar; ``close()`` ends the line."""

    def __init__(self, total, description="", file=None, disable=False, width=20,
                 min_interval=0.1, live=None):
        if total < 0:
            raise ValueError(f"total must be >= 0; received {total!r}")
        self.total, self.description, self.width = int(total), description, int(width)
        self.file = sys.stderr if file is None else file
        self.disable, self.min_interval = bool(disable), float(min_interval)
        if live is None:
            isatty = getattr(self.file, "isatty", None)
            live = bool(isatty()) if isatty is not None else False
        self.live = bool(live)
        self.count, self.info = 0, {}
        self.start = self._last_draw = time.perf_counter()
        self._closed = False
        self._drawn_width = 0

    def update(self, n=1, **info):
        """Advance by ``n`` steps; ``info`` (name=value) is shown after the counter."""
        self.count = min(self.count + n, self.total)
        self.info.update(info)
        now = time.perf_counter()
        if self.live and not self.disable and (now - self._last_draw >= self.min_interval
                                 or self.count == self.total):
            self._draw(now)

    def render(self, now=None):
        """The bar's current line (without carriage return)."""
        now = time.perf_counter() if now is None else now
        filled = self.width * self.count // self.total if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        info = "".join(f"  {name} {value:.4f}" if isinstance(value, float) else f"  {name} {value}"
                       for name, value in self.info.items())
        return (f"{self.description}  [{bar}]  {self.count}/{self.total}{info}  "
                f"{now - self.start:.1f} s")

    def _draw(self, now):
        self._last_draw = now
        line = self.render(now)
        self.file.write("\r" + line.ljust(self._drawn_width))
        self._drawn_width = len(line)
        self.file.flush()

    def close(self):
        """Draw the final state and end the line (once)."""
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            self._draw(time.perf_counter())
            self.file.write("\n")
            self.file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
