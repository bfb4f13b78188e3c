"""Reading tar headers as a stream passes by, without holding or unpacking the archive.

The snapshot needs two facts from the tar it streams: the attributes of the volume's root
entry (``.``), which Docker cannot apply to a mount point itself, and the content of
``PG_VERSION``. Both are read from the headers and the one small file as the chunks pass.
An entry's size is the header's octal field, its GNU base-256 form, or (what Docker's archive
API writes for files of 8 GiB and more) a pax ``size`` record before it: misreading it would
take file data for headers and refuse a good volume.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = 512
PG_VERSION = "PG_VERSION"
MAX_PG_VERSION_BYTES = 64
# Type flags whose header describes the next entry (long names, pax attributes).
_META_TYPES = {b"L", b"K", b"x", b"g"}


class TarFormatError(ValueError):
    """The stream is not a tar archive this scanner understands."""


@dataclass(frozen=True)
class TarEntry:
    name: str  # normalised: no leading "./", "" for the root entry
    type: str  # "file", "dir", "symlink", "hardlink", "other"
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int


def normalise(name: str) -> str:
    """``./base/1`` -> ``base/1``; ``.``, ``./`` and ``/`` -> ``""`` (the root)."""
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "") else name.rstrip("/")


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for values that do not fit in octal
        value = int.from_bytes(field, "big") & ~(0x80 << (8 * (len(field) - 1)))
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"not a tar header (numeric field {text[:12]!r})") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _entry_type(flag: bytes) -> str:
    return {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir", b"2": "symlink", b"1": "hardlink"}.get(
        flag, "other"
    )


def pax_records(data: bytes) -> dict[bytes, bytes]:
    """The ``key=value`` records of a pax extended header (``"%d %s=%s\n"``, the length first)."""
    records = {}
    position = 0
    while position < len(data) and data[position:position + 1] != b"\0":
        space = data.find(b" ", position)
        try:
            length = int(data[position:space]) if space > position else 0
        except ValueError:
            length = 0
        if length <= space - position or position + length > len(data):
            raise TarFormatError(f"malformed pax extended header record at byte {position}")
        key, _, value = data[space + 1:position + length - 1].partition(b"=")
        records[key] = value
        position += length
    return records


def _pax_size(records: dict[bytes, bytes]) -> int | None:
    """The real size of the next entry when it does not fit the header's octal field: Docker's
    archive API (Go's archive/tar) then writes 0 there and the size in a pax ``size`` record."""
    if b"size" not in records:
        return None
    text = records[b"size"].decode("ascii", "replace")
    if not text.isdigit():
        raise TarFormatError(f"pax size record {text[:24]!r} is not a decimal number")
    return int(text)


class TarScanner:
    """Feed it the raw tar stream chunk by chunk; it collects entries' headers.

    ``entries`` counts every entry, ``root`` is the ``.`` entry (if the archive has one),
    ``pg_version`` the stripped content of the shallowest ``PG_VERSION`` file (at the root
    or one directory down, where images put PGDATA in a subdirectory of the volume), and
    ``ended`` tells whether the end-of-archive marker was seen.
    """

    def __init__(self) -> None:
        self.entries = 0
        self.root: TarEntry | None = None
        self.pg_version: str | None = None
        self.pg_version_path: str | None = None
        self.ended = False
        self._buffer = bytearray()
        self._skip = 0  # data bytes (with padding) of the current entry still to pass
        self._collect: bytearray | None = None  # data of the current entry we want to keep
        self._collect_for: str = ""
        self._collect_left = 0
        self._meta: bytes | None = None  # type of a pending long-name / pax header
        self._pending_name: str | None = None
        self._pending_size: int | None = None  # from a pax ``size`` record: overrides the header's
        self._zero_blocks = 0

    def feed(self, chunk: bytes) -> None:
        if self.ended:
            return
        view = memoryview(chunk)
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                if self._collect is not None and self._collect_left:
                    keep = min(self._collect_left, taken)
                    self._collect += view[:keep]
                    self._collect_left -= keep
                    if not self._collect_left:
                        self._finish_collect()
                self._skip -= taken
                view = view[taken:]
                continue
            need = BLOCK - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == BLOCK:
                header, self._buffer = bytes(self._buffer), bytearray()
                self._header(header)
                if self.ended:
                    return

    def _header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self.ended = True
            return
        if self._zero_blocks:
            raise TarFormatError("a lone zero block inside the archive")
        if _checksum(header) != _number(header[148:156]):
            raise TarFormatError("tar header checksum mismatch")
        flag = header[156:157]
        size = _number(header[124:136])
        if flag in _META_TYPES:
            self._meta = flag
            self._start_collect(size, _padded(size), "meta", limit=1 << 20)
            return
        if self._pending_size is not None:
            size, self._pending_size = self._pending_size, None
        padded = _padded(size)
        name = _text(header[0:100])
        prefix = _text(header[345:500]) if header[257:263] in (b"ustar\0", b"ustar ") else ""
        if prefix and header[257:263] == b"ustar\0":
            name = f"{prefix}/{name}"
        if self._pending_name is not None:
            name, self._pending_name = self._pending_name, None
        entry = TarEntry(
            name=normalise(name), type=_entry_type(flag), mode=_number(header[100:108]) & 0o7777,
            uid=_number(header[108:116]), gid=_number(header[116:124]), size=size, mtime=_number(header[136:148]),
        )
        self.entries += 1
        if entry.name == "" and entry.type == "dir" and self.root is None:
            self.root = entry
        if self._wants_pg_version(entry):
            self._start_collect(size, padded, entry.name, limit=MAX_PG_VERSION_BYTES)
        else:
            self._skip = padded

    def _wants_pg_version(self, entry: TarEntry) -> bool:
        if entry.type != "file" or entry.name.rsplit("/", 1)[-1] != PG_VERSION:
            return False
        depth = entry.name.count("/")
        if depth > 1:
            return False
        return self.pg_version_path is None or depth < self.pg_version_path.count("/")

    def _start_collect(self, size: int, padded: int, purpose: str, limit: int) -> None:
        self._skip = padded
        self._collect = bytearray()
        self._collect_for = purpose
        self._collect_left = min(size, limit)
        if not self._collect_left:
            self._finish_collect()

    def _finish_collect(self) -> None:
        data, purpose = bytes(self._collect or b""), self._collect_for
        self._collect = None
        if purpose == "meta":
            meta, self._meta = self._meta, None
            if meta == b"L":
                self._pending_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif meta == b"x":
                records = pax_records(data)
                if b"path" in records:
                    self._pending_name = records[b"path"].decode("utf-8", "surrogateescape")
                self._pending_size = _pax_size(records)
            return
        self.pg_version = data.decode("ascii", "replace").strip()
        self.pg_version_path = purpose


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _checksum(header: bytes) -> int:
    return sum(header[:148]) + 8 * 32 + sum(header[156:])
