"""Point-in-time recovery: continuous WAL streaming and base backups (docs/pitr.md).

- ``segments``: WAL file names and positions, gaps in the numbering (pure)
- ``backoff``: the wait before an exited receiver starts again (pure)
- ``prerequisites``: what the server lacks for streaming and the change that fixes it (pure)
- ``basetar``: start/stop position and timeline read from pg_basebackup's tar as it streams (pure)
- ``server``: the replication endpoint (resolved again on every start), the slot, the facts
- ``archive``: BACKUP_DIR/wal/: the spool, completed segments compressed, checksummed and
  moved in atomically with a record each; reading them back checked
- ``offsite``: the archive copied to S3 under <prefix>/wal/, file first, record last
- ``lag``: receive lag, retained WAL, the time up to which recovery is possible, their limits (pure)
- ``monitor``: the server polled for those every 15 s: metrics and /healthz
- ``remote``: those copies and the base backups' read back for a recovery, downloaded and checked
- ``window``: the recovery window (PITR_WINDOW_DAYS): which bases and WAL files go (pure)
- ``prune``: the archive's files for the retention sweep, deleted record first
- ``receiver``: pg_receivewal supervised: restarts with back-off, archive passes, metrics, /healthz
- ``base``: ``pgbackup backup base`` and SCHEDULE_BASE: pg_basebackup into an atomic artifact
- ``recovery``: a base backup and the archived WAL (local, else S3) into a volume, recovered to a point in time
- ``pitr``: ``pgbackup restore point-in-time``: the target read, the base chosen, refusals
- ``synchronous``: WAL_SYNCHRONOUS: what synchronous_standby_names makes commits wait for, what is
  wrong with it, what ``--apply`` changes (pure)
- ``sync_watch``: the daemon's check of it at start and every minute (logs, /healthz)
- ``setup``: ``pgbackup wal setup --apply``: the pg_hba.conf line, a reload, the slot and
  synchronous_standby_names
- ``status``: ``pgbackup wal status``: the archive summarized (pure) and the slot
- ``install``: the daemon's part: prerequisite check, receiver, monitor, base schedule, slot dropped when off
"""
