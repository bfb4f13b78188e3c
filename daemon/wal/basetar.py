"""What a base backup's tar says about itself, read as the stream passes (pure).

pg_basebackup's tar holds ``backup_label`` (start position, timeline and start time) and, at
its end, ``backup_manifest``, whose ``WAL-Ranges`` give the stop position. Only those two
members are kept (the manifest's last TAIL_BYTES: the ranges come just before its checksum).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from daemon.wal.segments import parse_lsn

BLOCK = 512
TAIL_BYTES = 64 * 1024
LABEL = "backup_label"
MANIFEST = "backup_manifest"
_WAL_RANGES = re.compile(r'"WAL-Ranges"\s*:\s*(\[.*?\])', re.DOTALL)


@dataclass(frozen=True)
class BaseFacts:
    start_lsn: str
    stop_lsn: str
    timeline: int
    start_time: str  # as backup_label writes it, e.g. 2026-12-05 07:10:00 UTC
    start_segment: str


class BaseTarScanner:
    """Feed it the raw tar chunk by chunk; ``facts()`` at the end."""

    def __init__(self) -> None:
        self.members: dict[str, bytearray] = {}
        self._buffer = bytearray()
        self._left = 0  # data bytes (with padding) of the current member still to pass
        self._data_left = 0
        self._current: str | None = None
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and not self.ended:
            if self._left:
                taken = min(self._left, len(view))
                self._keep(view[:min(taken, self._data_left)])
                self._data_left -= min(taken, self._data_left)
                self._left -= taken
                view = view[taken:]
                continue
            need = BLOCK - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == BLOCK:
                self._header(bytes(self._buffer))
                self._buffer.clear()

    def _keep(self, data: memoryview) -> None:
        if self._current is None:
            return
        kept = self.members[self._current]
        kept += data
        if len(kept) > TAIL_BYTES:
            del kept[:len(kept) - TAIL_BYTES]

    def _header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self.ended = True
            return
        name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace").removeprefix("./")
        size_field = header[124:136].split(b"\0", 1)[0].strip(b" \0")
        size = int(size_field, 8) if size_field else 0
        self._data_left = size
        self._left = (size + BLOCK - 1) // BLOCK * BLOCK
        self._current = name if name in (LABEL, MANIFEST) else None
        if self._current is not None:
            self.members[self._current] = bytearray()

    def facts(self) -> BaseFacts:
        """The base backup's positions; ValueError when the tar lacks what pg_basebackup writes."""
        if LABEL not in self.members:
            raise ValueError("the base backup's tar has no backup_label")
        label = parse_label(self.members[LABEL].decode("utf-8", "replace"))
        stop = stop_lsn(self.members.get(MANIFEST, bytearray()).decode("utf-8", "replace"), label["timeline"])
        return BaseFacts(label["start_lsn"], stop, label["timeline"], label["start_time"], label["start_segment"])


def parse_label(text: str) -> dict:
    """START WAL LOCATION, START TIMELINE and START TIME of a backup_label."""
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    location = re.fullmatch(r"([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)", fields.get("START WAL LOCATION", ""))
    if location is None or "START TIMELINE" not in fields:
        raise ValueError("the base backup's backup_label has no START WAL LOCATION or START TIMELINE")
    parse_lsn(location.group(1))
    return {"start_lsn": location.group(1), "start_segment": location.group(2),
            "timeline": int(fields["START TIMELINE"]), "start_time": fields.get("START TIME", "")}


def stop_lsn(manifest_tail: str, timeline: int) -> str:
    """The End-LSN of the WAL range on ``timeline`` in the backup manifest's WAL-Ranges."""
    match = _WAL_RANGES.search(manifest_tail)
    if match is None:
        raise ValueError("the base backup's backup_manifest has no WAL-Ranges")
    for wal_range in json.loads(match.group(1)):
        if wal_range.get("Timeline") == timeline:
            return wal_range["End-LSN"]
    raise ValueError(f"the base backup's backup_manifest has no WAL range on timeline {timeline}")
