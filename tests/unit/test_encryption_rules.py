"""The pure parts of encryption and signed manifests: names, manifest fields, signatures, the
settings that configure them, and the age stage's streaming and error hand-off (pyrage, no
processes)."""

import errno
import hashlib
import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pyrage
import pytest

from daemon.encryption import (
    AGE_HEADER,
    OUTPUT_BLOCK,
    Decryption,
    Encryption,
    EncryptionError,
    IdentityMissing,
    decrypted,
    fingerprint,
    recipient_lines,
)
from daemon.errors import SettingsError
from daemon.manifest import Manifest, scan_manifests, write_manifest
from daemon.monitoring.health import HealthState
from daemon.monitoring.metrics import Metrics
from daemon.monitoring.watcher import ManifestWatcher
from daemon.naming import encrypted_name, full_backup_name, manifest_name, plain_name
from daemon.settings import environment_variable_names, load_settings

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=ZoneInfo("UTC"))
KEY = b"k" * 32


def manifest(file: str = "backup_all_20261126_030000.sql.gz.age", **values) -> Manifest:
    return Manifest(kind="full", target="all", file=file, size_bytes=3, sha256="ab", started_at=T0,
                    finished_at=T0 + timedelta(seconds=7), server_version="15.18", format="plain",
                    compression="gzip", **values)


@pytest.fixture(scope="module")
def identity():
    return pyrage.x25519.Identity.generate()


def encrypt(data: bytes, recipient: str, piece: int = 100_000) -> bytes:
    out = io.BytesIO()
    with Encryption((recipient,)).stage(out.write) as stage:
        for start in range(0, len(data), piece):
            stage.write(data[start:start + piece])
        stage.finish()
    return out.getvalue()


class TestNames:
    def test_an_encrypted_artifact_is_the_plain_name_plus_age(self):
        """backup_all_*.sql.gz becomes backup_all_*.sql.gz.age, its manifest is named after it, and the
        plain name comes back by removing .age."""
        name = encrypted_name(full_backup_name(T0))
        assert name == "backup_all_20261126_030000.sql.gz.age"
        assert manifest_name(name) == "backup_all_20261126_030000.sql.gz.age.manifest.json"
        assert plain_name(name) == "backup_all_20261126_030000.sql.gz"
        assert plain_name("authdb_20261126_030000.dump") == "authdb_20261126_030000.dump"


class TestManifestFields:
    def test_encryption_and_recipients_round_trip(self, tmp_path):
        """encryption, recipients and signature are written and read back; the scan finds the .age artifact."""
        write_manifest(tmp_path, manifest(encryption="age", recipients=["0123456789abcdef"]))
        (read,) = scan_manifests(tmp_path).manifests
        assert read.encrypted and read.encryption == "age" and read.recipients == ["0123456789abcdef"]

    def test_a_manifest_older_than_the_fields_reads_as_plain(self, tmp_path):
        """A manifest without encryption, recipients or signature is a plain, unsigned backup."""
        record = json.loads(manifest("backup_all_20261126_030000.sql.gz").to_json())
        for name in ("encryption", "recipients", "signature"):
            del record[name]
        (tmp_path / "backup_all_20261126_030000.sql.gz.manifest.json").write_text(json.dumps(record))
        (read,) = scan_manifests(tmp_path).manifests
        assert not read.encrypted and read.recipients == [] and read.signature == ""


class TestSignature:
    def test_a_signed_manifest_is_trusted_even_after_its_offsite_record_changes(self):
        """The upload record is written after signing; it is outside the signature."""
        signed = manifest()
        signed.sign(KEY)
        assert signed.signature.startswith("hmac-sha256:")
        signed.offsite = {"status": "uploaded", "key": "x"}
        assert signed.signature_problem(KEY) is None

    @pytest.mark.parametrize("field, value", [("sha256", "cd"), ("size_bytes", 4), ("file", "other.sql.gz.age"),
                                              ("encryption", ""), ("keep_forever", True)])
    def test_any_other_change_breaks_the_signature(self, field, value):
        """Changing what a restore relies on (checksum, size, file, encryption) makes it foreign."""
        signed = manifest(encryption="age")
        signed.sign(KEY)
        setattr(signed, field, value)
        assert "does not match MANIFEST_SIGNING_KEY" in signed.signature_problem(KEY)

    def test_unsigned_or_signed_with_another_key(self):
        """Unsigned is foreign under a key; signed with another key too; without a key everything is trusted."""
        assert manifest().signature_problem(KEY) == "it is not signed"
        other = manifest()
        other.sign(b"o" * 32)
        assert other.signature_problem(KEY) is not None
        assert manifest().signature_problem(None) is None

    def test_the_scan_leaves_forged_manifests_out(self, tmp_path):
        """With the key, an unsigned and an altered manifest are listed as forged, never among the manifests."""
        good = manifest("a.sql.gz.age")
        good.sign(KEY)
        write_manifest(tmp_path, good)
        write_manifest(tmp_path, manifest("b.sql.gz.age"))
        altered = manifest("c.sql.gz.age")
        altered.sign(KEY)
        altered.sha256 = "ff"
        write_manifest(tmp_path, altered)
        scan = scan_manifests(tmp_path, KEY)
        assert [m.file for m in scan.manifests] == ["a.sql.gz.age"]
        assert sorted(path.name for path, _ in scan.forged) == [manifest_name("b.sql.gz.age"),
                                                                 manifest_name("c.sql.gz.age")]
        assert len(scan_manifests(tmp_path).manifests) == 3


class TestTamperingGauge:
    def test_the_rescan_counts_forged_manifests(self, tmp_path):
        """The /metrics rescan publishes how many manifests in BACKUP_DIR are foreign under the key, and
        counts only the signed one as a backup."""
        good = manifest("a.sql.gz.age")
        good.sign(KEY)
        write_manifest(tmp_path, good)
        write_manifest(tmp_path, manifest("b.sql.gz.age"))
        metrics = Metrics()
        found: list[list[Manifest]] = []
        watcher = ManifestWatcher(tmp_path, metrics, HealthState(T0, timedelta(days=1)), set(), found.append,
                                  lambda: T0 + timedelta(hours=1), KEY)
        watcher.refresh()
        assert metrics.registry.get_sample_value("pgbackup_tampered_manifests", {"location": "local"}) == 1
        assert [[m.file for m in manifests] for manifests in found] == [["a.sql.gz.age"]]


class TestAgeStage:
    def test_the_stage_writes_an_age_file_in_bounded_blocks(self, identity):
        """Pieces written in become one age file, handed on in blocks of at most about OUTPUT_BLOCK bytes,
        which decrypts to the same bytes."""
        blocks: list[int] = []
        out = io.BytesIO()

        def downstream(block: bytes) -> None:
            blocks.append(len(block))
            out.write(block)

        data = bytes(range(256)) * 20_000  # 5 MiB
        with Encryption((str(identity.to_public()),)).stage(downstream) as stage:
            for start in range(0, len(data), 300_000):
                stage.write(data[start:start + 300_000])
            stage.finish()
        assert out.getvalue().startswith(AGE_HEADER)
        assert max(blocks) < OUTPUT_BLOCK + 70_000
        assert b"".join(decrypted([out.getvalue()], [identity], "x")) == data

    def test_a_full_disk_downstream_stays_an_oserror(self, identity):
        """ENOSPC in the artifact's write surfaces in the writing thread as the same OSError (BackupDirFull)."""
        def full(block: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(OSError) as caught:
            with Encryption((str(identity.to_public()),)).stage(full) as stage:
                for _ in range(8):
                    stage.write(b"x" * OUTPUT_BLOCK)
                stage.finish()
        assert caught.value.errno == errno.ENOSPC

    def test_damage_and_a_wrong_identity_are_errors(self, identity):
        """A flipped byte or an identity that is no recipient's fails decryption."""
        stored = bytearray(encrypt(b"data " * 100_000, str(identity.to_public())))
        with pytest.raises(EncryptionError, match="no recipient|No matching keys"):
            list(decrypted([bytes(stored)], [pyrage.x25519.Identity.generate()], "x"))
        stored[len(stored) // 2] ^= 1
        with pytest.raises(EncryptionError, match="damaged"):
            list(decrypted([bytes(stored)], [identity], "x"))

    def test_reading_without_an_identity_names_the_variable(self):
        """No ENCRYPT_IDENTITY_FILE: an error with exit status 2 that names it."""
        with pytest.raises(IdentityMissing, match="ENCRYPT_IDENTITY_FILE") as caught:
            Decryption(None).identities("backup_all_x.sql.gz.age")
        assert caught.value.exit_code == 2

    def test_fingerprint_is_the_start_of_the_keys_sha256(self):
        """The manifest's recipient fingerprint: `printf %s KEY | sha256sum | cut -c1-16`."""
        assert fingerprint(" age1abc\n") == hashlib.sha256(b"age1abc").hexdigest()[:16]


class TestRecipientLines:
    def test_commas_lines_comments_and_ssh_keys(self):
        """age keys split on commas and blanks; an ssh key line stays whole; '#' starts a comment."""
        text = "age1a, age1b\n# old key: age1c\nssh-ed25519 AAAAC3Nz ops@laptop\n  age1d  # officer\n"
        assert recipient_lines(text) == ["age1a", "age1b", "ssh-ed25519 AAAAC3Nz ops@laptop", "age1d"]


class TestSettings:
    @pytest.fixture(autouse=True)
    def clean_environment(self, monkeypatch):
        for name in environment_variable_names():
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("POSTGRES_CONTAINER", "db")

    def test_recipients_from_the_variable_or_a_file(self, monkeypatch, tmp_path, identity):
        """ENCRYPT_RECIPIENTS is comma-separated; ENCRYPT_RECIPIENTS_FILE has one per line, # comments allowed."""
        first, second = str(identity.to_public()), str(pyrage.x25519.Identity.generate().to_public())
        monkeypatch.setenv("ENCRYPT_RECIPIENTS", f"{first}, {second}")
        assert load_settings().encryption.recipients == (first, second)
        monkeypatch.delenv("ENCRYPT_RECIPIENTS")
        (tmp_path / "recipients.txt").write_text(f"# ops\n{first}\n\n{second}  # backup officer\n")
        monkeypatch.setenv("ENCRYPT_RECIPIENTS_FILE", str(tmp_path / "recipients.txt"))
        assert load_settings().encryption.fingerprints == [fingerprint(first), fingerprint(second)]

    def test_a_bad_recipient_names_the_variable_and_what_is_allowed(self, monkeypatch):
        """A key age does not accept fails at start, naming ENCRYPT_RECIPIENTS and the allowed forms."""
        monkeypatch.setenv("ENCRYPT_RECIPIENTS", "age1notakey")
        with pytest.raises(SettingsError) as caught:
            load_settings()
        (problem,) = caught.value.problems
        assert problem.startswith("ENCRYPT_RECIPIENTS: ") and "age1… public keys" in problem

    def test_no_recipients_means_no_encryption(self):
        """Without ENCRYPT_RECIPIENTS nothing is encrypted."""
        assert load_settings().encryption is None

    def test_recipients_in_both_places_is_an_error(self, monkeypatch, tmp_path, identity):
        """ENCRYPT_RECIPIENTS and ENCRYPT_RECIPIENTS_FILE together are refused."""
        (tmp_path / "r.txt").write_text(str(identity.to_public()))
        monkeypatch.setenv("ENCRYPT_RECIPIENTS", str(identity.to_public()))
        monkeypatch.setenv("ENCRYPT_RECIPIENTS_FILE", str(tmp_path / "r.txt"))
        with pytest.raises(SettingsError, match="both set"):
            load_settings()

    def test_a_short_signing_key_is_refused_without_showing_it(self, monkeypatch, tmp_path):
        """MANIFEST_SIGNING_KEY_FILE with fewer than 32 bytes: an error naming the variable, not the key."""
        (tmp_path / "key").write_text("short-secret\n")
        monkeypatch.setenv("MANIFEST_SIGNING_KEY_FILE", str(tmp_path / "key"))
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert "MANIFEST_SIGNING_KEY" in str(caught.value.problems) and "short-secret" not in str(caught.value.problems)
        (tmp_path / "key").write_text("s" * 40 + "\n")
        assert load_settings().signing_key == b"s" * 40
