"""Hooks: HOOK_BEFORE_BACKUP, HOOK_AFTER_BACKUP and HOOK_ON_FAILURE, shell commands run in the
sidecar once per run.

- ``environment``: what a hook is told (PGBACKUP_KIND, _TARGET, _STATUS, _FILES, ...) and the
  allow-list that keeps the sidecar's own environment, which holds the secrets, out of it.
- ``command``: one command run with ``/bin/sh -c`` in its own process group: output kept to a
  bounded tail, the whole group killed when it outlives HOOK_TIMEOUT_SECONDS.
- ``install``: the hooks registered on the run extensions; a failing before-hook fails the run,
  a failing after- or on-failure hook is logged and counted and changes nothing else.
"""
