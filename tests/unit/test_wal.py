"""The pure parts of WAL streaming: segment names, gaps, back-off, prerequisites, base tar facts."""

import dataclasses
import io
import tarfile
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pyrage
import pytest

from daemon.encryption import Decryption, Encryption, IdentityMissing
from daemon.errors import PgBackupError
from daemon.manifest import Manifest
from daemon.wal import archive, receiver
from daemon.wal.backoff import Backoff
from daemon.wal.basetar import BaseTarScanner
from daemon.wal.pitr import check_received, choose_base, describe_reached, parse_target
from daemon.wal.prerequisites import ServerFacts, assess, missing_text
from daemon.wal.recovery import RecoveryRefused, available_records, plan_wal
from daemon.wal.remote import wanted_record
from daemon.wal.segments import (
    DEFAULT_SEGMENT_SIZE,
    Segment,
    find_gaps,
    format_lsn,
    history_timeline,
    is_wal_file,
    parse_lsn,
    parse_segment,
    segment_of,
)
from daemon.wal.status import summarize


class TestSegmentNames:
    def test_a_name_is_timeline_and_number(self):
        """000000010000000100000002 is timeline 1, segment 256 + 2 with 16 MiB segments."""
        segment = parse_segment("000000010000000100000002")
        assert segment == Segment(1, 258)
        assert segment.name == "000000010000000100000002"

    def test_partial_names_parse_as_their_segment(self):
        """pg_receivewal's <name>.partial is the same segment, but not an archivable WAL file."""
        assert parse_segment("000000020000000000000005.partial") == Segment(2, 5)
        assert not is_wal_file("000000020000000000000005.partial")
        assert is_wal_file("000000020000000000000005")

    def test_other_names_are_not_segments(self):
        """Lower case, wrong length, timeline 0 and seg parts past the log's end are refused."""
        for name in ("00000001000000000000000a", "0000000100000000000000", "000000000000000000000001",
                     "000000010000000000000100", "backup_label"):
            assert parse_segment(name) is None

    def test_the_segment_after_ff_starts_the_next_log(self):
        """With 16 MiB segments, ...000000FF is followed by ...0000000100000000."""
        assert parse_segment("0000000100000000000000FF").next().name == "000000010000000100000000"

    def test_other_segment_sizes_have_other_logs(self):
        """With 64 MiB segments a log has 64 segments: number 64 is log 1, seg 0."""
        assert Segment(1, 64, 64 * 1024 * 1024).name == "000000010000000100000000"

    def test_history_files(self):
        """00000002.history is timeline 2's history, kept in the archive."""
        assert history_timeline("00000002.history") == 2
        assert is_wal_file("00000002.history")
        assert history_timeline("00000002.history.partial") is None

    def test_order_is_timeline_then_number(self):
        """Sorting puts a timeline's segments in WAL order, across the log boundary."""
        names = ["000000010000000100000000", "0000000100000000000000FF", "000000010000000000000002"]
        assert [s.name for s in sorted(parse_segment(n) for n in names)] == sorted(names)


class TestPositions:
    def test_lsn_round_trip(self):
        """0/3000028 is 50331688, and formats back the way PostgreSQL writes it."""
        assert parse_lsn("0/3000028") == 0x3000028
        assert format_lsn(parse_lsn("1/A0")) == "1/A0"

    def test_a_bad_lsn_names_the_expected_form(self):
        """Anything but HEX/HEX is refused with an example."""
        with pytest.raises(ValueError, match="0/3000028"):
            parse_lsn("3000028")

    def test_segment_of_a_position(self):
        """0/3000028 lies in segment 3 of its timeline."""
        assert segment_of(parse_lsn("0/3000028"), 1).name == "000000010000000000000003"


class TestGaps:
    def test_consecutive_segments_have_no_gap(self):
        """1, 2, 3 on one timeline: no gap, whatever the order given."""
        assert find_gaps([Segment(1, 3), Segment(1, 1), Segment(1, 2)]) == []

    def test_a_missing_segment_is_named(self):
        """1, 2, 5: 3 and 4 are missing, between 2 and 5."""
        gaps = find_gaps([Segment(1, 1), Segment(1, 2), Segment(1, 5)])
        assert [gap.missing for gap in gaps] == [2]
        assert str(gaps[0]) == ("000000010000000000000003 to 000000010000000000000004 missing "
                                "(between 000000010000000000000002 and 000000010000000000000005)")

    def test_timelines_are_checked_apart(self):
        """A new timeline starting at a higher number is no gap in the old one."""
        assert find_gaps([Segment(1, 1), Segment(1, 2), Segment(2, 2), Segment(2, 3)]) == []


class TestBackoff:
    def test_quick_failures_double_the_wait_up_to_the_maximum(self):
        """1, 2, 4, ... seconds, never more than the maximum."""
        backoff = Backoff(initial=1, maximum=5, stable_after=60)
        assert [backoff.delay_after(0.1) for _ in range(5)] == [1, 2, 4, 5, 5]

    def test_a_receiver_that_ran_long_starts_small_again(self):
        """After a run of at least stable_after seconds the wait is the initial one again."""
        backoff = Backoff(initial=1, maximum=60, stable_after=30)
        for _ in range(4):
            backoff.delay_after(0.1)
        assert backoff.delay_after(31) == 1
        assert backoff.delay_after(0.1) == 2


def facts(**changes) -> ServerFacts:
    values = dict(wal_level="replica", max_wal_senders=10, wal_senders_in_use=0, max_replication_slots=10,
                  slots_in_use=0, max_slot_wal_keep_size_mb=10240, slot_exists=False, segment_size=16 << 20,
                  server_version_num=150020, replication_refused=None)
    values.update(changes)
    return ServerFacts(**values)


class TestPrerequisites:
    def test_the_official_images_defaults_with_replication_allowed_are_enough(self):
        """wal_level replica, 10 senders, 10 slots and a keep size: nothing to report."""
        assert assess(facts(), "pgbackup", "postgres") == []

    def test_minimal_wal_level_is_missing(self):
        """wal_level=minimal blocks streaming, and the change says so."""
        findings = assess(facts(wal_level="minimal"), "pgbackup", "postgres")
        assert findings[0].blocking and "wal_level" in findings[0].problem
        assert "wal_level = 'replica'" in findings[0].change

    def test_too_few_free_senders(self):
        """9 of 10 senders in use leave one: the receiver and a base backup need two."""
        findings = assess(facts(wal_senders_in_use=9), "pgbackup", "postgres")
        assert [f.blocking for f in findings] == [True]
        assert "max_wal_senders is 10 with 9 in use" in missing_text(findings)

    def test_no_free_slot_matters_only_when_ours_is_missing(self):
        """All slots taken blocks creating ours, but not using ours when it exists."""
        assert missing_text(assess(facts(slots_in_use=10), "pgbackup", "postgres"))
        assert missing_text(assess(facts(slots_in_use=10, slot_exists=True), "pgbackup", "postgres")) is None

    def test_a_refused_replication_connection_names_the_pg_hba_line(self):
        """The server's refusal is quoted and the pg_hba.conf line for the user given."""
        findings = assess(facts(replication_refused="no pg_hba.conf entry for replication"), "pgbackup", "repl")
        assert "no pg_hba.conf entry" in findings[0].problem
        assert "host replication repl samenet scram-sha-256" in findings[0].change

    def test_an_unlimited_keep_size_is_advice_not_a_blocker(self):
        """max_slot_wal_keep_size=-1 is reported with a recommended limit, and blocks nothing."""
        findings = assess(facts(max_slot_wal_keep_size_mb=-1), "pgbackup", "postgres")
        assert [f.blocking for f in findings] == [False]
        assert "max_slot_wal_keep_size" in findings[0].change
        assert missing_text(findings) is None


def base_tar(label: str, manifest: str) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in (("PG_VERSION", "15\n"), ("backup_label", label), ("base/1/1234", "x" * 5000),
                              ("backup_manifest", manifest)):
            member = tarfile.TarInfo(name)
            member.size = len(content.encode())
            tar.addfile(member, io.BytesIO(content.encode()))
    return data.getvalue()


LABEL = ("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n"
         "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-05 07:13:26 UTC\n"
         "LABEL: pgbackup\nSTART TIMELINE: 1\n")
MANIFEST = ('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [],\n"WAL-Ranges": [\n'
            '{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }\n],\n"Manifest-Checksum": "ab"}\n')


class TestBaseTarScanner:
    @pytest.mark.parametrize("chunk_size", [1, 511, 4096, 1 << 20])
    def test_positions_and_timeline_from_the_stream(self, chunk_size):
        """Start and stop LSN, timeline and start time are read however the stream is cut."""
        stream = base_tar(LABEL, MANIFEST)
        scanner = BaseTarScanner()
        for offset in range(0, len(stream), chunk_size):
            scanner.feed(stream[offset:offset + chunk_size])
        assert scanner.ended
        found = scanner.facts()
        assert (found.start_lsn, found.stop_lsn, found.timeline) == ("0/2000028", "0/2000100", 1)
        assert found.start_time == "2026-12-05 07:13:26 UTC"
        assert found.start_segment == "000000010000000000000002"

    def test_a_tar_without_a_label_is_refused(self):
        """No backup_label: no base backup."""
        scanner = BaseTarScanner()
        scanner.feed(base_tar("", MANIFEST).replace(b"backup_label", b"other_file00"))
        with pytest.raises(ValueError):
            scanner.facts()


class TestArchive:
    def test_completed_segments_are_archived_checked_and_the_newest_stays_in_the_spool(self, tmp_path):
        """Segments 1 and 2 are archived with records; 1 leaves the spool, 2 (the newest) and the partial stay;
        reading back checks the sha256 and gives the original bytes."""
        spool = archive.spool_dir(tmp_path)
        archive.ensure_dirs(tmp_path)
        for number, byte in ((1, b"a"), (2, b"b")):
            (spool / Segment(1, number).name).write_bytes(byte * 4096)
        (spool / f"{Segment(1, 3).name}.partial").write_bytes(b"c" * 4096)
        now = datetime(2026, 12, 5, tzinfo=timezone.utc)
        records = archive.archive_completed(tmp_path, 1, lambda: now)
        assert [r.name for r in records] == [Segment(1, 1).name, Segment(1, 2).name]
        assert sorted(p.name for p in spool.iterdir()) == [Segment(1, 2).name, f"{Segment(1, 3).name}.partial"]
        assert archive.archive_completed(tmp_path, 1, lambda: now) == []  # nothing twice
        stored = archive.read_records(tmp_path)
        assert b"".join(archive.read_checked(tmp_path, stored[0])) == b"a" * 4096
        assert stored[1].timeline == 1 and stored[1].wal_size_bytes == 4096

    def test_a_damaged_archive_file_is_refused_by_name(self, tmp_path):
        """A .gz that no longer matches its record is an error naming the segment."""
        archive.ensure_dirs(tmp_path)
        (archive.spool_dir(tmp_path) / Segment(1, 1).name).write_bytes(b"a" * 4096)
        record = archive.archive_completed(tmp_path, 1, lambda: datetime.now(timezone.utc))[0]
        (archive.wal_dir(tmp_path) / record.file).write_bytes(b"broken")
        with pytest.raises(archive.WalArchiveError, match=Segment(1, 1).name):
            list(archive.read_checked(tmp_path, record))


class TestEncryptedArchive:
    def test_with_recipients_a_segment_is_an_age_file_read_back_only_with_the_identity(self, tmp_path):
        """ENCRYPT_RECIPIENTS: the archived file is <name>.gz.age (an age file), its record says age with the
        recipient's fingerprint; reading it back needs the identity (IdentityMissing naming the variable
        without it) and gives the original bytes with it."""
        identity = pyrage.x25519.Identity.generate()
        key_file = tmp_path / "key.txt"
        key_file.write_text(f"{identity}\n")
        archive.ensure_dirs(tmp_path)
        (archive.spool_dir(tmp_path) / Segment(1, 1).name).write_bytes(b"wal-bytes " * 1000)
        encryption = Encryption((str(identity.to_public()),))
        (record,) = archive.archive_completed(tmp_path, 1, lambda: datetime.now(timezone.utc), encryption)
        stored = (archive.wal_dir(tmp_path) / record.file).read_bytes()
        assert record.file == f"{Segment(1, 1).name}.gz.age" and stored.startswith(b"age-encryption.org/v1\n")
        assert record.encryption == "age" and list(record.recipients) == encryption.fingerprints
        (reread,) = archive.read_records(tmp_path)
        assert reread == record
        with pytest.raises(IdentityMissing, match="ENCRYPT_IDENTITY_FILE"):
            list(archive.read_checked(tmp_path, reread))
        assert b"".join(archive.read_checked(tmp_path, reread, Decryption(key_file))) == b"wal-bytes " * 1000


class TestSignedRecords:
    KEY = b"k" * 32

    def test_records_are_signed_and_an_altered_or_unsigned_one_is_left_out(self, tmp_path):
        """With MANIFEST_SIGNING_KEY records carry a signature that survives the offsite fields written
        later; a record whose sha256 was changed, or that is unsigned, is left out by readers with the key
        (and kept by readers without one)."""
        archive.ensure_dirs(tmp_path)
        for number in (1, 2, 3):
            (archive.spool_dir(tmp_path) / Segment(1, number).name).write_bytes(b"w" * 4096)
        now = datetime.now(timezone.utc)
        first, second, third = archive.archive_completed(tmp_path, 1, lambda: now, signing_key=self.KEY)
        assert first.signature.startswith("hmac-sha256:") and first.signature_problem(self.KEY) is None
        copied = dataclasses.replace(first, offsite_key="prod/wal/x.gz", offsite_at=now.isoformat())
        archive.replace_file_atomically(archive.record_path(archive.wal_dir(tmp_path), first.name),
                                        copied.to_json().encode())
        forged = dataclasses.replace(second, sha256="f" * 64)
        archive.replace_file_atomically(archive.record_path(archive.wal_dir(tmp_path), second.name),
                                        forged.to_json().encode())
        unsigned = dataclasses.replace(third, signature="")
        archive.replace_file_atomically(archive.record_path(archive.wal_dir(tmp_path), third.name),
                                        unsigned.to_json().encode())
        assert [r.name for r in archive.read_records(tmp_path, self.KEY)] == [first.name]
        assert len(archive.read_records(tmp_path)) == 3


def wal_record(name: str) -> archive.WalRecord:
    return archive.WalRecord(name, f"{name}.gz", "0" * 64, 1, DEFAULT_SEGMENT_SIZE, archive.timeline_of(name), "")


def base_manifest(start: str = "0/2000028", stop: str = "0/2000100") -> Manifest:
    moment = datetime(2026, 12, 5, tzinfo=timezone.utc)
    return Manifest(kind="base", target="cluster", file="base_20261205_000000.tar.gz", size_bytes=1, sha256="0",
                    started_at=moment, finished_at=moment, server_version="15.20", format="tar", compression="gzip",
                    details={"start_lsn": start, "stop_lsn": stop, "timeline": 1})


class TestWalPlan:
    def test_segments_from_the_base_on_and_the_partial(self, tmp_path):
        """Segments before the base are left out; the partial comes last and is the newest."""
        records = [wal_record(Segment(1, n).name) for n in (1, 2, 3, 4)]
        partial = tmp_path / f"{Segment(1, 5).name}.partial"
        plan = plan_wal(records, partial, base_manifest())
        assert [r.name for r in plan.records] == [Segment(1, n).name for n in (2, 3, 4)]
        assert plan.partial == partial and plan.newest_segment == Segment(1, 5)

    def test_a_complete_segment_is_preferred_to_the_partial_of_the_same_name(self, tmp_path):
        """When segment 4 is archived, a 4.partial is not staged."""
        records = [wal_record(Segment(1, n).name) for n in (2, 3, 4)]
        plan = plan_wal(records, tmp_path / f"{Segment(1, 4).name}.partial", base_manifest())
        assert plan.partial is None and plan.newest_segment == Segment(1, 4)

    def test_a_hole_after_the_base_is_refused_by_name(self):
        """Segments 2, 3 and 5: recovery past 3 would stop at the hole, so it is refused, naming 4."""
        records = [wal_record(Segment(1, n).name) for n in (2, 3, 5)]
        with pytest.raises(RecoveryRefused, match=Segment(1, 4).name):
            plan_wal(records, None, base_manifest())

    def test_the_first_segment_after_the_base_must_be_there(self):
        """The base's tar ends with segment 2; an archive starting at 4 misses 3."""
        records = [wal_record(Segment(1, n).name) for n in (4, 5)]
        with pytest.raises(RecoveryRefused, match=Segment(1, 3).name):
            plan_wal(records, None, base_manifest())

    def test_history_files_are_staged(self):
        """00000002.history goes with the segments (a later timeline's recovery reads it)."""
        records = [wal_record("00000002.history"), wal_record(Segment(1, 2).name)]
        plan = plan_wal(records, None, base_manifest())
        assert [r.name for r in plan.records] == ["00000002.history", Segment(1, 2).name]


    def test_every_hole_is_named(self):
        """Segments 2, 4 and 7: both holes (3; 5 and 6) are named in the refusal."""
        records = [wal_record(Segment(1, n).name) for n in (2, 4, 7)]
        with pytest.raises(RecoveryRefused) as refused:
            plan_wal(records, None, base_manifest())
        assert all(Segment(1, n).name in str(refused.value) for n in (3, 5, 6))


class TestOffsiteWal:
    def test_offsite_records_fill_only_what_the_local_archive_lacks(self):
        """Local 2 and 4, offsite 2, 3 and 4: the local 2 and 4 are kept, 3 comes from S3, and
        together they have no hole."""
        local = [wal_record(Segment(1, n).name) for n in (2, 4)]
        remote = [dataclasses.replace(wal_record(Segment(1, n).name), sha256="1" * 64) for n in (2, 3, 4)]
        merged = available_records(local, remote)
        assert [r.sha256 for r in merged if r.name != Segment(1, 3).name] == ["0" * 64, "0" * 64]
        plan = plan_wal(merged, None, base_manifest())
        assert [r.name for r in plan.records] == [Segment(1, n).name for n in (2, 3, 4)]

    def test_only_records_a_recovery_from_the_base_can_use_are_read(self):
        """Segments before the base's start segment and on earlier timelines are not read; history
        files always are; other names never."""
        since = Segment(1, 5)
        assert wanted_record(Segment(1, 5).name, since) and wanted_record(Segment(2, 9).name, since)
        assert not wanted_record(Segment(1, 4).name, since)
        assert not wanted_record(Segment(1, 9).name, Segment(2, 1))
        assert wanted_record("00000002.history", since)
        assert not wanted_record("claim.json", since) and wanted_record(Segment(1, 1).name, None)


class TestReachedReport:
    def test_the_time_reached_is_set_against_the_target(self):
        """PostgreSQL's last replayed commit time, and how far before the target it lies."""
        text = describe_reached("2026-12-05 14:54:58.25+00", datetime(2026, 12, 5, 14, 54, 59, tzinfo=timezone.utc))
        assert "2026-12-05 14:54:58.250000+00:00" in text and "0.750 s before the target" in text

    def test_latest_and_nothing_replayed(self):
        """--latest says everything received; no transaction replayed says so."""
        assert "everything received" in describe_reached("2026-12-05 14:54:58+00", None)
        assert "no transaction was replayed" in describe_reached("", None)


class TestPointInTimeSelection:
    def test_a_target_without_offset_is_in_tz_and_one_with_offset_as_given(self):
        """'2026-12-05 14:54:59' is read in TZ; '+01:00' keeps its own offset."""
        berlin = ZoneInfo("Europe/Berlin")
        assert parse_target("2026-12-05 14:54:59", berlin) == datetime(2026, 12, 5, 14, 54, 59, tzinfo=berlin)
        assert parse_target("2026-12-05 14:54:59+00:00", berlin).utcoffset().total_seconds() == 0

    def test_an_unreadable_target_names_the_form(self):
        """Anything else is refused with the expected form and TZ."""
        with pytest.raises(PgBackupError, match="YYYY-mm-dd HH:MM:SS"):
            parse_target("yesterday", ZoneInfo("UTC"))

    def test_the_newest_base_finished_before_the_target(self):
        """A base is usable only once it has finished; the newest such one is chosen."""
        early, late = base_at(1), base_at(5)
        assert choose_base([late, early], at(3)) is early
        assert choose_base([late, early], at(6)) is late
        assert choose_base([late, early], None) is late

    def test_a_target_before_every_base_is_refused(self):
        """Before the oldest base's end there is nothing to recover from."""
        with pytest.raises(RecoveryRefused, match="before the oldest base backup"):
            choose_base([base_at(5)], at(2))
        with pytest.raises(RecoveryRefused, match="no base backup"):
            choose_base([], None)

    def test_a_target_after_the_newest_wal_is_refused(self):
        """Recovery cannot reach a time after the newest WAL; --latest (None) always can."""
        with pytest.raises(RecoveryRefused, match="after the newest WAL received"):
            check_received(at(9), at(8))
        check_received(at(7), at(8))
        check_received(None, None)


def at(hour: int) -> datetime:
    return datetime(2026, 12, 5, hour, tzinfo=timezone.utc)


def base_at(hour: int) -> Manifest:
    manifest = base_manifest()
    manifest.started_at, manifest.finished_at = at(hour), at(hour).replace(minute=10)
    manifest.file = f"base_202612050{hour}0000.tar.gz"
    return manifest


class TestStatusSummary:
    def test_span_gaps_copies_and_newest_base(self, tmp_path):
        """Segments 2, 3 and 5 and 6.partial: the span, the hole at 4, the files S3 lacks, the newest base."""
        records = [wal_record(Segment(1, n).name) for n in (2, 3, 5)]
        records[0] = archive.WalRecord(**{**records[0].__dict__, "offsite_key": "prod/wal/x.gz"})
        summary = summarize(records, tmp_path / f"{Segment(1, 6).name}.partial", [base_at(1), base_at(5)],
                            offsite=True)
        assert (summary.segments, summary.oldest, summary.newest) == (3, Segment(1, 2).name, Segment(1, 5).name)
        hole = f"{Segment(1, 4).name} missing (between {Segment(1, 3).name} and {Segment(1, 5).name})"
        assert summary.gaps == [hole]
        assert summary.not_copied_offsite == 2
        assert summary.newest_base == base_at(5).file
        assert any(line.startswith("gaps: 000000010000000000000004") for line in summary.lines())

    def test_without_s3_the_copies_are_not_mentioned(self):
        """With WAL not going to S3 there is no 'not yet copied' line."""
        summary = summarize([], None, [])
        assert summary.not_copied_offsite is None
        assert not any("S3" in line for line in summary.lines())


class TestServerWentBack:
    @pytest.mark.parametrize("reason, went_back", [
        ('pg_receivewal exited with status 1: pg_receivewal: error: could not send replication command '
         '"START_REPLICATION": ERROR:  requested starting point 0/5000000 on timeline 1 is not in this server\'s '
         'history', True),
        ('pg_receivewal exited with status 1: ERROR:  requested starting point 0/9000000 is ahead of the WAL flush '
         'position of this server 0/7000148', True),
        ("pg_receivewal exited with status 1: pg_receivewal: error: could not connect to server", False),
        ("pg_receivewal exited with status 0", False),
    ])
    def test_the_servers_refusal_to_resume_past_its_history_is_recognised(self, reason, went_back):
        assert receiver.server_went_back(reason) is went_back

    def test_the_spool_is_set_aside_whole_and_kept(self, tmp_path):
        """Every file of the spool (the newest complete segment and the .partial) moves into a hidden
        wal/.spool-set-aside-<time>/ directory; nothing is deleted; an empty spool sets nothing aside."""
        archive.ensure_dirs(tmp_path)
        spool = archive.spool_dir(tmp_path)
        (spool / Segment(1, 4).name).write_bytes(b"a" * 100)
        (spool / f"{Segment(1, 5).name}.partial").write_bytes(b"b" * 100)
        aside = archive.set_spool_aside(tmp_path, datetime(2026, 12, 5, 14, 55, tzinfo=timezone.utc))
        assert aside == archive.wal_dir(tmp_path) / ".spool-set-aside-20261205_145500"
        assert sorted(p.name for p in aside.iterdir()) == [Segment(1, 4).name, f"{Segment(1, 5).name}.partial"]
        assert list(spool.iterdir()) == []
        assert archive.set_spool_aside(tmp_path, datetime(2026, 12, 5, 15, tzinfo=timezone.utc)) is None
