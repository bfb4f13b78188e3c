"""What follows a backup run: offsite copies, retention, run logs and the run's notification.

Modules: ``install`` (registers them on the run extensions; the retention job), ``offsite``
(S3 sinks, the backlog, offsite status in manifests, the offsite listing), ``retention`` (the
pure policy: manifests and ``now`` in, KEEP/DELETE with a reason out), ``tiers`` (the GFS
calendar behind RETENTION_KEEP_*), ``prune`` (the sweep
that carries the policy out over BACKUP_DIR, the S3 prefix and the run logs), ``runlog`` (each
run's log lines in BACKUP_DIR/backup_*.log)."""
