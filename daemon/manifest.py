"""Manifests: the JSON record written next to every finished artifact.

A manifest is the proof that an artifact is complete; retention, listing, metrics and
restore only ever consider files that have one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from daemon import signing
from daemon.logs import get_logger
from daemon.naming import MANIFEST_SUFFIX, manifest_name
from daemon.storage.local import replace_file_atomically

log = get_logger(__name__)

SCHEMA_VERSION = 1


@dataclass
class Manifest:
    kind: str
    target: str
    file: str
    size_bytes: int
    sha256: str
    started_at: datetime
    finished_at: datetime
    server_version: str
    format: str
    compression: str
    keep_forever: bool = False
    method: str = ""
    databases: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    # What the dump left out (backup/exclusions.py): databases, table_data, only_schemas; empty in older manifests.
    excluded: dict[str, list[str]] = field(default_factory=dict)
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    offsite: dict[str, object] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)
    database_definition: str = ""  # plain database dumps: pg_dump --create's database part (see plans.py)
    instance: str = ""  # the install that took it (daemon/identity.py); empty in manifests older than the field
    encryption: str = ""  # "age" when the stored bytes are an age file (daemon/encryption.py); "" plain
    recipients: list[str] = field(default_factory=list)  # fingerprints of the age recipients it was encrypted to
    signature: str = ""  # HMAC-SHA256 of the other fields but offsite, with MANIFEST_SIGNING_KEY (daemon/signing.py)
    schema_version: int = SCHEMA_VERSION
    pgbackup_version: str = ""
    run_id: str = ""

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption)

    def record(self) -> dict[str, object]:
        """The manifest as its JSON object."""
        record = asdict(self)
        record["started_at"] = self.started_at.isoformat()
        record["finished_at"] = self.finished_at.isoformat()
        record["duration_seconds"] = round(self.duration_seconds, 3)
        return record

    def sign(self, key: bytes | None) -> None:
        """Set the signature (MANIFEST_SIGNING_KEY; nothing without a key). Sign last: it covers every field but offsite."""
        if key is not None:
            self.signature = signing.signature_of(self.record(), key)

    def signature_problem(self, key: bytes | None) -> str | None:
        """Why this manifest is foreign under ``key`` (unsigned, or signed otherwise); None when trusted."""
        return signing.signature_problem(self.record(), key)

    def to_json(self) -> str:
        return json.dumps(self.record(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        record = json.loads(text)
        record.pop("duration_seconds", None)
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in record.items() if key in known}
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        values["finished_at"] = datetime.fromisoformat(values["finished_at"])
        return cls(**values)


def manifest_path(artifact_path: Path) -> Path:
    return artifact_path.with_name(manifest_name(artifact_path.name))


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / manifest_name(manifest.file)
    replace_file_atomically(path, manifest.to_json().encode("utf-8"))
    return path


def read_manifest(path: Path) -> Manifest:
    return Manifest.from_json(path.read_text(encoding="utf-8"))


@dataclass
class ManifestScan:
    manifests: list[Manifest]
    unreadable: list[tuple[Path, str]]
    forged: list[tuple[Path, str]] = field(default_factory=list)  # unsigned or badly signed, with the key set


def scan_manifests(directory: Path, signing_key: bytes | None = None) -> ManifestScan:
    """Every readable manifest in ``directory``, newest first, plus the ones that were not.

    With ``signing_key`` (MANIFEST_SIGNING_KEY), a manifest that is unsigned or badly signed is
    foreign: it is left out (never restored, counted or deleted), listed in ``forged`` and
    logged as tampering.

    The one scan every reader uses (retention, offsite, listing, metrics, restore, verify). A
    manifest counts only when it names its own artifact: ``<file>.manifest.json`` whose ``file``
    is ``<file>``; a copied or edited one that names another file (or a path) is reported as
    unreadable, so nothing deletes, uploads or restores a file it does not describe.
    """
    manifests: list[Manifest] = []
    unreadable: list[tuple[Path, str]] = []
    forged: list[tuple[Path, str]] = []
    if directory.is_dir():
        for path in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
            try:
                manifest = read_manifest(path)
            except (OSError, ValueError, KeyError, TypeError) as error:
                unreadable.append((path, str(error)))
                continue
            if "/" in manifest.file or manifest_name(manifest.file) != path.name:
                unreadable.append((path, f"it describes another file ({manifest.file!r})"))
                continue
            problem = manifest.signature_problem(signing_key)
            if problem is not None:
                forged.append((path, problem))
                log.error("manifest_tampered", file=path.name, location="local", problem=problem)
                continue
            manifests.append(manifest)
    manifests.sort(key=lambda manifest: manifest.started_at, reverse=True)
    return ManifestScan(manifests, unreadable, forged)


def newest_by_kind_and_target(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    newest: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        key = (manifest.kind, manifest.target)
        if key not in newest or manifest.started_at > newest[key].started_at:
            newest[key] = manifest
    return newest
