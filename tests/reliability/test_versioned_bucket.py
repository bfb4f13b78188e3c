"""Also-item: in a versioned bucket, S3 retention's plain DELETE only added delete markers. The
expired copies stayed (as noncurrent versions, still stored and billed) while the sweep counted
them as deleted. Real SeaweedFS with versioning enabled, the real sweep.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.housekeeping.prune import sweep
from daemon.manifest import Manifest
from daemon.monitoring.metrics import Metrics
from daemon.settings import Settings
from daemon.storage.s3 import Bucket
from daemon.storage.s3_upload import MultipartUpload

UTC = ZoneInfo("UTC")
BUCKET = "pgbackup-versioned"


def put_copy(bucket: Bucket, file: str, days_ago: float) -> None:
    data = f"{file} {days_ago}".encode() * 100
    started = datetime.now(UTC) - timedelta(days=days_ago)
    manifest = Manifest(kind="full", target="all", file=file, size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                        finished_at=started + timedelta(seconds=2), server_version="15.8", format="plain",
                        compression="gzip")
    upload = MultipartUpload(bucket, file)
    upload.write(data)
    upload.complete(manifest)
    upload.upload_manifest(manifest)


def versions(s3_server, key: str) -> tuple[list[str], list[str]]:
    listing = s3_server.client().list_object_versions(Bucket=BUCKET, Prefix=key)
    own = lambda items: [item["VersionId"] for item in items or () if item["Key"] == key]  # noqa: E731
    return own(listing.get("Versions")), own(listing.get("DeleteMarkers"))


class TestRetentionInAVersionedBucket:
    def test_an_expired_copy_is_gone_with_no_delete_marker(self, s3_server, tmp_path):
        """The expired copy's versions are removed (no marker, no noncurrent bytes); the newest copy stays."""
        client = s3_server.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        settings = Settings(postgres_container="pgbackup-test-unused", backup_dir=tmp_path,
                            s3_endpoint_url=s3_server.endpoint_url, s3_bucket=BUCKET, s3_prefix="p",
                            aws_access_key_id=s3_server.access_key, aws_secret_access_key=s3_server.secret_key,
                            s3_retention_days=30)
        bucket = Bucket.from_settings(settings)
        put_copy(bucket, "backup_all_20261001_030000.sql.gz", 45)
        put_copy(bucket, "backup_all_20261124_030000.sql.gz", 1)
        metrics = Metrics()

        report = sweep(settings, metrics, datetime.now(UTC), open_bucket=lambda: bucket)

        assert report.errors == []
        for key in ("p/backup_all_20261001_030000.sql.gz", "p/backup_all_20261001_030000.sql.gz.manifest.json"):
            assert versions(s3_server, key) == ([], []), key
        for key in ("p/backup_all_20261124_030000.sql.gz", "p/backup_all_20261124_030000.sql.gz.manifest.json"):
            kept, markers = versions(s3_server, key)
            assert len(kept) == 1 and markers == [], key
        assert metrics.registry.get_sample_value(
            "pgbackup_retention_deleted_total", {"kind": "full", "location": "s3"}) == 1
