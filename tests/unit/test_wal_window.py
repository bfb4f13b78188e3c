"""The recovery window policy (daemon/wal/window.py): which bases and WAL files go, and why."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.manifest import Manifest
from daemon.wal.prune import archived_files, delete_archived, spool_names, wal_name_of
from daemon.wal.segments import DEFAULT_SEGMENT_SIZE, Segment, format_lsn
from daemon.wal.window import plan_window

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=timezone.utc)
DAYS = 7


def base(days_ago: float, start_segment: int, timeline: int = 1, *, minutes: int = 10) -> Manifest:
    """A base backup that finished ``days_ago`` before NOW, started ``minutes`` earlier in segment
    ``start_segment``."""
    finished = NOW - timedelta(days=days_ago)
    start_lsn = start_segment * DEFAULT_SEGMENT_SIZE + 0x28
    return Manifest(
        kind="base", target="cluster", file=f"base_{finished:%Y%m%d_%H%M%S}.tar.gz", size_bytes=1, sha256="0",
        started_at=finished - timedelta(minutes=minutes), finished_at=finished, server_version="15.20",
        format="tar", compression="gzip",
        details={"start_lsn": format_lsn(start_lsn), "stop_lsn": format_lsn(start_lsn + 0x100), "timeline": timeline},
    )


def segments(first: int, last: int, timeline: int = 1) -> list[str]:
    return [Segment(timeline, number).name for number in range(first, last + 1)]


def deleted_bases(plan) -> list[str]:
    return [manifest.file for manifest in plan.bases_deleted]


class TestBases:
    def test_keeps_the_newest_base_finished_before_the_window_start_and_every_newer_one(self):
        """With daily bases, the one that covers the window start and the newer ones stay."""
        bases = [base(days_ago, 100 - int(days_ago)) for days_ago in (10, 9, 8, 7.5, 6.5, 1)]
        plan = plan_window(bases, {}, [], NOW, DAYS)
        assert deleted_bases(plan) == [bases[0].file, bases[1].file, bases[2].file]
        assert plan.refused is None
        assert [d.action for d in plan.bases] == ["delete"] * 3 + ["keep"] * 3

    def test_a_base_finished_exactly_at_the_window_start_covers_it(self):
        """'At or before': a base that finished at now - N days is the anchor, the older one goes."""
        bases = [base(8, 10), base(7, 20), base(3, 30)]
        plan = plan_window(bases, {}, [], NOW, DAYS)
        assert deleted_bases(plan) == [bases[0].file]

    def test_no_base_finished_before_the_window_start_keeps_every_base(self):
        """A young install: nothing is old enough to go."""
        bases = [base(5, 10), base(3, 20), base(1, 30)]
        plan = plan_window(bases, {}, segments(5, 40), NOW, DAYS)
        assert plan.bases_deleted == []
        assert plan.first_kept_segment == Segment(1, 10)
        assert plan.wal_deleted == segments(5, 9)

    def test_the_newest_base_is_kept_however_old(self):
        """A daemon that took no base for a month still keeps its newest one and its WAL."""
        bases = [base(40, 10), base(30, 20)]
        plan = plan_window(bases, {}, segments(10, 25), NOW, DAYS)
        assert deleted_bases(plan) == [bases[0].file]
        assert "newest usable base" in plan.bases[-1].reason
        assert plan.wal_deleted == segments(10, 19)

    def test_an_unusable_base_is_kept_and_never_anchors_the_window(self):
        """A base whose artifact is missing is kept; the window is measured from usable ones."""
        bases = [base(10, 10), base(8, 20), base(2, 30)]
        plan = plan_window(bases, {bases[1].file: "its artifact is missing"}, segments(10, 35), NOW, DAYS)
        assert plan.bases_deleted == []  # base 10 days ago now covers the window start
        assert "unusable" in plan.bases[1].reason
        assert plan.first_kept_segment == Segment(1, 10)
        assert plan.wal_deleted == []

    def test_an_old_unusable_base_keeps_its_wal(self):
        """Its manifest stays (verify and restore still see it), so the WAL from its start stays too."""
        bases = [base(20, 10), base(10, 20), base(1, 30)]
        plan = plan_window(bases, {bases[0].file: "its artifact is missing"}, segments(5, 31), NOW, DAYS)
        assert plan.bases_deleted == [] and plan.first_kept_segment == Segment(1, 10)
        assert plan.wal_deleted == segments(5, 9)
        assert bases[0].file in next(d.reason for d in plan.wal if d.name == Segment(1, 10).name)

    def test_a_manifest_without_a_start_position_is_unusable(self):
        """Details without start_lsn: kept, not counted."""
        broken = base(9, 15)
        broken.details = {}
        bases = [base(10, 10), broken, base(1, 30)]
        plan = plan_window(bases, {}, segments(10, 31), NOW, DAYS)
        assert deleted_bases(plan) == []  # the 10-day-old base is the newest usable one before the window
        assert "no start position" in plan.bases[1].reason


class TestRefusals:
    def test_no_bases_deletes_no_wal(self):
        """WAL without any base backup is all there is: nothing is deleted, and the plan says why."""
        plan = plan_window([], {}, segments(1, 50), NOW, DAYS)
        assert plan.wal_deleted == [] and "no usable base backup" in plan.refused
        assert all(d.reason.startswith("refused: ") for d in plan.wal)

    def test_only_unusable_bases_delete_nothing(self):
        """Bases whose files are gone cannot anchor anything: everything is kept."""
        bases = [base(30, 10), base(20, 20)]
        plan = plan_window(bases, {b.file: "missing" for b in bases}, segments(1, 30), NOW, DAYS)
        assert plan.bases_deleted == [] and plan.wal_deleted == []
        assert "2 unusable" in plan.refused

    def test_a_base_finished_in_the_future_refuses_the_sweep(self):
        """A base dated a year ahead would place the window wrongly: nothing is deleted."""
        bases = [base(30, 10), base(20, 20), base(-365, 30)]
        plan = plan_window(bases, {}, segments(1, 40), NOW, DAYS)
        assert plan.bases_deleted == [] and plan.wal_deleted == []
        assert "in the future" in plan.refused


class TestWal:
    def test_wal_before_the_oldest_kept_base_goes_and_the_rest_stays(self):
        """The boundary is the oldest kept base's start segment, itself kept."""
        bases = [base(9, 10), base(8, 20), base(1, 30)]
        names = segments(5, 33)
        plan = plan_window(bases, {}, names, NOW, DAYS)
        assert plan.first_kept_segment == Segment(1, 20)
        assert plan.wal_deleted == segments(5, 19)
        assert {d.name for d in plan.wal if not d.delete} == set(segments(20, 33))

    def test_the_window_covering_every_base_deletes_only_wal_older_than_the_oldest(self):
        """A window longer than the history keeps every base; only WAL before the first base goes."""
        bases = [base(9, 10), base(8, 20)]
        plan = plan_window(bases, {}, segments(1, 25), NOW, 365)
        assert plan.bases_deleted == [] and plan.wal_deleted == segments(1, 9)

    def test_segments_compare_by_number_across_log_files(self):
        """0000000100000000000000FF comes before 000000010000000100000000 (256 segments per log)."""
        bases = [base(10, 0x100), base(1, 0x105)]
        names = segments(0xFD, 0x106)
        plan = plan_window(bases, {}, names, NOW, DAYS)
        assert plan.wal_deleted == segments(0xFD, 0xFF)
        assert "000000010000000100000000" not in plan.wal_deleted

    def test_a_gap_after_the_boundary_changes_nothing(self):
        """Missing segments after the kept base are not the policy's business: the rest stays."""
        bases = [base(10, 10), base(1, 30)]
        names = segments(5, 14) + segments(20, 32)
        plan = plan_window(bases, {}, names, NOW, DAYS)
        assert plan.wal_deleted == segments(5, 9)

    def test_every_timeline_from_the_boundary_on_is_kept(self):
        """After a promotion: numbers decide, not timelines; older numbers go on every timeline."""
        bases = [base(10, 10), base(1, 30, timeline=2)]
        names = segments(5, 24) + segments(24, 32, timeline=2) + ["00000002.history"]
        plan = plan_window(bases, {}, names, NOW, DAYS)
        assert plan.first_kept_segment == Segment(1, 10)
        assert plan.wal_deleted == segments(5, 9)
        plan = plan_window([base(10, 10, timeline=2), base(1, 30, timeline=2)], {}, names, NOW, DAYS)
        assert plan.wal_deleted == segments(5, 9)
        old_timeline = plan_window([base(10, 26, timeline=2), base(1, 30, timeline=2)], {}, names, NOW, DAYS)
        assert old_timeline.wal_deleted == segments(5, 24) + segments(24, 25, timeline=2)
        assert Segment(2, 26).name not in old_timeline.wal_deleted

    def test_history_files_are_always_kept(self):
        """Tiny, and read by every recovery on a later timeline."""
        bases = [base(10, 10), base(1, 30)]
        plan = plan_window(bases, {}, ["00000002.history", "00000003.history", *segments(1, 3)], NOW, DAYS)
        assert plan.wal_deleted == segments(1, 3)
        assert all(not d.delete for d in plan.wal if d.name.endswith(".history"))

    def test_a_segment_still_in_the_spool_is_kept(self):
        """The spool's newest complete segment would be archived again at once: it stays."""
        bases = [base(1, 30)]
        plan = plan_window(bases, {}, segments(27, 31), NOW, DAYS, in_spool={Segment(1, 29).name})
        assert plan.wal_deleted == segments(27, 28)
        assert "spool" in next(d.reason for d in plan.wal if d.name == Segment(1, 29).name)

    def test_other_names_are_not_planned(self):
        """Anything that is not a WAL file name is left alone."""
        plan = plan_window([base(1, 30)], {}, ["README", "0000000100000000000000ZZ", *segments(1, 1)], NOW, DAYS)
        assert [d.name for d in plan.wal] == segments(1, 1)


class TestArchivedFiles:
    def test_names_group_their_files_record_first(self, tmp_path):
        """A name's record comes before its data (deleted first); orphans and encrypted files count."""
        archive = tmp_path / "wal"
        (archive / ".spool").mkdir(parents=True)
        seg, orphan, history = Segment(1, 3).name, Segment(1, 4).name, "00000002.history"
        for file in (f"{seg}.gz", f"{seg}.json", f"{orphan}.gz.age", f"{history}.gz", f"{history}.json",
                     ".archive.lock", f".{seg}.gz.partial", "notes.txt", ".spool/x"):
            (archive / file).write_text("x")
        (archive / ".spool" / Segment(1, 5).name).write_text("x")
        files = archived_files(tmp_path)
        assert {name: [path.name for path in paths] for name, paths in files.items()} == {
            seg: [f"{seg}.json", f"{seg}.gz"], orphan: [f"{orphan}.gz.age"],
            history: [f"{history}.json", f"{history}.gz"]}
        assert spool_names(tmp_path) == {Segment(1, 5).name}
        delete_archived(files[seg])
        assert not (archive / f"{seg}.json").exists() and not (archive / f"{seg}.gz").exists()

    def test_other_files_have_no_wal_name(self):
        """Only a WAL file's record or data maps to its name."""
        assert wal_name_of("000000010000000000000003.gz.age") == "000000010000000000000003"
        assert wal_name_of("base_20261205_000000.tar.gz") is None
        assert wal_name_of("000000010000000000000003.partial.gz") is None
