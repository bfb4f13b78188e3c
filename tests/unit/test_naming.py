from datetime import datetime
from zoneinfo import ZoneInfo

from daemon import naming

MOMENT = datetime(2026, 11, 26, 3, 0, 5, tzinfo=ZoneInfo("Europe/Berlin"))


class TestFileNames:
    def test_full_backup_keeps_the_runbook_pattern(self):
        """A full backup is named backup_all_YYYYmmdd_HHMMSS.sql.gz in the schedule's time zone."""
        assert naming.full_backup_name(MOMENT) == "backup_all_20261126_030005.sql.gz"

    def test_pre_migration_pattern(self):
        """A pre-migration backup is named backup_before_migration_YYYYmmdd_HHMMSS.sql.gz."""
        assert naming.pre_migration_name(MOMENT) == "backup_before_migration_20261126_030005.sql.gz"

    def test_database_extension_follows_the_format(self):
        """Custom dumps end in .dump, plain in .sql.gz, directory dumps in .dir.tar."""
        assert naming.database_backup_name("authdb", "custom", MOMENT) == "authdb_20261126_030005.dump"
        assert naming.database_backup_name("authdb", "plain", MOMENT) == "authdb_20261126_030005.sql.gz"
        assert naming.database_backup_name("authdb", "directory", MOMENT) == "authdb_20261126_030005.dir.tar"

    def test_table_backups_are_marked(self):
        """Table-level dumps carry _tables_ so they never match a database's glob by accident."""
        assert naming.table_backup_name("admindb", "custom", MOMENT) == "admindb_tables_20261126_030005.dump"

    def test_manifest_sits_next_to_its_artifact(self):
        """The manifest's name is the artifact's name plus .manifest.json."""
        assert naming.manifest_name("authdb_20261126_030005.dump") == "authdb_20261126_030005.dump.manifest.json"


class TestSafeName:
    def test_plain_names_are_unchanged(self):
        """Ordinary database names stay as they are, so runbook globs keep working."""
        assert naming.safe_name("authdb") == "authdb"
        assert naming.safe_name("my-db_2.x") == "my-db_2.x"

    def test_unsafe_characters_never_reach_the_file_name(self):
        """Slashes, quotes, spaces and leading dots are replaced."""
        for name in ['a/b', '../etc', 'it\'s "quoted"', "sp ace", ".hidden", ""]:
            safe = naming.safe_name(name)
            assert "/" not in safe and " " not in safe and '"' not in safe and "'" not in safe
            assert not safe.startswith(".") and safe

    def test_distinct_names_stay_distinct(self):
        """Two names that clean up alike still get different file names."""
        assert naming.safe_name("a b") != naming.safe_name("a/b")
        assert naming.safe_name("données") != naming.safe_name("donnees?")

    def test_non_ascii_is_transliterated(self):
        """Accented names keep a readable ASCII form."""
        assert naming.safe_name("données").startswith("donnees-")


class TestPartialNames:
    def test_partial_files_are_hidden_and_recognisable(self):
        """A file being written is hidden and recognised as partial; a finished one is not."""
        partial = naming.partial_name("backup_all_20261126_030005.sql.gz")
        assert partial.startswith(".") and naming.is_partial(partial)
        assert not naming.is_partial("backup_all_20261126_030005.sql.gz")
