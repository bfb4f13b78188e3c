"""structlog set-up: JSON lines (console rendering on a terminal) for our own events and
for the standard-library records of APScheduler, the Docker SDK and boto3 alike."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog

REDACTED = "***"
# A secret at least this long is masked wherever it appears in a log value. A shorter one is
# masked only where a whole value equals it: as a substring it would also mask ordinary words
# ("postgres" as a password would blank out every database, user and path of that name).
MIN_SUBSTRING_SECRET = 8


class SecretRedactor:
    """A processor that replaces known secret values in an event (see MIN_SUBSTRING_SECRET)."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: list[str] = []  # masked inside any value, longest first
        self.short_secrets: set[str] = set()  # masked where a whole value equals them
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if not secret:
                continue
            if len(secret) < MIN_SUBSTRING_SECRET:
                self.short_secrets.add(secret)
            elif secret not in self.secrets:
                self.secrets.append(secret)
                self.secrets.sort(key=len, reverse=True)

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        if not self.secrets and not self.short_secrets:
            return event_dict
        return {key: self._scrub(value) for key, value in event_dict.items()}

    def _scrub(self, value: Any) -> Any:
        return self.scrub(value) if isinstance(value, str) else value

    def scrub(self, text: str) -> str:
        """``text`` with the known secrets masked, for what leaves the process other than as a
        log line (a ping's body, a hook's environment)."""
        if text in self.short_secrets:
            return REDACTED
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


redactor = SecretRedactor()


class RedactingStream:
    """A text stream that masks the known secrets in what is written to it: the CLI's stdout and
    stderr, where failure reasons quote the tools' stderr. ``print`` writes a message in one call,
    so a secret inside one message is always seen whole."""

    def __init__(self, stream: TextIO, scrub: Callable[[str], str]):
        self._stream = stream
        self._scrub = scrub

    def write(self, text: str) -> int:
        self._stream.write(self._scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding ... of the real stream
        return getattr(self._stream, name)


def shared_processors() -> list:
    """What every log line passes through, on stdout and in the run log files."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor,
    ]


def configure_logging(level: str = "INFO", stream: TextIO | None = None, secrets: Iterable[str] = ()) -> None:
    """Route structlog and standard logging through one formatter on ``stream``."""
    stream = stream or sys.stdout
    redactor.add(secrets)
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if stream.isatty()
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared_processors(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Connection-pool chatter would drown the run's own lines at INFO.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
