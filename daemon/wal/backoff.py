"""How long to wait before starting an exited WAL receiver again (pure).

The wait doubles from ``initial`` up to ``maximum`` while the receiver keeps failing quickly
(the server down, a wrong password), so the log and the server are not flooded; a receiver that
ran for at least ``stable_after`` seconds had worked, and its next wait starts small again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    stable_after: float = 60.0
    _next: float | None = None

    def delay_after(self, ran_for: float) -> float:
        """The wait before the next start of a receiver that ran for ``ran_for`` seconds."""
        if ran_for >= self.stable_after or self._next is None:
            self._next = self.initial
        delay = self._next
        self._next = min(self.maximum, delay * self.factor)
        return delay
