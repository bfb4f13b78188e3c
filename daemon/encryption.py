"""age encryption of artifacts (https://age-encryption.org/v1), with pyrage.

Writing, ``EncryptingStage`` is one more stage of the write path: compressed blocks are pushed
in, age ciphertext comes out to the artifact and its sinks. Reading, ``decrypted`` turns the
stored ciphertext back into the compressed stream, chunk by chunk. Both run pyrage's streaming
calls (``encrypt_io``/``decrypt_io``, which read 8 KiB and write 64 KiB STREAM chunks) on a thread
of their own, fed through a bounded queue, so memory stays flat at any dump size; measured in
docs/benchmarks.md. The files are standard age files: ``age -d -i key.txt FILE`` reads them.

Only public keys (recipients) are needed to write; the private key (identity) only to read.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pyrage

from daemon.errors import PgBackupError
from daemon.manifest import Manifest

AGE_HEADER = b"age-encryption.org/v1\n"
ENCRYPTION_AGE = "age"
OUTPUT_BLOCK = 1 << 20  # ciphertext is handed on in blocks of this size (the sinks' unit)
QUEUE_DEPTH = 4  # blocks of at most about 1 MiB waiting on either side of the cipher thread
_POLL_SECONDS = 0.5
_END = object()
FINGERPRINT_HEX_DIGITS = 16


class EncryptionError(PgBackupError):
    """A recipient or identity that cannot be used, or ciphertext that cannot be decrypted."""


class IdentityMissing(PgBackupError):
    """An encrypted backup must be read, and ENCRYPT_IDENTITY_FILE is not set."""

    exit_code = 2


# --- keys -------------------------------------------------------------------------------------

def parse_recipient(text: str) -> object:
    """A pyrage recipient from an ``age1…`` key or an ``ssh-ed25519``/``ssh-rsa`` public key line."""
    text = text.strip()
    try:
        if text.startswith("ssh-"):
            return pyrage.ssh.Recipient.from_str(text)
        return pyrage.x25519.Recipient.from_str(text)
    except (pyrage.RecipientError, ValueError) as error:
        raise EncryptionError(f"{shorten(text)!r} is not an age recipient ({error})") from None


def recipient_lines(text: str) -> list[str]:
    """The recipients of a recipients file or variable: one per line or comma-separated; '#' starts a comment."""
    found: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("ssh-"):
            found.append(line)
        else:
            found.extend(part.strip() for part in line.replace(",", " ").split() if part.strip())
    return found


def fingerprint(recipient: str) -> str:
    """A short name of a public key for the manifest: the first hex digits of the key text's sha256
    (``printf %s age1… | sha256sum | cut -c1-16``)."""
    return hashlib.sha256(recipient.strip().encode("utf-8")).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def shorten(key: str) -> str:
    return key if len(key) <= 24 else key[:20] + "…"


def load_identities(path: Path) -> list[object]:
    """The private keys in an age identity file (``age-keygen`` output) or an OpenSSH private key file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise EncryptionError(f"ENCRYPT_IDENTITY_FILE: cannot read {path}: {error.strerror}") from None
    if b"PRIVATE KEY-----" in data:
        try:
            return [pyrage.ssh.Identity.from_buffer(data)]
        except (pyrage.IdentityError, ValueError) as error:
            raise EncryptionError(f"ENCRYPT_IDENTITY_FILE: {path} is not a usable SSH private key ({error})") from None
    keys = [line.strip() for line in data.decode("utf-8", "replace").splitlines()
            if line.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise EncryptionError(f"ENCRYPT_IDENTITY_FILE: {path} holds no AGE-SECRET-KEY-1… line (make one with age-keygen)")
    try:
        return [pyrage.x25519.Identity.from_str(key) for key in keys]
    except (pyrage.IdentityError, ValueError):
        raise EncryptionError(f"ENCRYPT_IDENTITY_FILE: {path} has an AGE-SECRET-KEY line that is not valid") from None


@dataclass(frozen=True)
class Encryption:
    """How new artifacts are encrypted: the recipients' key texts, parsed once."""

    recipients: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.recipients:
            raise EncryptionError("no recipients")
        object.__setattr__(self, "_parsed", [parse_recipient(key) for key in self.recipients])

    @property
    def fingerprints(self) -> list[str]:
        return [fingerprint(key) for key in self.recipients]

    def stage(self, downstream: Callable[[bytes], None]) -> EncryptingStage:
        return EncryptingStage(downstream, self._parsed)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Decryption:
    """How encrypted artifacts are read: the identity file, loaded when first needed."""

    identity_file: Path | None

    def identities(self, file_name: str) -> list[object]:
        if self.identity_file is None:
            raise IdentityMissing(f"{file_name} is encrypted (age): set ENCRYPT_IDENTITY_FILE to the age identity "
                                  "(private key) file to read it")
        return load_identities(self.identity_file)

    def require(self, manifest: Manifest) -> None:
        """IdentityMissing (exit 2) when ``manifest``'s artifact is encrypted and there is no identity to read it."""
        if manifest.encrypted:
            self.identities(manifest.file)

    def plaintext(self, stored: Iterable[bytes], manifest: Manifest) -> Iterable[bytes]:
        """The artifact's content from its stored bytes: decrypted when its manifest says it is encrypted."""
        if not manifest.encrypted:
            return stored
        return decrypted(stored, self.identities(manifest.file), manifest.file)

    def authenticate(self, path: Path, manifest: Manifest) -> None:
        """Decrypt the whole file once: age authenticates chunk by chunk, so a damaged chunk would only
        fail a restore when it is reached, after earlier data went in. Nothing for a plain artifact."""
        if manifest.encrypted:
            for _ in self.plaintext(_read_chunks(path), manifest):
                pass


# --- the file objects pyrage reads and writes ----------------------------------------------------

class ChunkReader(io.RawIOBase):
    """An iterator of byte chunks as a readable file (for pyrage and tarfile)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._current = memoryview(chunk)
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count


class BlockWriter(io.RawIOBase):
    """A writable file that hands pyrage's 64 KiB pieces on to ``downstream`` in blocks of OUTPUT_BLOCK."""

    def __init__(self, downstream: Callable[[bytes], None]):
        self._downstream = downstream
        self._pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= OUTPUT_BLOCK:
            self.flush_pending()
        return len(data)

    def flush_pending(self) -> None:
        if self._pending:
            block, self._pending = bytes(self._pending), bytearray()
            self._downstream(block)


def _put(blocks: queue.Queue, item: object, stopped: threading.Event) -> None:
    """Put ``item``, waiting while the queue is full; EncryptionError once the other side stopped."""
    while not stopped.is_set():
        try:
            blocks.put(item, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue
    raise EncryptionError("the other side of the age stream stopped")


def _taken(blocks: queue.Queue, stopped: threading.Event) -> Iterator[bytes]:
    """The blocks put into ``blocks`` until _END; EncryptionError once the other side stopped."""
    while True:
        if stopped.is_set():
            raise EncryptionError("the other side of the age stream stopped")
        try:
            item = blocks.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item


# --- writing ------------------------------------------------------------------------------------

class EncryptingStage:
    """A write-path stage: ``write`` plaintext blocks, ``finish``; ``downstream`` receives the age
    file's bytes in order, on the cipher thread. An error on either side surfaces in the other
    at its next hand-off; leaving the ``with`` block without ``finish`` stops the thread."""

    def __init__(self, downstream: Callable[[bytes], None], recipients: Sequence[object]):
        self._blocks: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stopped = threading.Event()
        self._output = BlockWriter(downstream)
        self._recipients = list(recipients)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="age-encrypt", daemon=True)

    def __enter__(self) -> EncryptingStage:
        self._thread.start()
        return self

    def write(self, block: bytes) -> None:
        self._hand_over(block)

    def finish(self) -> None:
        self._hand_over(_END)
        self._thread.join()
        self._raise_error()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread.is_alive():
            self._stopped.set()
            self._thread.join(timeout=30)

    def _hand_over(self, item: object) -> None:
        while True:
            self._raise_error()
            try:
                self._blocks.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            pyrage.encrypt_io(ChunkReader(_taken(self._blocks, self._stopped)), self._output, self._recipients)
            self._output.flush_pending()
        except pyrage.EncryptError as error:
            self._error = _cause(error) or EncryptionError(f"age encryption failed: {error}")
        except BaseException as error:  # handed to the writing thread
            self._error = error


def _cause(error: BaseException) -> BaseException | None:
    """The Python exception a reader or writer raised inside pyrage (an OSError of a full disk
    must stay an OSError so that the disk-full handling sees it)."""
    cause = error.__cause__ or error.__context__
    if cause is not None:
        return cause
    text = str(error)
    if text.startswith("OSError: [Errno "):
        number, _, message = text.removeprefix("OSError: [Errno ").partition("] ")
        if number.isdigit():
            return OSError(int(number), message)
    return None


# --- reading ------------------------------------------------------------------------------------

def decrypted(chunks: Iterable[bytes], identities: Sequence[object], name: str) -> Iterator[bytes]:
    """The plaintext of an age file given as ``chunks``, in blocks of about 1 MiB.

    age authenticates every 64 KiB chunk: a damaged or truncated file raises EncryptionError at
    the damaged chunk at the latest (a restore decrypts the whole file once before it starts)."""
    blocks: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    stopped = threading.Event()
    failure: list[BaseException] = []
    writer = BlockWriter(lambda block: _put(blocks, block, stopped))

    def run() -> None:
        try:
            pyrage.decrypt_io(ChunkReader(iter(chunks)), writer, list(identities))
            writer.flush_pending()
        except pyrage.DecryptError as error:
            failure.append(EncryptionError(f"cannot decrypt {name}: {error} (is ENCRYPT_IDENTITY_FILE the "
                                           "identity of one of its recipients?)"))
        except BaseException as error:  # noqa: BLE001 - handed to the reading side
            failure.append(EncryptionError(f"cannot decrypt {name}: {error}: the file is damaged"))
        finally:
            try:
                _put(blocks, _END, stopped)
            except EncryptionError:
                pass

    thread = threading.Thread(target=run, name="age-decrypt", daemon=True)
    thread.start()
    try:
        yield from _taken(blocks, threading.Event())
        thread.join()
        if failure:
            raise failure[0]
    finally:
        stopped.set()
        thread.join(timeout=30)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(OUTPUT_BLOCK):
            yield chunk


class Unencrypted:
    """The stage in the place of EncryptingStage when nothing is encrypted: blocks pass as they are."""

    def __init__(self, downstream: Callable[[bytes], None]):
        self.write = downstream

    def __enter__(self) -> Unencrypted:
        return self

    def finish(self) -> None:
        pass

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass
