"""Progress of a long command on a terminal: rows done, rate and time left, redrawn in place with `\\r`.

Nothing at all is written when the stream is not a terminal (piped, redirected, cron, tests), so logs and
scripts see only the command's own summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

from django.core.management.base import OutputWrapper

#: Seconds between redraws: often enough to look alive, rarely enough to cost nothing.
REDRAW_INTERVAL = 0.2


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """`progress.update(done)` as work goes on, `progress.finish()` at the end (or use it as a context manager).
    `total` may be None (unknown): then no percentage and no time left."""

    def __init__(
        self,
        stream: TextIO | OutputWrapper,
        *,
        label: str,
        total: int | None = None,
        unit: str = "rows",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.stream = stream
        self.label = label
        self.total = total
        self.unit = unit
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._drawn_at: float | None = None
        self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def update(self, done: int) -> None:
        """Record `done` units so far; redraws at most every REDRAW_INTERVAL seconds."""
        self.done = done
        if not self.enabled:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < REDRAW_INTERVAL:
            return
        self._draw(now)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def line(self, now: float | None = None) -> str:
        """The status line as it would be drawn now."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total:
            text += f" / {self.total:,} {self.unit} ({min(100, 100 * self.done // self.total)} %)"
        else:
            text += f" {self.unit}"
        text += f" · {rate:,.0f} {self.unit}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f" · {_duration((self.total - self.done) / rate)} left"
        return text

    def _draw(self, now: float) -> None:
        text = self.line(now)
        # Pad over the previous, longer line: `\r` only moves the cursor back.
        self._write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._drawn_at = now

    def finish(self) -> None:
        """Draw the final state and end the line (only if anything was drawn)."""
        if not self.enabled or self._drawn_at is None:
            return
        self._draw(self.clock())
        self._write("\n")
        self._drawn_at = None

    def _write(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")  # a command's stdout would end every write with a newline
        else:
            self.stream.write(text)
        self.stream.flush()


def count_lines(stream: BinaryIO) -> int:
    """Lines in a seekable binary file (a progress total), leaving the stream where it was; 0 if it cannot
    seek (a pipe)."""
    try:
        start = stream.tell()
    except OSError:
        return 0
    lines = 0
    last = b"\n"
    while chunk := stream.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    stream.seek(start)
    return lines + (last != b"\n")
