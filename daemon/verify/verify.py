"""`pgbackup verify`: prove an artifact restorable. Cheap checks first (checks.py), then a
restore into a throwaway container compared with the manifest (throwaway.py)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from daemon.errors import PgBackupError
from daemon.restore.selection import Selected, from_path
from daemon.settings import Settings
from daemon.verify.checks import static_checks
from daemon.verify.pitr_proof import PITR_RESULT, prove_recovery
from daemon.verify.throwaway import latest_backups, restore_into_throwaway

# Kinds whose restore is not a database restore, with what verify checks instead.
NOT_RESTORED_KINDS = {
    "volume": "a volume snapshot comes back with restore-volume; verify checks its sha256 and reads the whole tar",
    "table": "a backup of some tables needs the rest of its database (foreign keys, types); it comes back with "
             "restore table",
    "base": "a base backup comes back with restore point-in-time; verify checks its sha256 and reads the whole tar",
}


@dataclass
class VerifyResult:
    file: str
    checks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"FAILED: {self.error}"
        return f"{self.file}: {verdict}" + "".join(f"\n  - {check}" for check in self.checks)


def verify_selections(settings: Settings, selections: list[Selected], restore: bool = True) -> list[VerifyResult]:
    for selected in selections:
        if selected.manifest.encrypted:
            settings.decryption.identities(selected.manifest.file)  # exit 2 naming ENCRYPT_IDENTITY_FILE
    results, good = [], []
    for selected in selections:
        result = VerifyResult(selected.manifest.file)
        try:
            result.checks += static_checks(selected, decryption=settings.decryption)
            good.append((selected, result))
        except (PgBackupError, tarfile.TarError) as error:
            result.error = str(error)
        results.append(result)
    not_restorable = [(selected, result) for selected, result in good if selected.manifest.kind in NOT_RESTORED_KINDS]
    for selected, result in not_restorable:
        result.checks.append(f"not restored into a throwaway container ({NOT_RESTORED_KINDS[selected.manifest.kind]})")
    good = [(selected, result) for selected, result in good if selected.manifest.kind not in NOT_RESTORED_KINDS]
    if restore and good:
        try:
            outcomes = restore_into_throwaway(settings, [selected for selected, _ in good])
        except PgBackupError as error:
            for _, result in good:
                result.error = f"restore test could not run: {error}"
            return results
        for (_, result), outcome in zip(good, outcomes):
            if outcome.ok:
                result.checks.append(f"restored into a throwaway container in {outcome.seconds:.1f} s: "
                                     + outcome.detail.splitlines()[0])
            else:
                result.error = f"restore into a throwaway container failed: {outcome.detail}"
    return results


def verify_artifact(settings: Settings, path: Path, restore: bool = True) -> VerifyResult:
    return verify_selections(settings, [from_path(path, settings.signing_key)], restore)[0]


def verify_latest(settings: Settings, restore: bool = True) -> list[VerifyResult]:
    """The newest full backup and each database's newest dump; with WAL_STREAMING=on also the
    point-in-time recovery (verify/pitr_proof.py: WAL continuity, and with ``restore`` the newest
    base backup recovered with every WAL received)."""
    now = datetime.now(settings.timezone)
    selections = latest_backups(settings, now)
    if not selections and not settings.wal_streaming:
        raise PgBackupError(f"there is no backup with a manifest in {settings.backup_dir} to verify")
    results = verify_selections(settings, selections, restore) if selections else []
    if settings.wal_streaming:
        proof = prove_recovery(settings, now, recover=restore)
        results.append(VerifyResult(PITR_RESULT, proof.checks, proof.error))
    return results

