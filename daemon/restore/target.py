"""The server a restore writes to: the psql command line for it, its client tools, and the SQL
run there to create, drop and look up databases."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.errors import PgBackupError
from daemon.logs import get_logger
from daemon.restore.base import MAINTENANCE_DB, RestoreFailed, quote_ident, quote_literal
from daemon.sources.postgres import PostgresServer, conninfo_dbname

log = get_logger(__name__)

_SUBSCRIPTIONS_SQL = (
    "SELECT quote_ident(subname) FROM pg_subscription "
    "WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# What DROP DATABASE ... WITH (FORCE) refuses even so, by database: a template, prepared transactions.
_UNDROPPABLE_SQL = (
    "SELECT d.datname || ': ' || CASE WHEN d.datistemplate THEN 'a template database (ALTER DATABASE ' "
    "|| quote_ident(d.datname) || ' IS_TEMPLATE false first)' ELSE 'prepared transactions (COMMIT PREPARED or "
    "ROLLBACK PREPARED them first)' END FROM pg_database d WHERE d.datname IN ({names}) "
    "AND (d.datistemplate OR EXISTS (SELECT 1 FROM pg_prepared_xacts x WHERE x.database = d.datname)) ORDER BY 1"
)


@dataclass
class TargetServer:
    postgres: PostgresServer

    def psql(self, database: str, *, single_transaction: bool = False) -> list[str]:
        """psql that stops at the first SQL error (``ON_ERROR_STOP=1``)."""
        options = ["-X", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1"]
        if single_transaction:
            options.append("--single-transaction")
        return self.postgres.tool("psql", *options, f"--dbname={conninfo_dbname(database)}")

    def run_tool(self, program: str, *args: str) -> bytes:
        """Run a client tool (pg_restore) next to the server; its stdout."""
        return self.postgres.transport.run(self.postgres.tool(program, *args), self.postgres.environment())

    def query(self, sql: str, database: str = MAINTENANCE_DB) -> list[str]:
        return self.postgres.query(sql, database)

    def execute(self, sql: str, database: str = MAINTENANCE_DB) -> None:
        self.postgres.query(sql, database)

    def create_database(self, name: str, options: bytes | None = None) -> None:
        """A new database, with the backup's encoding, locale and template when it has them."""
        if options is None:
            self.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
        else:
            text = options.decode("utf-8").rstrip(";")
            try:
                self.execute(f"CREATE DATABASE {quote_ident(name)} {text}")
            except PgBackupError as error:
                raise RestoreFailed(
                    f"could not create a database as the backup does ({text}): {error}. The server needs the "
                    "same encoding, locale provider and locale (and tablespace, if one is named)"
                ) from None

    def drop_database(self, name: str) -> None:
        log.warning("dropping_database", database=name)
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def replace_database(self, name: str) -> None:
        """Drop a database the user confirmed replacing. Its subscriptions are detached from their
        replication slots and dropped first (DROP DATABASE refuses a database that has one): the
        slots stay on the publisher, where the backup's own copy of each subscription, restored
        disabled with the same slot name, can take up replication again once enabled."""
        for subscription in self.drop_subscriptions(name):
            log.warning("subscription_detached", database=name, subscription=subscription,
                        hint="its replication slot stays on the publisher")
        self.drop_database(name)

    def undroppable(self, names: list[str]) -> list[str]:
        """Why each of ``names`` that DROP DATABASE would refuse cannot be dropped (none: [])."""
        if not names:
            return []
        return self.query(_UNDROPPABLE_SQL.format(names=", ".join(map(quote_literal, names))))

    def drop_staging(self, name: str) -> str | None:
        """Drop a staging database, its subscriptions first; None once it is gone, else why it is not.

        DROP DATABASE refuses a database that has a subscription, even WITH (FORCE), and a
        restored subscription names the replication slot of the original one: it is detached
        from that slot (slot_name = NONE) before it is dropped, so that slot is never touched.
        A failure here is logged and returned, never raised: it must not hide why the restore
        stopped.
        """
        try:
            self.drop_subscriptions(name)
        except PgBackupError as error:
            log.warning("staging_subscriptions_not_dropped", database=name, error=str(error))
        try:
            self.drop_database(name)
        except PgBackupError as error:
            log.error("staging_database_left", database=name, error=str(error))
            return str(error)
        return None

    def drop_subscriptions(self, database: str) -> list[str]:
        """Drop the subscriptions of ``database`` without touching a replication slot; their names."""
        subscriptions = self.query(_SUBSCRIPTIONS_SQL, database)
        for subscription in subscriptions:
            self.execute(f"ALTER SUBSCRIPTION {subscription} DISABLE", database)
            self.execute(f"ALTER SUBSCRIPTION {subscription} SET (slot_name = NONE)", database)
            self.execute(f"DROP SUBSCRIPTION {subscription}", database)
        return subscriptions

    def all_databases(self) -> list[str]:
        return self.query("SELECT datname FROM pg_database")

    def table_exists(self, database: str, qualified: str) -> bool:
        return self.query(f"SELECT to_regclass({quote_literal(qualified)}) IS NOT NULL", database) == ["t"]

    def where(self) -> str:
        """The server as a confirmation names it."""
        return self.postgres.transport.description if not self.postgres.options.host else (
            f"{self.postgres.options.host}:{self.postgres.options.port}")
