"""docs/docker-api.md read as data: per feature (a ``## `` section), the Docker API calls it
may make, as (method, path pattern) rows of its tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.docker_relay import Request

DOC = Path(__file__).resolve().parents[2] / "docs" / "docker-api.md"

# What each placeholder of the documented paths stands for.
PLACEHOLDERS = {
    "{id}": "[0-9a-f]{64}",  # a container's full id
    "{exec-id}": "[0-9a-f]{64}",
    "{short-id}": "[0-9a-f]{12}",
    "{POSTGRES_CONTAINER}": "[A-Za-z0-9][A-Za-z0-9_.-]*",
    "{throwaway}": "pgbackup-restore-test-[0-9a-f]{12}",
    "{image}": ".+",
    "{volume}": "[A-Za-z0-9][A-Za-z0-9_.-]*",
}
_ROW = re.compile(r"^\|\s*`(GET|HEAD|POST|PUT|DELETE)`\s*\|\s*`([^`]+)`\s*\|")
_VERSION_PREFIX = re.compile(r"^/v[0-9.]+/")


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # as documented, with placeholders

    def matches(self, request: Request) -> bool:
        unversioned = _VERSION_PREFIX.sub("/", request.path)
        return request.method == self.method and re.fullmatch(self.pattern(), unversioned) is not None

    def pattern(self) -> str:
        pattern = re.escape(self.path)
        for placeholder, meaning in PLACEHOLDERS.items():
            pattern = pattern.replace(re.escape(placeholder), meaning)
        return pattern


def documented_calls(text: str | None = None) -> dict[str, list[Call]]:
    """Section title -> the calls its tables list."""
    sections: dict[str, list[Call]] = {}
    current = None
    for line in (DOC.read_text() if text is None else text).splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None and (row := _ROW.match(line)):
            sections[current].append(Call(row.group(1), row.group(2)))
    return sections


def undocumented(requests: list[Request], calls: list[Call]) -> list[str]:
    """The requests no documented call covers, as 'METHOD path' lines."""
    return sorted({f"{r.method} {r.path}" for r in requests if not any(call.matches(r) for call in calls)})
