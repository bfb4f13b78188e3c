"""The backup run: from a schedule or the CLI to artifacts on disk with their manifests.

Modules: ``runner`` (one run: lock, health, run log, each target's success or failure, the
after-run hooks), ``plans`` (which command produces each artifact), ``artifact`` (one artifact:
stream, compress, hash, write, commit, manifest), ``pipeline`` and ``compression`` (the writer
thread and parallel gzip), ``outcome`` (what a run produced), ``extensions`` (the typed hooks
features register: run wrappers, sinks, observers, after-run hooks, manifest listeners),
``observers`` (row counts of plain dumps)."""
