"""A table's own triggers held off while restored rows go back in, so the rows come back as the
backup has them: an ``updated_at = now()`` or audit trigger would otherwise rewrite or log every
one as new. Only user triggers are paused (foreign keys are still checked), only those enabled
now, and each is enabled again in the same transaction in the mode it had."""

from __future__ import annotations

from daemon.restore.base import quote_literal
from daemon.sources.postgres import PostgresServer

# pg_trigger.tgenabled of an enabled trigger -> how ALTER TABLE enables it in that mode again.
ENABLE_AS = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}

_ENABLED_USER_TRIGGERS_SQL = (
    "SELECT quote_ident(tgname) || ' ' || tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass({table}) "
    "AND NOT tgisinternal AND tgenabled <> 'D' ORDER BY tgname"
)


def paused_triggers(server: PostgresServer, database: str, qualified: str) -> tuple[str, str]:
    """The SQL that disables the table's enabled user triggers, and the SQL that enables them again."""
    rows = server.query(_ENABLED_USER_TRIGGERS_SQL.format(table=quote_literal(qualified)), database)
    triggers = [row.rsplit(" ", 1) for row in rows]
    pause = "".join(f"ALTER TABLE {qualified} DISABLE TRIGGER {name};\n" for name, _ in triggers)
    resume = "".join(f"ALTER TABLE {qualified} {ENABLE_AS[mode]} {name};\n" for name, mode in triggers)
    return pause, resume
