"""Slow S3 must not slow the dump: real PostgreSQL, real SeaweedFS behind a TCP relay that
throttles the upload, the daemon's own runner."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

from daemon.backup.outcome import RunOutcome
from daemon.manifest import scan_manifests
from tests.support.postgres import PgServer
from tests.support.runner import equipped
from tests.support.throttle import ThrottledProxy

MiB = 1024 * 1024
# S3 far slower than any disk while the dump runs, even on a busy machine (a dump there writes
# a few MiB/s); fast again once it has ended, so that the upload's end does not take minutes.
SLOW_S3 = 256 * 1024  # bytes per second through the relay
FAST_S3 = 1024 * MiB


def fill_with_noise(source: PgServer, database: str, megabytes: int) -> None:
    """A table of hexadecimal noise (it compresses to about half) of ``megabytes`` MB."""
    rows = megabytes * 1000
    source.psql(
        "CREATE TABLE noise AS SELECT g AS id, (SELECT string_agg(md5(random()::text || g || n), '') "
        f"FROM generate_series(1, 32) AS n) AS body FROM generate_series(1, {rows}) AS g;",
        db=database,
    )


def dump_sessions(source: PgServer) -> int:
    """The sessions the sidecar's tools opened (PGAPPNAME=pgbackup), pg_dump's among them."""
    return int(source.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbackup'"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def object_sha256(s3_server, key: str) -> str:
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


class TestSlowS3:
    def test_the_dump_ends_at_disk_speed_and_the_upload_catches_up(self, postgres_factory, s3_server, tmp_path):
        """With S3 throttled to 256 KiB/s, pg_dump's session (and its ACCESS SHARE locks) is gone before a
        quarter of the ~100 MiB artifact has gone up (before the fix: once all but the ~50 MiB held in memory
        had): an ACCESS EXCLUSIVE lock is granted at once while the upload goes on; once S3 is fast again the
        upload completes with the artifact's sha256 and the manifest records the offsite copy as complete."""
        source = postgres_factory(databases=("bigdb",))
        fill_with_noise(source, "bigdb", 170)
        endpoint = urlparse(s3_server.endpoint_url)
        with ThrottledProxy(endpoint.hostname, endpoint.port, SLOW_S3) as proxy:
            runner, _ = equipped(source, tmp_path / "backups", s3_endpoint_url=proxy.url, s3_bucket=s3_server.bucket,
                                 aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
                                 compression_level=1)
            results: list[RunOutcome] = []
            backup = threading.Thread(target=lambda: results.append(runner.run("database", "bigdb")))
            backup.start()
            try:
                wait_until(lambda: dump_sessions(source) > 0, 60, "pg_dump connected")
                wait_until(lambda: dump_sessions(source) == 0, 600, "pg_dump finished")
                uploaded_when_the_dump_ended = proxy.bytes_up
                uploading_when_the_dump_ended = backup.is_alive()
                source.psql("BEGIN; LOCK TABLE noise IN ACCESS EXCLUSIVE MODE NOWAIT; COMMIT;", db="bigdb")
            finally:
                proxy.set_rate(FAST_S3)
                backup.join(600)

        (result,) = results
        assert result.ok, result.failures
        (artifact,) = result.artifacts
        assert uploading_when_the_dump_ended
        assert uploaded_when_the_dump_ended < artifact.size_bytes / 4, (
            f"pg_dump ran until {uploaded_when_the_dump_ended / MiB:.0f} of {artifact.size_bytes / MiB:.0f} MiB "
            "had gone up to S3"
        )
        (manifest,) = scan_manifests(tmp_path / "backups").manifests
        assert manifest.offsite["status"] == "complete"
        assert manifest.offsite["sha256"] == manifest.sha256
        assert object_sha256(s3_server, manifest.offsite["key"]) == manifest.sha256
