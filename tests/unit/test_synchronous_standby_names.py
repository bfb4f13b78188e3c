"""WAL_SYNCHRONOUS: synchronous_standby_names read, whether commits wait for the receiver, what is
wrong with the settings and what `wal setup --apply` changes (pure)."""

import pytest

from daemon.wal.synchronous import (
    UNDO_SQL,
    CommitSettings,
    Dependency,
    StandbyNames,
    assess_synchronous,
    parse_standby_names,
    plan_apply,
    receiver_dependency,
    without_receiver,
)

RECEIVER = "pgbackup_wal"


def dependency(value: str) -> Dependency:
    return receiver_dependency(parse_standby_names(value), RECEIVER)


def commit(names: str = "", level: str = "on", source_file: str = "") -> CommitSettings:
    return CommitSettings(standby_names=names, synchronous_commit=level, source_file=source_file)


class TestParseStandbyNames:
    def test_empty_is_asynchronous(self):
        """An empty or blank value names no standby."""
        assert parse_standby_names("") is None and parse_standby_names("  ") is None

    def test_a_plain_list_is_first_one(self):
        """'a, b' means FIRST 1 (a, b)."""
        assert parse_standby_names("a, b") == StandbyNames("FIRST", 1, ("a", "b"))

    @pytest.mark.parametrize("value, expected", [
        ("FIRST 2 (a, b, c)", StandbyNames("FIRST", 2, ("a", "b", "c"))),
        ("first 2(a,b)", StandbyNames("FIRST", 2, ("a", "b"))),
        ("2 (a, b)", StandbyNames("FIRST", 2, ("a", "b"))),
        ("ANY 1 (a, pgbackup_wal)", StandbyNames("ANY", 1, ("a", "pgbackup_wal"))),
        ("Any 3 (*)", StandbyNames("ANY", 3, ("*",))),
    ])
    def test_first_and_any_with_a_number(self, value, expected):
        """FIRST n (...), ANY n (...) and the old n (...) form, keywords in any case."""
        assert parse_standby_names(value) == expected

    def test_quoted_names_keep_spaces_commas_and_doubled_quotes(self):
        """A double-quoted name may hold anything; "" inside it is one quote."""
        names = parse_standby_names('ANY 1 ("a, b", "say ""hi""", plain)')
        assert names.names == ("a, b", 'say "hi"', "plain")

    def test_the_wildcard_and_numbers_are_names(self):
        """'*' matches every standby; a bare number in the list is a name, as PostgreSQL reads it."""
        assert parse_standby_names("*").names == ("*",)
        assert parse_standby_names("1 (1, 2)").names == ("1", "2")

    @pytest.mark.parametrize("value", ["FIRST (a)", "ANY 1 (a", "a,, b", "1 (a) b", "a b", "a; b"])
    def test_unreadable_values_are_refused_with_the_value(self, value):
        """Something PostgreSQL would not accept is an error naming the setting."""
        with pytest.raises(ValueError, match="synchronous_standby_names"):
            parse_standby_names(value)

    def test_a_list_is_written_back_quoting_only_what_needs_it(self):
        """text() gives FIRST/ANY n (...) with quotes around names that are not plain lower-case identifiers."""
        assert StandbyNames("ANY", 2, ("a", "B", "x y", "*")).text() == 'ANY 2 (a, "B", "x y", *)'


class TestReceiverDependency:
    @pytest.mark.parametrize("value", ["pgbackup_wal", "FIRST 1 (pgbackup_wal)", "ANY 1 (pgbackup_wal)",
                                       '"PGBACKUP_WAL"', "PgBackup_Wal", "FIRST 2 (a, pgbackup_wal)",
                                       "ANY 2 (pgbackup_wal, a)", "3 (a, b, pgbackup_wal)"])
    def test_every_commit_waits_when_the_others_cannot_make_up_the_number(self, value):
        """Named (in any case, quoted or not) with fewer other names than the number: every commit waits."""
        assert dependency(value) is Dependency.EVERY_COMMIT

    @pytest.mark.parametrize("value", ["a, pgbackup_wal", "pgbackup_wal, a", "ANY 1 (a, pgbackup_wal)",
                                       "FIRST 2 (a, b, pgbackup_wal)", "*", "ANY 1 (*)", "FIRST 2 (pgbackup_wal, *)"])
    def test_some_commits_when_other_standbys_can_stand_in(self, value):
        """Other names (or '*') enough to make up the number: a commit can return without the receiver."""
        assert dependency(value) is Dependency.SOME_COMMITS

    @pytest.mark.parametrize("value", ["", "a", "FIRST 1 (a, b)", "pgbackup_wal2", "ANY 1 (\"pgbackup wal\")"])
    def test_never_when_not_named(self, value):
        """Empty, or only other names: commits never wait for the receiver."""
        assert dependency(value) is Dependency.NONE

    def test_duplicate_other_names_count_once(self):
        """'a' twice is still one other name: FIRST 2 (a, a, pgbackup_wal) needs the receiver."""
        assert dependency("FIRST 2 (a, A, pgbackup_wal)") is Dependency.EVERY_COMMIT

    def test_the_receiver_taken_out_keeps_the_other_standbys(self):
        """The suggestion keeps the method and never asks for more standbys than are left."""
        assert without_receiver(parse_standby_names("ANY 2 (a, pgbackup_wal)"), RECEIVER) == "ANY 1 (a)"
        assert without_receiver(parse_standby_names("FIRST 1 (pgbackup_wal)"), RECEIVER) == ""


class TestAssessWanted:
    def test_the_receiver_alone_with_synchronous_commit_on_is_zero_loss(self):
        """'pgbackup_wal' and synchronous_commit on or remote_write: nothing to report."""
        for level in ("on", "remote_write"):
            assert assess_synchronous(commit("pgbackup_wal", level), RECEIVER, wanted=True, streaming=True) == []

    def test_an_empty_list_is_blocking_and_names_the_statement(self):
        """Empty: commits do not wait; the change is the ALTER SYSTEM that names the receiver."""
        [finding] = assess_synchronous(commit(""), RECEIVER, wanted=True, streaming=True)
        assert finding.blocking and "do not wait for the sidecar" in finding.problem
        assert "ALTER SYSTEM SET synchronous_standby_names = 'pgbackup_wal'" in finding.change

    def test_a_list_that_can_do_without_the_receiver_is_blocking(self):
        """ANY 1 (a, pgbackup_wal): a commit can return before the sidecar has its WAL."""
        [finding] = assess_synchronous(commit("ANY 1 (a, pgbackup_wal)"), RECEIVER, wanted=True, streaming=True)
        assert finding.blocking and "before the sidecar has its WAL" in finding.problem

    @pytest.mark.parametrize("level", ["local", "off"])
    def test_synchronous_commit_below_remote_is_blocking(self, level):
        """synchronous_commit local or off: commits wait for no standby, whatever the list says."""
        [finding] = assess_synchronous(commit("pgbackup_wal", level), RECEIVER, wanted=True, streaming=True)
        assert finding.blocking and f"synchronous_commit is {level!r}" in finding.problem
        assert "synchronous_commit = 'on'" in finding.change

    def test_remote_apply_with_the_receiver_named_never_returns(self):
        """remote_apply: pg_receivewal never applies WAL, so commits that wait for it hang."""
        [finding] = assess_synchronous(commit("pgbackup_wal", "remote_apply"), RECEIVER, wanted=True, streaming=True)
        assert finding.blocking and "never return" in finding.problem


class TestAssessUnwanted:
    def test_nothing_to_say_when_the_receiver_is_not_named(self):
        """WAL_SYNCHRONOUS off and an empty list (or other standbys only): no finding."""
        for value in ("", "a, b"):
            assert assess_synchronous(commit(value), RECEIVER, wanted=False, streaming=False) == []

    def test_streaming_off_while_every_commit_waits_says_commits_hang(self):
        """WAL_STREAMING off and the receiver required: blocking, commits hang, the undo is given."""
        [finding] = assess_synchronous(commit("pgbackup_wal"), RECEIVER, wanted=False, streaming=False)
        assert finding.blocking and "COMMITS ON THE SERVER HANG" in finding.problem
        assert UNDO_SQL in finding.change

    def test_synchronous_off_while_streaming_still_waits_is_blocking(self):
        """WAL_SYNCHRONOUS off but the receiver still required: commits hang whenever the sidecar is down."""
        [finding] = assess_synchronous(commit("FIRST 1 (pgbackup_wal)"), RECEIVER, wanted=False, streaming=True)
        assert finding.blocking and "hangs whenever the sidecar is down" in finding.problem

    def test_named_among_others_is_advice_with_the_list_without_it(self):
        """Named next to other standbys that can stand in: advice, with the value minus the receiver."""
        [finding] = assess_synchronous(commit("ANY 1 (a, pgbackup_wal)"), RECEIVER, wanted=False, streaming=False)
        assert not finding.blocking and "'ANY 1 (a)'" in finding.change

    def test_a_wildcard_is_the_administrators_choice(self):
        """'*' without the receiver's name: nothing to report when WAL_SYNCHRONOUS is off."""
        assert assess_synchronous(commit("*"), RECEIVER, wanted=False, streaming=True) == []


class TestPlanApply:
    def test_sets_the_receiver_when_wanted_empty_and_streaming(self):
        """WAL_SYNCHRONOUS on, empty value, receiver streaming: ALTER SYSTEM SET, then a reload."""
        plan = plan_apply(commit(""), RECEIVER, wanted=True, receiver_streaming=True)
        assert plan.statements == ("ALTER SYSTEM SET synchronous_standby_names = 'pgbackup_wal'",
                                   "SELECT pg_reload_conf()")
        assert UNDO_SQL in plan.text

    def test_never_while_the_receiver_does_not_stream(self):
        """Without a streaming receiver every commit would wait: nothing applied, the reason given."""
        plan = plan_apply(commit(""), RECEIVER, wanted=True, receiver_streaming=False)
        assert not plan.changes and "does not stream" in plan.text

    def test_never_over_other_standbys(self):
        """A value naming other standbys is not overwritten."""
        plan = plan_apply(commit("standby1"), RECEIVER, wanted=True, receiver_streaming=True)
        assert not plan.changes and "not overwritten" in plan.text

    def test_never_with_remote_apply(self):
        """With synchronous_commit remote_apply naming the receiver would hang every commit."""
        plan = plan_apply(commit("", "remote_apply"), RECEIVER, wanted=True, receiver_streaming=True)
        assert not plan.changes and "remote_apply" in plan.text

    def test_nothing_to_do_when_already_in_effect_or_not_involved(self):
        """Already required and wanted, or not named and not wanted: no plan."""
        assert plan_apply(commit("pgbackup_wal"), RECEIVER, wanted=True, receiver_streaming=True) is None
        assert plan_apply(commit(""), RECEIVER, wanted=False, receiver_streaming=False) is None
        assert plan_apply(commit("standby1"), RECEIVER, wanted=False, receiver_streaming=True) is None

    def test_resets_a_value_of_the_receiver_alone_set_by_alter_system_when_not_wanted(self):
        """WAL_SYNCHRONOUS off, the receiver alone, from postgresql.auto.conf (or unknown): RESET, then a reload."""
        for source in ("/var/lib/postgresql/data/postgresql.auto.conf", ""):
            plan = plan_apply(commit("pgbackup_wal", source_file=source), RECEIVER, wanted=False,
                              receiver_streaming=False)
            assert plan.statements == ("ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()")

    def test_a_value_from_postgresql_conf_is_named_not_changed(self):
        """Set in postgresql.conf, RESET would not help: the file is named instead."""
        plan = plan_apply(commit("pgbackup_wal", source_file="/etc/postgresql/postgresql.conf"), RECEIVER,
                          wanted=False, receiver_streaming=False)
        assert not plan.changes and "/etc/postgresql/postgresql.conf" in plan.text

    def test_a_list_with_other_standbys_is_left_to_the_administrator(self):
        """FIRST 2 (a, pgbackup_wal) when not wanted: not changed, the value without the receiver suggested."""
        plan = plan_apply(commit("FIRST 2 (a, pgbackup_wal)"), RECEIVER, wanted=False, receiver_streaming=True)
        assert not plan.changes and "FIRST 1 (a)" in plan.text

