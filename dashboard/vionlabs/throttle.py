"""A pause shared by every client and thread, so that one 429 slows all of them down together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    """Thread-safe shared pause: `wait()` blocks while paused, `pause(seconds)` extends the pause."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._condition = threading.Condition()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """Pause everyone for at least `seconds` from now (never shortens a longer pause)."""
        with self._condition:
            self._until = max(self._until, self._clock() + max(0.0, seconds))

    def remaining(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        with self._condition:
            return max(0.0, self._until - self._clock())

    def wait(self) -> None:
        """Block until no pause is in force."""
        with self._condition:
            # Loop: another thread may extend the pause while we sleep.
            while (left := self._until - self._clock()) > 0:
                self._condition.wait(left)

    def __repr__(self) -> str:
        return f"Throttle(remaining={self.remaining():.1f})"
