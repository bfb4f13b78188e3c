"""Snapshots of the PostgreSQL data volume: taken with the server cleanly stopped, written
like every other artifact, restored or cloned into another volume with owners and modes kept.

Modules: ``tarscan`` (reads tar headers as the stream passes), ``containers`` (which
containers to stop, the record of stopped ones, stopping and starting them), ``helper``
(the short-lived helper container that reads or fills a volume through the Docker
archive API), ``snapshot`` (the volume job), ``transfer`` (restore and clone),
``restart_policy`` (when stopped containers are started again: the record's expiry, the
back-off), ``supervisor`` (starts them, retrying, and reports a database left down),
``install`` (the daemon's schedule, health allowance, downtime gauge and supervisor job)."""
