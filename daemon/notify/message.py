"""What a notification says: kind, target, size, duration, location and, on failure, the reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from daemon.backup.outcome import RunOutcome
from daemon.manifest import Manifest
from daemon.progress import human_bytes

SUCCESS = "success"
FAILURE = "failure"


@dataclass
class Notice:
    status: str  # success | failure
    kind: str
    run_id: str
    backups: list[dict] = field(default_factory=list)  # target, file, size_bytes, duration_seconds, location
    failures: list[dict] = field(default_factory=list)  # target, reason
    offsite_failures: list[dict] = field(default_factory=list)  # file, reason

    @property
    def failed(self) -> bool:
        return self.status == FAILURE

    def title(self) -> str:
        if self.failures:
            targets = ", ".join(failure["target"] for failure in self.failures)
            return f"pgbackup: {self.kind} backup FAILED ({targets})"
        if self.offsite_failures:
            return f"pgbackup: {self.kind} backup succeeded, but the offsite copy FAILED"
        return f"pgbackup: {self.kind} backup succeeded"

    def lines(self) -> list[str]:
        lines = []
        for backup in self.backups:
            lines.append(
                f"{self.kind} {backup['target']}: {backup['file']}, {human_bytes(backup['size_bytes'])} "
                f"in {backup['duration_seconds']:.1f} s, location {backup['location']}"
            )
        for failure in self.failures:
            lines.append(f"{self.kind} {failure['target']} failed: {failure['reason']}")
        for failure in self.offsite_failures:
            lines.append(f"offsite copy of {failure['file']} failed: {failure['reason']}")
        return lines

    def text(self) -> str:
        return "\n".join([self.title(), *self.lines()])

    def redacted(self, scrub: Callable[[str], str]) -> Notice:
        """A copy whose texts (reasons quote the tools' stderr; targets are names a user typed)
        pass through ``scrub``."""
        def scrubbed(records: list[dict]) -> list[dict]:
            return [{key: scrub(value) if isinstance(value, str) else value for key, value in record.items()}
                    for record in records]

        return replace(self, backups=scrubbed(self.backups), failures=scrubbed(self.failures),
                       offsite_failures=scrubbed(self.offsite_failures))

    def payload(self) -> dict:
        """The generic webhook's JSON body."""
        return {
            "source": "pgbackup",
            "status": self.status,
            "kind": self.kind,
            "run_id": self.run_id,
            "backups": self.backups,
            "failures": self.failures,
            "offsite_failures": self.offsite_failures,
            "text": self.text(),
        }


def location_of(manifest: Manifest) -> str:
    status = (manifest.offsite or {}).get("status")
    if status == "complete":
        return "local+s3"
    if status == "failed":
        return "local (s3 copy failed)"
    return "local"


def notice_for_run(outcome: RunOutcome, offsite_failures: list[dict] | None = None) -> Notice:
    """The notice for a finished run (a daemon.backup.outcome.RunOutcome)."""
    offsite_failures = list(offsite_failures or [])
    failed = bool(outcome.failures) or not outcome.artifacts or bool(offsite_failures)
    failures = [{"target": f.target, "reason": f.error} for f in outcome.failures]
    if not outcome.artifacts and not failures:
        failures.append({"target": "all", "reason": "the run produced no backup"})
    return Notice(
        status=FAILURE if failed else SUCCESS,
        kind=outcome.kind,
        run_id=outcome.run_id,
        backups=[
            {
                "target": manifest.target,
                "file": manifest.file,
                "size_bytes": manifest.size_bytes,
                "duration_seconds": round(manifest.duration_seconds, 3),
                "location": location_of(manifest),
            }
            for manifest in outcome.artifacts
        ],
        failures=failures,
        offsite_failures=offsite_failures,
    )
