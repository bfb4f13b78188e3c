"""The install's instance (daemon/identity.py) and the restore's choice among installs."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.errors import SettingsError
from daemon.identity import (
    GENERATED_PREFIX,
    INSTANCE_ID_FILE,
    IdentityError,
    Instance,
    create_generated_id,
    describe_instances,
    split_by_owner,
    this_instance,
)
from daemon.manifest import Manifest
from daemon.restore.selection import SelectionError, owned_candidates, with_other_installs
from daemon.settings import Settings, load_settings

START = datetime(2026, 12, 1, 3, 0, tzinfo=ZoneInfo("UTC"))


def manifest(instance: str, hours: int = 0, kind: str = "full") -> Manifest:
    return Manifest(kind=kind, target="all", file=f"f{instance}{hours}", size_bytes=1,
                    sha256=hashlib.sha256(b"x").hexdigest(), started_at=START + timedelta(hours=hours),
                    finished_at=START + timedelta(hours=hours, seconds=1), server_version="15.8", format="plain",
                    compression="gzip", instance=instance)


def settings_for(tmp_path, **values) -> Settings:
    return Settings(postgres_container="db", backup_dir=tmp_path, **values)


class TestOwnership:
    def test_own_name_alias_and_unrecorded_count_as_ours(self):
        instance = Instance("production", frozenset({"pgbackup-0123456789ab"}))
        assert instance.owns("production") and instance.owns("pgbackup-0123456789ab") and instance.owns("")
        assert not instance.owns("staging")

    def test_split_keeps_order(self):
        manifests = [manifest("a", 3), manifest("b", 2), manifest("", 1), manifest("a", 0)]
        own, foreign = split_by_owner(manifests, Instance("a"))
        assert [m.file for m in own] == ["fa3", "f1", "fa0"] and [m.file for m in foreign] == ["fb2"]

    def test_describe_instances_counts_each(self):
        assert describe_instances([manifest("b"), manifest("a"), manifest("b", 1)]) == "a (1 backup), b (2 backups)"


class TestThisInstance:
    def test_generated_once_then_kept(self, tmp_path):
        first = this_instance(settings_for(tmp_path))
        assert first.name.startswith(GENERATED_PREFIX) and len(first.name) == len(GENERATED_PREFIX) + 12
        assert this_instance(settings_for(tmp_path)) == first
        assert (tmp_path / INSTANCE_ID_FILE).read_text().strip() == first.name

    def test_a_second_creator_gets_the_first_id(self, tmp_path):
        first = create_generated_id(tmp_path)
        assert create_generated_id(tmp_path) == first
        assert [p.name for p in tmp_path.iterdir()] == [INSTANCE_ID_FILE]

    def test_a_name_set_later_keeps_the_generated_id_as_an_alias(self, tmp_path):
        generated = this_instance(settings_for(tmp_path)).name
        named = this_instance(settings_for(tmp_path, instance_name="production"))
        assert named == Instance("production", frozenset({generated}))

    def test_a_name_alone_creates_no_file(self, tmp_path):
        assert this_instance(settings_for(tmp_path, instance_name="production")) == Instance("production")
        assert not (tmp_path / INSTANCE_ID_FILE).exists()

    def test_unwritable_directory_says_what_to_set(self, tmp_path):
        missing = tmp_path / "no" / "such"
        with pytest.raises(IdentityError, match="INSTANCE_NAME"):
            this_instance(settings_for(missing))

    def test_a_foreign_file_is_not_taken_as_an_id(self, tmp_path):
        (tmp_path / INSTANCE_ID_FILE).write_text("hello\n")
        with pytest.raises(IdentityError, match="does not hold an instance id"):
            this_instance(settings_for(tmp_path))


class TestInstanceNameSetting:
    @pytest.mark.parametrize("name", ["production", "staging-eu", "a", "host1.example_2"])
    def test_accepted(self, tmp_path, name):
        assert settings_for(tmp_path, instance_name=name).instance_name == name

    @pytest.mark.parametrize("name", ["-x", "a/b", "two words", "x" * 64, "é"])
    def test_refused_naming_the_variable(self, monkeypatch, name):
        monkeypatch.setenv("POSTGRES_CONTAINER", "db")
        monkeypatch.setenv("INSTANCE_NAME", name)
        with pytest.raises(SettingsError) as error:
            load_settings()
        assert "INSTANCE_NAME: must be 1 to 63 letters" in str(error.value)


class TestRestoreChoosesAmongInstalls:
    def test_own_by_default_and_only_the_chosen_with_instance(self):
        manifests = [manifest("a", 2), manifest("b", 1), manifest("", 0)]
        assert [m.file for m in owned_candidates(manifests, Instance("a"), None)[0]] == ["fa2", "f0"]
        chosen, others = owned_candidates(manifests, Instance("a"), "b")
        assert [m.file for m in chosen] == ["fb1"] and [m.file for m in others] == ["fa2", "f0"]

    def test_the_error_names_other_installs_that_match(self):
        error = with_other_installs(SelectionError("no backup of x"), [manifest("b"), manifest("c", kind="database")],
                                    lambda m: m.kind == "full")
        assert str(error) == ("no backup of x; backups of other installs match: b (1 backup); "
                              "to restore one of them, add --instance NAME")

    def test_the_error_is_unchanged_when_no_other_install_matches(self):
        original = SelectionError("no backup of x")
        assert with_other_installs(original, [manifest("b", kind="database")], lambda m: m.kind == "full") is original
