"""A minimal text progress bar (no dependency), written to stderr and redrawn in place.

    dynamic net, seed 0 (run 2/20)  [#####.....]  21/42  epoch 1/20  loss 0.512  ~3 s left

On a terminal it redraws at most every ``min_interval`` seconds (and always at the end), so it
costs nothing measurable in a training loop, and it always fits on one line: the line is cut to
the terminal's width minus one column (read at every redraw, so a resized window is followed;
``columns`` fixes it): the step counter goes first, then the bar (below 8 cells), then the end
of the description, so a carriage return really returns to the start of the line and no
redraw adds a line. On anything
else (a log file, a CI pipe) carriage returns would pile up on one line, so it writes only the
final state, once, at ``close()``, uncut; ``live=True``/``False`` overrides the detection.
``disable=True`` makes every call a no-op.
"""
import shutil
import sys
import time


class ProgressBar:
    """``update(n=1, **info)`` advances the bar; ``close()`` ends the line."""

    def __init__(self, total, description="", file=None, disable=False, width=20,
                 min_interval=0.1, live=None, columns=None):
        if total < 0:
            raise ValueError(f"total must be >= 0; received {total!r}")
        self.total, self.description, self.width = int(total), description, int(width)
        self.file = sys.stderr if file is None else file
        self.disable, self.min_interval = bool(disable), float(min_interval)
        if live is None:
            isatty = getattr(self.file, "isatty", None)
            live = bool(isatty()) if isatty is not None else False
        self.live = bool(live)
        self.columns = columns
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

    def render(self, now=None, columns=None):
        """The bar's current line (without carriage return). With ``columns`` it is at most
        ``columns - 1`` characters: what does not fit goes in this order: the step counter,
        the bar (below 8 cells), the end of the description, then the end of the line."""
        now = time.perf_counter() if now is None else now
        info = [f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
                for name, value in self.info.items()]
        elapsed = now - self.start
        clock = (f"~{elapsed * (self.total - self.count) / self.count:.0f} s left"
                 if 0 < self.count < self.total else f"{elapsed:.1f} s")
        tail = "  ".join([f"{self.count}/{self.total}"] + info + [clock])
        if columns is None:
            return f"{self.description}  {self._bar(self.width)}{tail}"
        limit, description = columns - 1, self.description
        if len(description) + len(tail) + 6 + 8 > limit:
            tail = "  ".join(info + [clock])           # the counter goes first
        room = limit - len(description) - len(tail) - 6   # "  [" "]  "
        if room >= 8:
            return f"{description}  {self._bar(min(self.width, room))}{tail}"
        keep = max(limit - len(tail) - 2, 12)
        if len(description) > keep:
            description = description[:keep - 2] + ".."
        return f"{description}  {tail}"[:limit]

    def _bar(self, width):
        filled = width * self.count // self.total if self.total else width
        return "[" + "#" * filled + "." * (width - filled) + "]  "

    def _draw(self, now):
        self._last_draw = now
        columns = self.columns
        if columns is None and self.live:
            columns = shutil.get_terminal_size((80, 24)).columns
        line = self.render(now, columns)
        pad = self._drawn_width if columns is None else min(self._drawn_width, columns - 1)
        self.file.write("\r" + line.ljust(pad))
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
