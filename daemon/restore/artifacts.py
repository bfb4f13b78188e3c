"""Reading the artifact a restore uses: its checksum, a plain dump as a stream (gunzipped, with
progress), a custom or directory archive placed where pg_restore can open it, and that
archive's table of contents."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from daemon.encryption import Decryption
from daemon.errors import PgBackupError
from daemon.naming import RESTORE_SCRATCH_PREFIX, plain_name
from daemon.progress import Progress
from daemon.restore import toc
from daemon.restore.base import require
from daemon.restore.feed import make_temp_dir, put_stream, remove_temp_dir, single_file_tar
from daemon.restore.selection import Selected
from daemon.restore.streams import check_sha256, gunzip, read_chunks
from daemon.sources.docker_exec import DockerExecTransport
from daemon.sources.postgres import PostgresServer


@dataclass
class ArtifactReader:
    server: PostgresServer
    progress_stream: TextIO
    progress_interval: float
    # Where directory archives are unpacked for a local pg_restore (BACKUP_DIR, which has room
    # for them); the system's temporary directory when it is read-only.
    temp_root: Path | None = None
    decryption: Decryption = field(default_factory=lambda: Decryption(None))  # ENCRYPT_IDENTITY_FILE

    def check(self, selected: Selected) -> None:
        manifest = selected.manifest
        require(selected.path.exists(), f"{selected.path} does not exist (its manifest does)")
        self.decryption.require(manifest)  # IdentityMissing (exit 2) before anything is touched
        check_sha256(selected.path, manifest.sha256, manifest.size_bytes)
        self.decryption.authenticate(selected.path, manifest)  # a damaged file is refused before any SQL runs

    def plain_stream(self, selected: Selected, label: str) -> Iterator[bytes]:
        progress = Progress.for_stream(label, self.progress_interval, self.progress_stream)
        chunks = self.decryption.plaintext(read_chunks(selected.path, progress.read), selected.manifest)
        if selected.manifest.compression == "gzip":
            chunks = gunzip(chunks, selected.manifest.file)
        return _closing(chunks, progress)

    @contextmanager
    def archive_next_to_server(self, selected: Selected) -> Iterator[str | None]:
        """The path of the custom/directory archive where pg_restore can open it (it needs a file for -j).

        None for a plain dump, which is streamed instead.
        """
        if selected.manifest.format == "plain":
            yield None
            return
        with self._decrypted_archive(selected) as readable:
            with self._placed(readable) as archive:
                yield archive

    @contextmanager
    def _decrypted_archive(self, selected: Selected) -> Iterator[Selected]:
        """An encrypted archive decrypted into a private scratch directory (pg_restore needs a file
        it can seek in); removed again afterwards. A plain one as it is."""
        if not selected.manifest.encrypted:
            yield selected
            return
        name = plain_name(selected.manifest.file)
        with tempfile.TemporaryDirectory(prefix=RESTORE_SCRATCH_PREFIX, dir=writable_or_none(self.temp_root)) as scratch:
            target = Path(scratch) / name
            with open(target, "wb") as out:
                for block in self.decryption.plaintext(read_chunks(selected.path), selected.manifest):
                    out.write(block)
            yield Selected(selected.manifest, target)

    @contextmanager
    def _placed(self, selected: Selected) -> Iterator[str]:
        manifest, path = selected.manifest, selected.path
        transport = self.server.transport
        if isinstance(transport, DockerExecTransport):
            directory = make_temp_dir(self.server)
            try:
                progress = Progress.for_stream(f"copy {manifest.file}", self.progress_interval, self.progress_stream)
                chunks = _closing(read_chunks(path, progress.read), progress)
                if manifest.format == "directory":
                    put_stream(transport, directory, chunks)
                    yield f"{directory}/dump"
                else:
                    put_stream(transport, directory, single_file_tar("archive.dump", path.stat().st_size, chunks))
                    yield f"{directory}/archive.dump"
            finally:
                remove_temp_dir(self.server, directory)
        elif manifest.format == "directory":
            with tempfile.TemporaryDirectory(prefix=RESTORE_SCRATCH_PREFIX, dir=writable_or_none(self.temp_root)) as directory:
                extract_plain_files(path, Path(directory))
                yield str(Path(directory) / "dump")
        else:
            yield str(path)

    def listed_tables(self, archive: str) -> list[str]:
        """'schema name owner' of each table definition in the archive's table of contents."""
        return toc.listed_tables(self._toc_entries(archive))

    def has_table_data(self, archive: str, schema: str, name: str) -> bool:
        """Whether the archive has rows for exactly the table ``schema.name`` (pg_restore matches
        --schema and --table by the whole name; a table whose name merely starts the same does not count)."""
        return toc.has_table_data(self._toc_entries(archive, f"--schema={schema}", f"--table={name}"))

    def has_table_definition(self, archive: str, schema: str, name: str) -> bool:
        """Whether the archive defines exactly the table ``schema.name`` (rows or not)."""
        return toc.has_table_definition(self._toc_entries(archive, f"--schema={schema}", f"--table={name}"))

    def _toc_entries(self, archive: str, *selection: str) -> list[toc.TocEntry]:
        """The entries of the archive's table of contents that ``selection`` (pg_restore's
        --schema/--table options) keeps."""
        output = self.server.transport.run(self.server.tool("pg_restore", "--list", *selection, archive),
                                           self.server.environment())
        return toc.parse_listing(output)


def _closing(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        progress.close()


def writable_or_none(directory: Path | None) -> Path | None:
    """``directory`` if this process may create files in it, else None (tempfile's default)."""
    if directory is not None and os.access(directory, os.W_OK | os.X_OK):
        return directory
    return None


def extract_plain_files(archive_path: Path, directory: Path) -> None:
    """Unpack a directory-format dump's tar: plain files and folders only, never outside
    ``directory`` (the same rules as tarfile's "data" filter, which Python 3.11.2 lacks)."""
    root = directory.resolve()
    with tarfile.open(archive_path, mode="r|") as archive:
        for member in archive:
            target = (root / member.name).resolve()
            if member.name.startswith("/") or (target != root and root not in target.parents):
                raise PgBackupError(f"{archive_path.name}: refusing the path {member.name!r} outside the dump")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                raise PgBackupError(f"{archive_path.name}: refusing {member.name!r}, which is not a plain file")
