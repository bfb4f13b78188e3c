"""Progress of a long backup: a live line on a terminal, a log line at an interval otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from daemon.logs import get_logger

log = get_logger(__name__)
TERMINAL_REFRESH_SECONDS = 0.5


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts bytes read from the source and written to the artifact."""

    def __init__(self, label: str, log_interval: float, terminal: TextIO | None = None):
        self.label = label
        self.log_interval = log_interval
        self.terminal = terminal
        self.bytes_in = 0
        self.bytes_out = 0
        self.started = time.monotonic()
        self._next_report = self.started + (TERMINAL_REFRESH_SECONDS if terminal else log_interval)

    @classmethod
    def for_stream(cls, label: str, log_interval: float, stream: TextIO = sys.stderr) -> Progress:
        return cls(label, log_interval, stream if stream.isatty() else None)

    def read(self, count: int) -> None:
        self.bytes_in += count
        self._maybe_report()

    def wrote(self, count: int) -> None:
        self.bytes_out += count

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now < self._next_report:
            return
        if self.terminal:
            self.terminal.write("\r" + self.summary(now) + "\033[K")
            self.terminal.flush()
            self._next_report = now + TERMINAL_REFRESH_SECONDS
        else:
            log.info("backup_progress", **self.figures(now))
            self._next_report = now + self.log_interval

    def figures(self, now: float | None = None) -> dict[str, float]:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        return {
            "bytes_read": self.bytes_in,
            "bytes_written": self.bytes_out,
            "elapsed_seconds": round(elapsed, 1),
            "read_rate_bytes_per_second": round(self.bytes_in / elapsed),
        }

    def summary(self, now: float | None = None) -> str:
        figures = self.figures(now)
        return (
            f"{self.label}: read {human_bytes(self.bytes_in)}, wrote {human_bytes(self.bytes_out)} "
            f"at {human_bytes(figures['read_rate_bytes_per_second'])}/s, {figures['elapsed_seconds']:.0f} s"
        )

    def close(self) -> None:
        if self.terminal:
            self.terminal.write("\r" + self.summary() + "\033[K\n")
            self.terminal.flush()
