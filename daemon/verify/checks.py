"""The checks of an artifact that need no server: sha256 against the manifest, complete
decompression with the row counts recounted, the archive's table of contents, a volume
snapshot's tar read to its end."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

from daemon.encryption import ChunkReader, Decryption
from daemon.restore.selection import Selected
from daemon.restore.streams import ArtifactDamaged, check_sha256, gunzip, read_chunks
from daemon.rowcount import RowCounter
from daemon.sources.local import LocalProcessTransport
from daemon.sources.postgres import installed_client_dirs
from daemon.volumes.tarscan import TarFormatError, TarScanner

CUSTOM_MAGIC = b"PGDMP"


def static_checks(selected: Selected, local_tools: bool = True,
                  decryption: Decryption | None = None) -> list[str]:
    """Checks that need no server; raise ArtifactDamaged (or CommandFailed) on the first problem.

    An encrypted artifact is decrypted on the fly (``decryption``: ENCRYPT_IDENTITY_FILE); every
    age chunk is authenticated on the way, so reading it to its end proves it undamaged."""
    manifest, path = selected.manifest, selected.path
    if not path.exists():
        raise ArtifactDamaged(f"{path} does not exist (its manifest does)")
    decryption = decryption or Decryption(None)
    decryption.require(manifest)
    check_sha256(path, manifest.sha256, manifest.size_bytes)
    done = ["sha256 and size match the manifest"]

    def content() -> Iterator[bytes]:
        return iter(decryption.plaintext(read_chunks(path), manifest))

    if manifest.encrypted:
        done.append(f"decrypts completely (age, {len(manifest.recipients)} recipient(s))")
    if manifest.kind in ("volume", "base"):  # both a gzip tar of a data directory
        done.append(_volume_tar_complete(selected, content()))
    elif manifest.format == "plain":
        done.append(_recount(selected, content()))
    elif manifest.encrypted and manifest.format == "custom":
        done.append(_custom_archive_complete(manifest.file, content()))
    elif manifest.encrypted and manifest.format == "directory":
        with tarfile.open(fileobj=io.BufferedReader(ChunkReader(content())), mode="r|") as archive:
            names = [member.name for member in archive]
        if "dump/toc.dat" not in names:
            raise ArtifactDamaged(f"{manifest.file} has no dump/toc.dat: not a directory-format archive")
        done.append(f"the tar is complete ({len(names)} entries, toc.dat present)")
    elif manifest.format == "custom":
        with open(path, "rb") as archive:
            if archive.read(len(CUSTOM_MAGIC)) != CUSTOM_MAGIC:
                raise ArtifactDamaged(f"{path.name} is not a pg_dump custom-format archive")
        reader = _local_pg_restore(_major(manifest.server_version)) if local_tools else None
        if reader:
            LocalProcessTransport().run([reader, "--list", str(path)])
            done.append("pg_restore --list reads the archive's table of contents")
    elif manifest.format == "directory":
        with tarfile.open(path, mode="r|") as archive:
            names = [member.name for member in archive]
        if "dump/toc.dat" not in names:
            raise ArtifactDamaged(f"{path.name} has no dump/toc.dat: not a directory-format archive")
        done.append(f"the tar is complete ({len(names)} entries, toc.dat present)")
    return done


def _custom_archive_complete(name: str, chunks: Iterator[bytes]) -> str:
    """A decrypted custom archive: pg_dump's magic at its start, and readable to its end."""
    first = next(chunks, b"")
    if not first.startswith(CUSTOM_MAGIC):
        raise ArtifactDamaged(f"{name} is not a pg_dump custom-format archive")
    for _ in chunks:
        pass
    return "a pg_dump custom-format archive, read to its end"


def _volume_tar_complete(selected: Selected, content: Iterator[bytes]) -> str:
    """Decompress the snapshot and read its tar to the end: complete, with a PG_VERSION."""
    scanner = TarScanner()
    try:
        for chunk in gunzip(content, selected.manifest.file):
            scanner.feed(chunk)
    except TarFormatError as error:
        raise ArtifactDamaged(f"{selected.manifest.file} is not a readable tar: {error}") from None
    if not scanner.ended:
        raise ArtifactDamaged(f"{selected.manifest.file}: the tar ends without its end-of-archive marker")
    if scanner.pg_version is None:
        raise ArtifactDamaged(f"{selected.manifest.file} has no PG_VERSION: not a PostgreSQL data directory")
    return (f"decompresses completely; the tar is complete ({scanner.entries} entries, "
            f"a PostgreSQL {scanner.pg_version} data directory)")


def _recount(selected: Selected, chunks: Iterator[bytes]) -> str:
    """Decompress the whole file and count its rows again: they must match the manifest."""
    manifest = selected.manifest
    counter = RowCounter(None if manifest.target == "all" else manifest.target)
    if manifest.compression == "gzip":
        chunks = gunzip(chunks, manifest.file)
    for chunk in chunks:
        counter.feed(chunk)
    if manifest.row_counts and counter.counts != manifest.row_counts:
        raise ArtifactDamaged(f"{manifest.file}: the row counts in the file differ from its manifest")
    tables = sum(len(tables) for tables in counter.counts.values())
    return f"decompresses completely; {tables} tables' row counts " + (
        "match the manifest" if manifest.row_counts else "counted (the manifest has none)")


def _local_pg_restore(server_major: int | None) -> str | None:
    """The newest pg_restore here, if it can read the archives of a ``server_major`` server.

    A pg_restore reads the archives of its own and older versions only ("unsupported version
    (1.16) in file header" from 15 for a 17 archive); with the docker exec method the sidecar
    may well have older client tools than the server, whose own tools the restore then uses.
    """
    installed = installed_client_dirs()
    if not installed or (server_major is not None and max(installed) < server_major):
        return None
    return str(installed[max(installed)] / "pg_restore")


def _major(server_version: str | None) -> int | None:
    """17 from "17.2"; None when the manifest does not say."""
    head = (server_version or "").split(".")[0]
    return int(head) if head.isdigit() else None
