from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from daemon.errors import SettingsError
from daemon.settings import (
    MAX_VOLUME_STOP_SECONDS,
    Settings,
    environment_variable_names,
    load_settings,
    parse_table_selection,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test starts from an environment with none of the daemon's variables set."""
    for name in environment_variable_names():
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


def problems(monkeypatch, **env) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value.problems


class TestDefaults:
    def test_runbook_defaults(self, monkeypatch):
        """Without settings, the runbook's schedules, format and thresholds apply."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "ai-micro-postgres")
        settings = load_settings()
        assert settings.schedule_full == "0 3 * * *"
        assert settings.schedule_databases == "0 4 * * *"
        assert settings.backup_format == "custom"
        assert str(settings.backup_dir) == "/backups"
        assert settings.metrics_port == 9877
        assert settings.backup_max_age_hours == 24
        assert settings.backup_min_size_bytes == 1048576
        assert settings.postgres_user == "postgres"
        assert settings.backup_databases == []

    def test_lists_are_comma_separated(self, monkeypatch):
        """BACKUP_DATABASES is a comma list with spaces ignored."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("BACKUP_DATABASES", "authdb, apidb,admindb")
        assert load_settings().backup_databases == ["authdb", "apidb", "admindb"]

    def test_empty_value_means_default(self, monkeypatch):
        """An empty line in an env file (VAR=) leaves the default in place."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("SCHEDULE_FULL", "")
        assert load_settings().schedule_full == "0 3 * * *"


class TestTableSelection:
    def test_runbook_example(self):
        """'authdb:users;admindb:documents,knowledge_bases' selects tables per database."""
        assert parse_table_selection("authdb:users;admindb:documents, knowledge_bases") == {
            "authdb": ("users",),
            "admindb": ("documents", "knowledge_bases"),
        }

    @pytest.mark.parametrize("text", ["authdb", "authdb:", ":users", "authdb:users;apidb"])
    def test_incomplete_selection_is_an_error(self, text):
        """A database without tables, or tables without a database, is refused."""
        with pytest.raises(ValueError):
            parse_table_selection(text)


class TestValidation:
    def test_each_problem_names_its_variable(self, monkeypatch):
        """Bad values give one line each, starting with the variable's name and saying what is allowed."""
        lines = problems(
            monkeypatch, POSTGRES_CONTAINER="pg", SCHEDULE_FULL="61 3 * * *", BACKUP_FORMAT="tar",
            BACKUP_MIN_SIZE_BYTES="-1", TZ="Mars/Olympus", METRICS_PORT="99999",
        )
        by_name = {line.split(":", 1)[0]: line for line in lines}
        assert set(by_name) == {"SCHEDULE_FULL", "BACKUP_FORMAT", "BACKUP_MIN_SIZE_BYTES", "TZ", "METRICS_PORT"}
        assert "'custom', 'plain' or 'directory'" in by_name["BACKUP_FORMAT"]
        assert "crontab" in by_name["SCHEDULE_FULL"]
        assert "greater than or equal to 0" in by_name["BACKUP_MIN_SIZE_BYTES"]

    def test_a_switch_that_is_not_on_or_off_says_so(self, monkeypatch):
        """A boolean variable with another value names the variable and the values it takes."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", WAL_STREAMING="on", WAL_SYNCHRONOUS="always")
        assert line.startswith("WAL_SYNCHRONOUS: must be on or off")

    def test_wal_synchronous_needs_wal_streaming(self, monkeypatch):
        """WAL_SYNCHRONOUS=on (commits wait for the receiver) without WAL_STREAMING=on is refused; it is off
        by default."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", WAL_SYNCHRONOUS="on")
        assert line.startswith("WAL_SYNCHRONOUS=on needs WAL_STREAMING=on")
        monkeypatch.delenv("WAL_SYNCHRONOUS")
        assert Settings(POSTGRES_CONTAINER="pg").wal_synchronous is False

    def test_connection_method_must_be_chosen(self, monkeypatch):
        """Neither POSTGRES_CONTAINER nor POSTGRES_HOST is an error naming both."""
        (line,) = problems(monkeypatch)
        assert "POSTGRES_CONTAINER" in line and "POSTGRES_HOST" in line

    def test_both_connection_methods_is_an_error(self, monkeypatch):
        """Setting POSTGRES_CONTAINER and POSTGRES_HOST together is refused."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", POSTGRES_HOST="db", POSTGRES_PASSWORD="x")
        assert "both set" in line

    def test_tcp_needs_a_password(self, monkeypatch):
        """TCP mode without a password is refused up front."""
        (line,) = problems(monkeypatch, POSTGRES_HOST="db")
        assert "POSTGRES_PASSWORD" in line

    @pytest.mark.parametrize("url", ["minio:9000", "ftp://minio:9000", "http://", "http://minio:port"])
    def test_s3_endpoint_must_be_an_http_url(self, monkeypatch, url):
        """S3_ENDPOINT_URL without http:// or https:// and a host is refused, saying what is allowed."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", S3_BUCKET="b", S3_ENDPOINT_URL=url)
        assert line.startswith("S3_ENDPOINT_URL: ")
        assert "http://" in line and "https://" in line

    @pytest.mark.parametrize("url", ["http://minio:9000", "https://s3.eu-central-1.amazonaws.com"])
    def test_s3_endpoint_urls_are_accepted(self, monkeypatch, url):
        """http:// and https:// endpoints with a host, with or without a port, are valid."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("S3_ENDPOINT_URL", url)
        assert load_settings().s3_endpoint_url == url


    def test_a_schedule_that_never_comes_is_refused(self, monkeypatch):
        """February 31st is a valid crontab line that never fires: refused, naming the variable."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", SCHEDULE_FULL="0 3 31 2 *")
        assert line.startswith("SCHEDULE_FULL: ") and "never comes" in line

    def test_log_level_in_any_case(self, monkeypatch):
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("LOG_LEVEL", "warning")
        assert load_settings().log_level == "WARNING"

    @pytest.mark.parametrize("variable", ["SLACK_WEBHOOK_URL", "WEBHOOK_URL", "PING_URL", "PING_URL_DATABASES"])
    @pytest.mark.parametrize("value", ["not a url", "hooks.slack.com/services/T0/B0/secretpart"])
    def test_webhook_urls_must_be_http_and_are_never_shown(self, monkeypatch, tmp_path, variable, value):
        """A webhook URL that cannot work is refused; the message does not repeat it (an empty *_FILE:
        TestEmptySecretFiles)."""
        secret_file = tmp_path / "hook"
        secret_file.write_text(value)
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", **{f"{variable}_FILE": str(secret_file)})
        assert variable in line and "http://" in line
        assert "secretpart" not in line and "not a url" not in line

    def test_a_ping_url_must_be_http_when_set_directly(self, monkeypatch):
        """PING_URL_FULL=ftp://... is refused with the variable's name and an example, not the value."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", PING_URL_FULL="ftp://hc-ping.com/secretpart")
        assert line.startswith("PING_URL_FULL") and "hc-ping.com/<uuid>" in line and "secretpart" not in line

    @pytest.mark.parametrize("value", ["0", "-1", "86401", "nan"])
    def test_hook_timeout_is_bounded(self, monkeypatch, value):
        """HOOK_TIMEOUT_SECONDS must be more than 0 and at most a day; the problem names the variable."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", HOOK_TIMEOUT_SECONDS=value)
        assert line.startswith("HOOK_TIMEOUT_SECONDS")

    def test_a_blank_hook_is_no_hook(self, monkeypatch):
        """A hook of blanks only is treated as unset, a real one is kept as written."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("HOOK_BEFORE_BACKUP", "   ")
        monkeypatch.setenv("HOOK_AFTER_BACKUP", "curl -fsS http://app/maintenance/off")
        settings = load_settings()
        assert settings.hook_before_backup is None
        assert settings.hook_after_backup == "curl -fsS http://app/maintenance/off"

class TestSecrets:
    def test_secret_from_file(self, monkeypatch, tmp_path):
        """NAME_FILE reads the secret from a file, without its trailing newline."""
        secret = tmp_path / "pw"
        secret.write_text("s3cr3t-value\n")
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(secret))
        assert load_settings().postgres_password.get_secret_value() == "s3cr3t-value"

    def test_value_and_file_together_is_an_error_that_hides_the_secret(self, monkeypatch, tmp_path):
        """Setting NAME and NAME_FILE is refused, and the secret never appears in the message."""
        secret = tmp_path / "pw"
        secret.write_text("from-file-secret")
        lines = problems(monkeypatch, POSTGRES_CONTAINER="pg", POSTGRES_PASSWORD="inline-secret-value",
                         POSTGRES_PASSWORD_FILE=str(secret))
        assert any("POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE" in line for line in lines)
        assert not any("inline-secret-value" in line or "from-file-secret" in line for line in lines)

    def test_unreadable_secret_file(self, monkeypatch, tmp_path):
        """A _FILE that cannot be read is named with the reason."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", POSTGRES_PASSWORD_FILE=str(tmp_path / "missing"))
        assert "POSTGRES_PASSWORD_FILE" in line and "No such file" in line

    def test_invalid_secret_values_are_never_echoed(self, monkeypatch):
        """Even a rejected value is not repeated in the error."""
        lines = problems(monkeypatch, POSTGRES_CONTAINER="pg", NOTIFY_TIMEOUT_SECONDS="not-a-number-xyz")
        assert not any("not-a-number-xyz" in line for line in lines)

    def test_masked_settings_hide_secrets(self, monkeypatch):
        """The 'config' view shows *** for every secret that is set."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("POSTGRES_PASSWORD", "hunter2-secret")
        shown = load_settings().masked()
        assert shown["POSTGRES_PASSWORD"] == "***"
        assert "hunter2-secret" not in repr(shown)


class TestCredentialsInUrls:
    def test_config_hides_a_password_inside_a_url(self):
        """DOCKER_HOST and S3_ENDPOINT_URL may carry user:password@: `config` shows the user, never the password."""
        settings = Settings(postgres_container="pg", docker_host="tcp://admin:hunter22@docker.internal:2376",
                            s3_endpoint_url="https://key:s3cr3t-value@s3.internal", _env_file=None)
        shown = settings.masked()
        assert shown["DOCKER_HOST"] == "tcp://admin:***@docker.internal:2376"
        assert shown["S3_ENDPOINT_URL"] == "https://key:***@s3.internal"
        assert sorted(settings.url_passwords()) == ["hunter22", "s3cr3t-value"]

    def test_urls_without_a_password_are_shown_as_they_are(self):
        """A plain socket path or endpoint is not a secret."""
        settings = Settings(postgres_container="pg", s3_endpoint_url="http://127.0.0.1:8333", _env_file=None)
        assert settings.masked()["S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
        assert settings.url_passwords() == []


class TestBounds:
    @pytest.mark.parametrize("variable", ["BACKUP_MAX_AGE_HOURS", "PROGRESS_INTERVAL_SECONDS", "NOTIFY_TIMEOUT_SECONDS"])
    @pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-inf"])
    def test_numbers_must_be_finite(self, monkeypatch, variable, value):
        """inf and nan in a number of hours or seconds are refused at start, naming the variable."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", **{variable: value})
        assert line.startswith(f"{variable}: ")
        assert "finite" in line or "greater than" in line or "less than" in line

    @pytest.mark.parametrize("variable", [
        "RETENTION_FULL_DAYS", "RETENTION_DATABASE_DAYS", "RETENTION_TABLE_DAYS", "RETENTION_VOLUME_DAYS",
        "RETENTION_LOG_DAYS", "S3_RETENTION_DAYS", "BACKUP_MAX_AGE_HOURS", "MISFIRE_GRACE_SECONDS",
        "PROGRESS_INTERVAL_SECONDS", "VOLUME_STOP_TIMEOUT_SECONDS", "RETENTION_MIN_KEEP", "PITR_WINDOW_DAYS",
    ])
    def test_huge_values_are_refused_with_the_limit(self, monkeypatch, variable):
        """A value so large that dates computed from it overflow is refused, saying the upper limit."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", **{variable: "99999999999"})
        assert line.startswith(f"{variable}: ") and "less than or equal to" in line

    def test_the_recovery_window_is_at_least_a_day(self, monkeypatch):
        """PITR_WINDOW_DAYS=0 would keep no history: refused, naming the variable and the bound."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", PITR_WINDOW_DAYS="0")
        assert line.startswith("PITR_WINDOW_DAYS: ") and "greater than or equal to 1" in line

    def test_the_largest_allowed_values_work(self, monkeypatch):
        """At their upper limits the settings load, and a retention cut-off date can still be computed."""
        monkeypatch.setenv("POSTGRES_CONTAINER", "pg")
        monkeypatch.setenv("RETENTION_FULL_DAYS", "36500")
        monkeypatch.setenv("BACKUP_MAX_AGE_HOURS", "8784")
        settings = load_settings()
        assert datetime.now(UTC) - timedelta(days=settings.retention_full_days) > datetime(1900, 1, 1, tzinfo=UTC)
        assert timedelta(hours=settings.backup_max_age_hours) == timedelta(days=366)


REPO_ROOT = Path(__file__).resolve().parents[2]


class TestVolumeStopFitsTheStopGrace:
    def test_a_stop_timeout_beyond_120_seconds_is_refused(self, monkeypatch):
        """VOLUME_STOP_TIMEOUT_SECONDS above 120 would let a snapshot's stop outlast compose's grace."""
        (line,) = problems(monkeypatch, POSTGRES_CONTAINER="pg", VOLUME_STOP_TIMEOUT_SECONDS="121")
        assert line.startswith("VOLUME_STOP_TIMEOUT_SECONDS: ") and "less than or equal to 120" in line

    def test_compose_grace_covers_the_longest_stop_with_room_for_the_start(self):
        """The sidecar's stop_grace_period leaves at least a minute after the longest allowed stop."""
        compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
        grace = compose["services"]["pgbackup"]["stop_grace_period"]
        assert grace.endswith("m") and int(grace[:-1]) * 60 >= MAX_VOLUME_STOP_SECONDS + 60


class TestEmptySecretFiles:
    @pytest.mark.parametrize("variable", [
        "POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK_URL", "WEBHOOK_URL",
        "PING_URL", "PING_URL_VOLUME",
    ])
    @pytest.mark.parametrize("content", ["", "\n", "  \t\r\n"])
    def test_an_empty_secret_file_is_refused(self, monkeypatch, tmp_path, variable, content):
        """A *_FILE that is empty or only whitespace (a secret not filled in) is refused, naming the variable."""
        secret_file = tmp_path / "secret"
        secret_file.write_text(content)
        env = {"POSTGRES_CONTAINER": "pg", f"{variable}_FILE": str(secret_file)}
        if variable.startswith("AWS_"):
            env.update(S3_BUCKET="b")
        lines = problems(monkeypatch, **env)
        assert any(line.startswith(f"{variable}_FILE: ") and "empty" in line for line in lines), lines
