"""Times written by a clock that may have been wrong.

A backup's start time comes from the clock of the process that took it. A clock that jumped
ahead for one run leaves a backup dated in the future; measured from it, everything else
looks old (retention), it looks fresh for a year (health, metrics) and it looks newest
(restore --latest). Every reader asks ``is_future`` with its own ``now`` before trusting one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# How far a time may lie after ``now`` and still be believed: a manual run on a host whose
# clock is a little off is no clock fault.
FUTURE_TOLERANCE = timedelta(minutes=5)


def is_future(moment: datetime, now: datetime) -> bool:
    """Whether ``moment`` lies after ``now`` by more than FUTURE_TOLERANCE."""
    return moment - now > FUTURE_TOLERANCE


def describe_future(moment: datetime, now: datetime) -> str:
    """'2027-12-04T18:15:54+00:00, 365.0 days after now (2026-12-04T18:15:54+00:00)'."""
    return f"{moment.isoformat()}, {(moment - now).total_seconds() / 86400:.1f} days after now ({now.isoformat()})"
