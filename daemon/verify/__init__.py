"""Proving backups restorable: `pgbackup verify` and the scheduled restore test.

Modules: ``checks`` (what needs no server: sha256, decompression, row counts, table of
contents), ``throwaway`` (the throwaway PostgreSQL container and the restores into it),
``verify`` (the verb's checks and report), ``restore_test`` (the scheduled job, its metrics and
notification)."""
