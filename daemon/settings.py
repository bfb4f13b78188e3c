"""The daemon's configuration: environment variables, validated once at start-up.

This is the only module that reads the environment. Every variable is a field below
(the field name upper-cased); `settings.env.example` lists exactly these.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from daemon import encryption as age
from daemon.errors import SettingsError
from daemon.notify_urls import split_urls, url_problems
from daemon.schedule import ScheduleError, is_disabled, parse_crontab

DumpFormat = Literal["custom", "plain", "directory"]
SnapshotMode = Literal["stop", "running"]
BACKUP_KINDS = ("full", "database", "table", "pre_migration", "volume", "base")

# Upper bounds: generous for any real use, small enough that every date, timer and metric computed
# from them stays in range (a retention of 10**11 days overflows datetime at the first prune).
MAX_DAYS = 36_500  # a hundred years
MAX_AGE_HOURS = 8_784  # a leap year
MAX_SECONDS = 86_400  # a day
MAX_RUN_SECONDS = 7 * MAX_SECONDS  # a run deadline: a week
MAX_MIN_KEEP = 1_000
MAX_KEEP_PERIODS = 10_000  # GFS tiers: over 27 years of days; a bound only so that a typo is caught
MAX_SIZE_BYTES = 2**50  # 1 PiB
WAL_SEGMENT_BYTES = 16 * 2**20  # a slot always keeps about a segment: a lower limit would always be exceeded
# A snapshot stopped by SIGTERM finishes its stop, then starts the database (no ready-wait while
# shutting down): that fits the sidecar's stop_grace_period (3m in compose.yaml) with room to spare.
MAX_VOLUME_STOP_SECONDS = 120

# The dead-man ping URLs: PING_URL for every kind, PING_URL_<SCHEDULE> for one kind's runs.
PING_URL_FIELDS = ("ping_url", "ping_url_full", "ping_url_databases", "ping_url_tables", "ping_url_volume")
HOOK_FIELDS = ("hook_before_backup", "hook_after_backup", "hook_on_failure")

# Secrets accept NAME or NAME_FILE (Docker secrets), never both.
SECRET_FIELDS = (
    "postgres_password",
    "replication_password",
    "aws_access_key_id",
    "aws_secret_access_key",
    "slack_webhook_url",
    "webhook_url",
    "notify_urls",
    *PING_URL_FIELDS,
    "manifest_signing_key",
)
MIN_SIGNING_KEY_BYTES = 32


# The DATABASE:NAME[,NAME];DATABASE:NAME settings: what a NAME is, and an example for the error message.
PER_DATABASE_SYNTAX = {
    "backup_tables": ("TABLE", "'authdb:users;admindb:documents,knowledge_bases'"),
    "exclude_table_data": ("TABLE", "'apidb:request_logs,sessions;authdb:audit.events'"),
    "backup_schemas": ("SCHEMA", "'apidb:api,public;authdb:auth'"),
}


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# An install's name in its manifests and its claim on the S3 prefix (daemon/identity.py).
INSTANCE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
SLOT_NAME_PATTERN = re.compile(r"[a-z0-9_]{1,63}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        hide_input_in_errors=True,
        validate_default=True,
        allow_inf_nan=False,  # "inf" or "nan" hours would pass gt=0 and break date arithmetic later
    )

    # --- where PostgreSQL is ---------------------------------------------------------
    postgres_container: str | None = None
    postgres_host: str | None = None
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_user: str = Field("postgres", min_length=1)
    postgres_password: SecretStr | None = None
    postgres_password_file: Path | None = None
    docker_host: str = "unix:///var/run/docker.sock"
    dump_connection: Literal["auto", "exec"] = "auto"

    # --- what to back up, and where --------------------------------------------------
    backup_databases: Annotated[list[str], NoDecode] = Field(default_factory=list)
    backup_tables: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(default_factory=dict)
    # What dumps leave out (daemon/backup/exclusions.py).
    exclude_databases: Annotated[list[str], NoDecode] = Field(default_factory=list)
    exclude_table_data: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(default_factory=dict)
    backup_schemas: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(default_factory=dict)
    backup_dir: Path = Path("/backups")
    instance_name: str | None = None
    backup_format: DumpFormat = "custom"
    compression_level: int = Field(6, ge=1, le=9)
    gzip_level: int = Field(5, ge=1, le=9)
    gzip_threads: int = Field(0, ge=0, le=64)
    dump_jobs: int = Field(2, ge=1, le=64)
    database_jobs: int = Field(0, ge=0, le=64)  # 0: one per CPU the sidecar may use, at most 4

    # --- when ------------------------------------------------------------------------
    schedule_full: str = "0 3 * * *"
    schedule_databases: str = "0 4 * * *"
    schedule_tables: str = "0 4 * * *"
    schedule_volume: str = "0 2 * * 0"
    schedule_retention: str = "30 5 * * *"
    schedule_restore_test: str = "0 5 1 * *"
    tz: str = "UTC"
    misfire_grace_seconds: int = Field(3600, ge=1, le=MAX_SECONDS)
    catch_up: bool = True  # a scheduled run missed while the daemon was down runs once after start
    catch_up_delay_seconds: int = Field(60, ge=0, le=MAX_SECONDS)
    # --- time limits of a run (backup/time_limits.py) ---
    dump_lock_wait_timeout_seconds: int = Field(600, ge=1, le=MAX_SECONDS)
    run_deadline_seconds: int = Field(6 * 3600, ge=1, le=MAX_RUN_SECONDS)

    # --- monitoring ------------------------------------------------------------------
    metrics_address: str = "0.0.0.0"
    metrics_port: int = Field(9877, ge=1, le=65535)
    backup_max_age_hours: float = Field(24, gt=0, le=MAX_AGE_HOURS)
    backup_min_size_bytes: int = Field(1_048_576, ge=0, le=MAX_SIZE_BYTES)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    progress_interval_seconds: float = Field(30, gt=0, le=MAX_SECONDS)

    # --- retention -------------------------------------------------------------------
    retention_full_days: int = Field(30, ge=1, le=MAX_DAYS)
    retention_database_days: int = Field(14, ge=1, le=MAX_DAYS)
    retention_table_days: int = Field(14, ge=1, le=MAX_DAYS)
    retention_volume_days: int = Field(28, ge=1, le=MAX_DAYS)
    retention_log_days: int = Field(90, ge=1, le=MAX_DAYS)
    retention_min_keep: int = Field(1, ge=1, le=MAX_MIN_KEEP)
    # GFS tiers (housekeeping/tiers.py), every kind but pre_migration; unset or 0: off.
    retention_keep_daily: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    retention_keep_weekly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    retention_keep_monthly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    retention_keep_yearly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)

    # --- S3 offsite copies -----------------------------------------------------------
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_access_key_id_file: Path | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_secret_access_key_file: Path | None = None
    s3_storage_class: str | None = None
    s3_sse: Literal["AES256", "aws:kms"] | None = None
    s3_sse_kms_key_id: str | None = None
    s3_upload_kinds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(BACKUP_KINDS))
    s3_retention_days: int = Field(30, ge=1, le=MAX_DAYS)
    # S3 Object Lock (storage/s3.py): uploads retained this many days in this mode; unset: no lock.
    s3_object_lock_days: int | None = Field(None, ge=1, le=MAX_DAYS)
    s3_object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    s3_retention_keep_daily: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    s3_retention_keep_weekly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    s3_retention_keep_monthly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)
    s3_retention_keep_yearly: int | None = Field(None, ge=0, le=MAX_KEEP_PERIODS)

    # --- notifications ---------------------------------------------------------------
    slack_webhook_url: SecretStr | None = None
    slack_webhook_url_file: Path | None = None
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    notify_urls: SecretStr | None = None  # Apprise URLs, separated by whitespace (daemon/notify_urls.py)
    notify_urls_file: Path | None = None
    notify_on_success: bool = False
    notify_timeout_seconds: float = Field(10, gt=0, le=120)

    # --- dead-man pings (healthchecks.io conventions) ----------------------------------
    ping_url: SecretStr | None = None
    ping_url_file: Path | None = None
    ping_url_full: SecretStr | None = None
    ping_url_full_file: Path | None = None
    ping_url_databases: SecretStr | None = None
    ping_url_databases_file: Path | None = None
    ping_url_tables: SecretStr | None = None
    ping_url_tables_file: Path | None = None
    ping_url_volume: SecretStr | None = None
    ping_url_volume_file: Path | None = None

    # --- hooks: shell commands run around each backup run ------------------------------
    hook_before_backup: str | None = None
    hook_after_backup: str | None = None
    hook_on_failure: str | None = None
    hook_timeout_seconds: float = Field(300, gt=0, le=MAX_SECONDS)

    # --- volume snapshots ------------------------------------------------------------
    volume_name: str | None = None
    volume_snapshot_mode: SnapshotMode = "stop"
    volume_stop_timeout_seconds: int = Field(120, ge=1, le=MAX_VOLUME_STOP_SECONDS)
    helper_image: str | None = None

    # --- encryption and signed manifests (daemon/encryption.py, daemon/signing.py) -----
    encrypt_recipients: Annotated[list[str], NoDecode] = Field(default_factory=list)
    encrypt_recipients_file: Path | None = None
    encrypt_identity_file: Path | None = None
    encrypt_scope: Literal["all", "offsite"] = "all"  # offsite: local copies plain, S3 copies encrypted
    manifest_signing_key: SecretStr | None = None
    manifest_signing_key_file: Path | None = None

    # --- point-in-time recovery: WAL streaming and base backups (daemon/wal/) ------------
    wal_streaming: bool = False
    wal_synchronous: bool = False  # commits wait for the receiver (synchronous_standby_names): RPO 0
    wal_slot_name: str = "pgbackup"
    replication_user: str | None = None
    replication_password: SecretStr | None = None
    replication_password_file: Path | None = None
    schedule_base: str = "0 1 * * *"
    # /healthz and the alerts: how far back recovery may reach, how much WAL the slot may keep
    wal_max_lag_seconds: int = Field(300, ge=30, le=MAX_SECONDS)
    wal_slot_retained_max_bytes: int = Field(8 * 2**30, ge=WAL_SEGMENT_BYTES, le=MAX_SIZE_BYTES)
    pitr_window_days: int = Field(7, ge=1, le=MAX_DAYS)  # base backups and WAL kept: daemon/wal/window.py

    # --- restore ---------------------------------------------------------------------
    restore_jobs: int = Field(2, ge=1, le=64)
    restore_test_image: str | None = None

    # --- validators ------------------------------------------------------------------
    @field_validator("backup_databases", "exclude_databases", "s3_upload_kinds", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("encrypt_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        return age.recipient_lines(value) if isinstance(value, str) else value

    @field_validator(*PER_DATABASE_SYNTAX, mode="before")
    @classmethod
    def _parse_per_database(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            return parse_per_database(value, *PER_DATABASE_SYNTAX[info.field_name])
        return value

    @field_validator("s3_upload_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = [kind for kind in kinds if kind not in BACKUP_KINDS]
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)}; allowed: {', '.join(BACKUP_KINDS)}")
        return kinds

    @field_validator("s3_endpoint_url")
    @classmethod
    def _http_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not is_http_url(url):
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://minio:9000 or "
                "https://s3.eu-central-1.amazonaws.com; leave it empty for AWS"
            )
        return url

    @field_validator("instance_name")
    @classmethod
    def _plain_instance_name(cls, name: str | None) -> str | None:
        if name is not None and not INSTANCE_NAME_PATTERN.fullmatch(name.strip()):
            raise ValueError("must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                             "e.g. production or staging-eu")
        return name.strip() if name is not None else None

    @field_validator("wal_slot_name")
    @classmethod
    def _valid_slot_name(cls, name: str) -> str:
        if not SLOT_NAME_PATTERN.fullmatch(name):
            raise ValueError("must be 1 to 63 lower-case letters, digits or '_' (PostgreSQL's rule for "
                             "replication slot names), e.g. pgbackup")
        return name

    @field_validator("tz")
    @classmethod
    def _known_time_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not an IANA time zone name such as UTC or Europe/Berlin") from None
        return name

    @field_validator(
        "schedule_full",
        "schedule_databases",
        "schedule_tables",
        "schedule_volume",
        "schedule_base",
        "schedule_retention",
        "schedule_restore_test",
    )
    @classmethod
    def _valid_schedule(cls, expression: str) -> str:
        if not is_disabled(expression):
            try:
                trigger = parse_crontab(expression, ZoneInfo("UTC"))
            except ScheduleError as error:
                raise ValueError(f"{error}; use five crontab fields, e.g. '0 3 * * *', or 'off'") from None
            if trigger.get_next_fire_time(None, datetime.now(ZoneInfo("UTC"))) is None:
                raise ValueError(f"{expression.strip()!r} never comes (a day the month does not have?); "
                                 "use a date that exists, e.g. '0 3 28 2 *', or 'off'")
        return expression.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, level: object) -> object:
        return level.strip().upper() if isinstance(level, str) else level

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        for name in SECRET_FIELDS:
            file_path = getattr(self, f"{name}_file")
            if file_path is None:
                continue
            if getattr(self, name) is not None:
                raise ValueError(f"{name.upper()} and {name.upper()}_FILE are both set; set only one of them")
            setattr(self, name, SecretStr(_read_secret_file(name, file_path)))
        return self

    @model_validator(mode="after")
    def _usable_recipients(self) -> Settings:
        """ENCRYPT_RECIPIENTS or the lines of ENCRYPT_RECIPIENTS_FILE, each one a public key age accepts."""
        variable = "ENCRYPT_RECIPIENTS"
        if self.encrypt_recipients_file is not None:
            if self.encrypt_recipients:
                raise ValueError("ENCRYPT_RECIPIENTS and ENCRYPT_RECIPIENTS_FILE are both set; set only one of them")
            variable = "ENCRYPT_RECIPIENTS_FILE"
            try:
                text = self.encrypt_recipients_file.read_text(encoding="utf-8")
            except OSError as error:
                raise ValueError(f"{variable}: cannot read {self.encrypt_recipients_file}: {error.strerror}") from None
            self.encrypt_recipients = age.recipient_lines(text)
            if not self.encrypt_recipients:
                raise ValueError(f"{variable}: {self.encrypt_recipients_file} holds no recipient; put age1… "
                                 "public keys in it (age-keygen -y key.txt), one per line")
        for key in self.encrypt_recipients:
            try:
                age.parse_recipient(key)
            except age.EncryptionError as error:
                raise ValueError(f"{variable}: {error}; allowed: age1… public keys (age-keygen -y key.txt) "
                                 "or ssh-ed25519/ssh-rsa public keys") from None
        return self

    @model_validator(mode="after")
    def _scope_with_something_to_encrypt(self) -> Settings:
        """ENCRYPT_SCOPE=offsite encrypts the S3 copies: without recipients or without S3 nothing
        would be, and the user would believe otherwise."""
        if self.encrypt_scope == "offsite" and not self.encrypt_recipients:
            raise ValueError("ENCRYPT_SCOPE=offsite needs ENCRYPT_RECIPIENTS (or ENCRYPT_RECIPIENTS_FILE): the "
                             "S3 copies are encrypted to them")
        if self.encrypt_scope == "offsite" and not self.s3_bucket:
            raise ValueError("ENCRYPT_SCOPE=offsite encrypts only the S3 copies, and S3_BUCKET is not set, so "
                             "nothing would be encrypted; set S3_BUCKET, or ENCRYPT_SCOPE=all to encrypt the "
                             "local copies")
        return self

    @model_validator(mode="after")
    def _synchronous_needs_streaming(self) -> Settings:
        """Commits can only wait for WAL the sidecar receives; WAL_SYNCHRONOUS alone would promise
        zero loss while nothing streams."""
        if self.wal_synchronous and not self.wal_streaming:
            raise ValueError("WAL_SYNCHRONOUS=on needs WAL_STREAMING=on (commits wait for the WAL receiver); to stop "
                             "streaming set both off, and undo synchronous_standby_names on the server "
                             "(docs/pitr.md)")
        return self

    @model_validator(mode="after")
    def _long_signing_key(self) -> Settings:
        if self.manifest_signing_key is not None and \
                len(self.manifest_signing_key.get_secret_value().encode("utf-8")) < MIN_SIGNING_KEY_BYTES:
            raise ValueError(f"MANIFEST_SIGNING_KEY (or the content of MANIFEST_SIGNING_KEY_FILE) must be at least "
                             f"{MIN_SIGNING_KEY_BYTES} bytes, e.g. the output of `openssl rand -hex 32`")
        return self

    @model_validator(mode="after")
    def _http_webhooks(self) -> Settings:
        """Webhook and ping URLs (also read from *_FILE) must be http(s) URLs; the message never shows the value."""
        examples = {"slack_webhook_url": "https://hooks.slack.com/services/...",
                    "webhook_url": "https://example.com/pgbackup"}
        examples.update((name, "https://hc-ping.com/<uuid>") for name in PING_URL_FIELDS)
        for name, example in examples.items():
            value = getattr(self, name)
            if value is not None and not is_http_url(value.get_secret_value()):
                raise ValueError(f"{name.upper()} (or the content of {name.upper()}_FILE) must be an http:// or "
                                 f"https:// URL, e.g. {example}; leave it unset for none")
        return self

    @model_validator(mode="after")
    def _apprise_urls(self) -> Settings:
        """Every NOTIFY_URLS entry must be an Apprise URL it can send to; the message never shows a URL."""
        if self.notify_urls is None:
            return self
        problems = url_problems(self.notify_url_list)
        if problems:
            raise ValueError(f"NOTIFY_URLS (or the content of NOTIFY_URLS_FILE): {'; '.join(problems)}; "
                             "use Apprise URLs separated by spaces or new lines, e.g. "
                             "'mailto://user:password@smtp.example.com?to=ops@example.com ntfy://ntfy.sh/my-topic'")
        return self

    @field_validator(*HOOK_FIELDS)
    @classmethod
    def _command_or_none(cls, command: str | None) -> str | None:
        """A hook that is only blanks is no hook (compose writes `HOOK_AFTER_BACKUP: " "` by mistake)."""
        return command if command is None or command.strip() else None

    @model_validator(mode="after")
    def _one_connection_method(self) -> Settings:
        if self.postgres_container and self.postgres_host:
            raise ValueError("POSTGRES_CONTAINER and POSTGRES_HOST are both set; set only one (docker exec or TCP)")
        if not self.postgres_container and not self.postgres_host:
            raise ValueError(
                "neither POSTGRES_CONTAINER (docker exec into a container) nor POSTGRES_HOST (TCP) is set; set one"
            )
        if self.postgres_host and self.postgres_password is None:
            raise ValueError("POSTGRES_HOST needs POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE")
        return self

    @model_validator(mode="after")
    def _exclusions_agree(self) -> Settings:
        """A database cannot be both backed up and left out, nor have its rows or schemas chosen when left out."""
        both = [name for name in self.backup_databases if name in self.exclude_databases]
        if both:
            raise ValueError(f"{', '.join(map(repr, both))} is both in BACKUP_DATABASES and EXCLUDE_DATABASES; "
                             "name each database in one of them only")
        for variable, selection in (("EXCLUDE_TABLE_DATA", self.exclude_table_data),
                                    ("BACKUP_SCHEMAS", self.backup_schemas)):
            excluded = [name for name in selection if name in self.exclude_databases]
            if excluded:
                raise ValueError(f"{variable} names {', '.join(map(repr, excluded))}, which EXCLUDE_DATABASES "
                                 "leaves out; remove it from one of them")
        return self

    @model_validator(mode="after")
    def _complete_s3(self) -> Settings:
        if self.s3_bucket and (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together; set both or neither")
        if self.s3_sse == "aws:kms" and not self.s3_sse_kms_key_id:
            raise ValueError("S3_SSE=aws:kms needs S3_SSE_KMS_KEY_ID")
        if self.s3_object_lock_days and not self.s3_bucket:
            raise ValueError("S3_OBJECT_LOCK_DAYS needs S3_BUCKET (a bucket created with Object Lock enabled)")
        return self

    # --- derived values --------------------------------------------------------------
    @cached_property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def uses_docker_exec(self) -> bool:
        return bool(self.postgres_container)

    @property
    def offsite_enabled(self) -> bool:
        return bool(self.s3_bucket)

    @property
    def encryption(self) -> age.Encryption | None:
        """How new local artifacts are encrypted (and so their S3 copies, the same bytes); None when
        ENCRYPT_RECIPIENTS is not set or ENCRYPT_SCOPE=offsite (see offsite_encryption)."""
        if not self.encrypt_recipients or self.encrypt_scope == "offsite":
            return None
        return age.Encryption(tuple(self.encrypt_recipients))

    @property
    def offsite_encryption(self) -> age.Encryption | None:
        """With ENCRYPT_SCOPE=offsite: how the plain local artifacts are encrypted on their way to
        S3 (never decrypted to disk); None otherwise."""
        if not self.encrypt_recipients or self.encrypt_scope != "offsite":
            return None
        return age.Encryption(tuple(self.encrypt_recipients))

    @property
    def decryption(self) -> age.Decryption:
        return age.Decryption(self.encrypt_identity_file)

    @property
    def signing_key(self) -> bytes | None:
        """The MANIFEST_SIGNING_KEY as bytes; None when manifests are not signed."""
        if self.manifest_signing_key is None:
            return None
        return self.manifest_signing_key.get_secret_value().encode("utf-8")

    @property
    def replication_login(self) -> tuple[str, str | None]:
        """User and password of the WAL receiver and base backups: REPLICATION_USER and
        REPLICATION_PASSWORD, each defaulting to POSTGRES_USER and POSTGRES_PASSWORD."""
        password = self.replication_password or (None if self.replication_user else self.postgres_password)
        return self.replication_user or self.postgres_user, password.get_secret_value() if password else None

    def trigger(self, expression: str) -> CronTrigger | None:
        """The trigger of a schedule setting, or None when it is 'off'."""
        if is_disabled(expression):
            return None
        return parse_crontab(expression, self.timezone)

    @property
    def notify_url_list(self) -> list[str]:
        """The Apprise URLs of NOTIFY_URLS (or its _FILE), in order; secrets all."""
        return split_urls(self.notify_urls.get_secret_value()) if self.notify_urls is not None else []

    def url_passwords(self) -> list[str]:
        """Passwords written into DOCKER_HOST or S3_ENDPOINT_URL (scheme://user:password@host)."""
        return [password for password in (url_password(self.docker_host), url_password(self.s3_endpoint_url))
                if password]

    def masked(self) -> dict[str, object]:
        """Every setting by its variable name, secrets (and passwords inside URLs) replaced by '***'."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif isinstance(value, str) and url_password(value):
                value = value.replace(f":{url_password(value)}@", ":***@", 1)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            shown[name.upper()] = value
        return shown


def parse_table_selection(text: str) -> dict[str, tuple[str, ...]]:
    """``authdb:users;admindb:documents,knowledge_bases`` -> {db: (table, ...)}."""
    return parse_per_database(text, *PER_DATABASE_SYNTAX["backup_tables"])


def parse_per_database(text: str, item: str, example: str) -> dict[str, tuple[str, ...]]:
    """``db:name,name;db2:name`` -> {db: (name, ...)}; ``item`` and ``example`` word the error."""
    selection: dict[str, tuple[str, ...]] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        database, sep, tables = part.partition(":")
        names = tuple(table.strip() for table in tables.split(",") if table.strip())
        if not sep or not database.strip() or not names:
            raise ValueError(
                f"{part!r} is not DATABASE:{item}[,{item}...]; separate databases with ';', e.g. {example}"
            )
        selection[database.strip()] = selection.get(database.strip(), ()) + names
    return selection


def url_password(text: str | None) -> str | None:
    """The password of a URL's user information, if it has one."""
    if not text or "://" not in text:
        return None
    try:
        return urlsplit(text).password or None
    except ValueError:
        return None


def is_http_url(text: str) -> bool:
    """An http:// or https:// URL with a host name and, if any, a valid port."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and text == text.strip()


def _read_secret_file(name: str, path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ValueError(f"{name.upper()}_FILE: cannot read {path}: {error.strerror}") from None
    if not secret.strip():
        # A secret that was never filled in: as an empty password it would fail much later and
        # far from its cause (or, with trust authentication, not at all).
        raise ValueError(f"{name.upper()}_FILE: {path} is empty; put the secret in it, or unset {name.upper()}_FILE")
    return secret


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, naming the variable and what is allowed; inputs are never shown."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "bool_parsing":
            message = "must be on or off (also true/false, yes/no, 1/0), or empty for the default"
        location = problem["loc"]
        if location:
            lines.append(f"{str(location[0]).upper()}: {message}")
        else:
            lines.append(message)
    return lines


def load_settings() -> Settings:
    """Read and validate the environment, or raise SettingsError with one line per problem."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def environment_variable_names() -> list[str]:
    """Every variable the settings model reads, for docs and the example file check."""
    return [name.upper() for name in Settings.model_fields]
