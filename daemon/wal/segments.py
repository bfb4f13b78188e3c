"""WAL file names and positions, as PostgreSQL spells them (pure).

A segment's name is 24 hex digits: the timeline (8), then the segment number split into a
"log" and a "seg" part of 8 digits each. With the default 16 MiB segments there are 256
segments per log (0x100000000 / segment size), so 000000010000000100000000 follows
0000000100000000000000FF. ``pg_receivewal`` writes the segment it is filling as
``<name>.partial`` and renames it to ``<name>`` when it is complete; a timeline switch brings a
``<timeline>.history`` file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
PARTIAL_SUFFIX = ".partial"
_SEGMENT = re.compile(r"([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})")
_HISTORY = re.compile(r"([0-9A-F]{8})\.history")
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment: its timeline and its number counted from the start of the WAL."""

    timeline: int
    number: int
    segment_size: int = DEFAULT_SEGMENT_SIZE

    @property
    def name(self) -> str:
        per_log = segments_per_log(self.segment_size)
        return f"{self.timeline:08X}{self.number // per_log:08X}{self.number % per_log:08X}"

    @property
    def start_lsn(self) -> int:
        return self.number * self.segment_size

    def next(self) -> Segment:
        return Segment(self.timeline, self.number + 1, self.segment_size)


def segments_per_log(segment_size: int) -> int:
    return 0x1_0000_0000 // segment_size


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment | None:
    """The segment a file name names (``.partial`` allowed), or None for any other name."""
    match = _SEGMENT.fullmatch(name.removesuffix(PARTIAL_SUFFIX))
    if match is None:
        return None
    timeline, log, seg = (int(part, 16) for part in match.groups())
    if timeline == 0 or seg >= segments_per_log(segment_size):
        return None
    return Segment(timeline, log * segments_per_log(segment_size) + seg, segment_size)


def history_timeline(name: str) -> int | None:
    """2 for ``00000002.history``; None for any other name."""
    match = _HISTORY.fullmatch(name)
    return int(match.group(1), 16) if match else None


def is_wal_file(name: str) -> bool:
    """A complete segment or a timeline history file: what the archive keeps."""
    return (parse_segment(name) is not None and not name.endswith(PARTIAL_SUFFIX)) or history_timeline(name) is not None


def parse_lsn(text: str) -> int:
    """``0/3000028`` -> 50331688."""
    match = _LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a WAL position (LSN) such as 0/3000028")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFF_FFFF:X}"


def segment_of(lsn: int, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    """The segment that holds the WAL position ``lsn`` on ``timeline``."""
    return Segment(timeline, lsn // segment_size, segment_size)


@dataclass(frozen=True)
class Gap:
    """Segments missing between two that are present, on one timeline."""

    after: Segment
    before: Segment

    @property
    def missing(self) -> int:
        return self.before.number - self.after.number - 1

    def __str__(self) -> str:
        first, last = self.after.next(), Segment(self.before.timeline, self.before.number - 1, self.before.segment_size)
        span = first.name if first == last else f"{first.name} to {last.name}"
        return f"{span} missing (between {self.after.name} and {self.before.name})"


def find_gaps(segments: Iterable[Segment]) -> list[Gap]:
    """Every hole in the numbering of each timeline, in order. A new timeline starts where its
    history file says, so only holes inside one timeline count here."""
    gaps: list[Gap] = []
    by_timeline: dict[int, list[Segment]] = {}
    for segment in sorted(set(segments)):
        by_timeline.setdefault(segment.timeline, []).append(segment)
    for ordered in by_timeline.values():
        for earlier, later in zip(ordered, ordered[1:]):
            if later.number != earlier.number + 1:
                gaps.append(Gap(earlier, later))
    return gaps
