"""Debian's `chromium` in headless mode, and the PNG screenshots it takes (decoded without Pillow)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium(profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with its own profile directory; a missing browser fails the test."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed; it comes with Debian's `chromium` package (scripts/test installs it)")
    argv = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}\n{result.stderr[-3000:]}"
    return result


@dataclass
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def colours(self) -> set[tuple[int, int, int]]:
        """Every RGB colour that occurs in the image."""
        found: set[tuple[int, int, int]] = set()
        for row in self.rows:
            for offset in range(0, len(row), self.channels):
                found.add((row[offset], row[offset + 1], row[offset + 2]))
        return found


def read_png(path: Path) -> Image:
    """An 8-bit RGB or RGBA PNG (what Chromium writes), its scanlines unfiltered."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        chunks.append((data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]))
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert chunks[0][0] == b"IHDR" and depth == 8 and colour_type in (2, 6), (depth, colour_type)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(body for name, body in chunks if name == b"IDAT"))
    return Image(width, height, channels, unfilter(raw, width * channels, height, channels))


def unfilter(raw: bytes, stride: int, height: int, step: int) -> list[bytes]:
    rows: list[bytes] = []
    previous = bytes(stride)
    for index in range(height):
        start = index * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 2:  # up: Chromium's usual filter, done for the whole line at once
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind != 0:
            for i in range(stride):
                left = line[i - step] if i >= step else 0
                up, up_left = previous[i], previous[i - step] if i >= step else 0
                predicted = left if kind == 1 else (left + up) // 2 if kind == 3 else paeth(left, up, up_left)
                line[i] = (line[i] + predicted) & 0xFF
        rows.append(bytes(line))
        previous = rows[-1]
    return rows


def paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    return (left, up, up_left)[distances.index(min(distances))]
