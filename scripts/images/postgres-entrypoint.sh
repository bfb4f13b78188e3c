#!/bin/bash
# Entrypoint of the locally built pgbackup-local/postgres:15 and :17 images (the
# server's bin directory comes first in the image's PATH).
#
# Behaves like the entrypoint of the official postgres images for what this
# project needs: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, an initdb on
# an empty PGDATA, trust on the local socket, scram-sha-256 for TCP from
# anywhere, scripts in /docker-entrypoint-initdb.d, and postgres as PID 1
# running as the postgres user.
set -Eeuo pipefail

log() {
	printf 'pgbackup-entrypoint: %s\n' "$*" >&2
}

fail() {
	log "error: $*"
	exit 1
}

# "docker run IMAGE -c key=value" passes options to postgres.
if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

prepare_directories_as_root() {
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 3775 /var/run/postgresql
	# A volume that an older container filled may carry other owners inside.
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
}

check_settings() {
	if [ -n "${POSTGRES_PASSWORD:-}" ] || [ "${POSTGRES_HOST_AUTH_METHOD:-}" = trust ]; then
		return
	fi
	fail "the database is uninitialized and POSTGRES_PASSWORD is not set;
set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow every TCP connection without a password"
}

run_initdb() {
	local host_auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	local -a args=(--pgdata="$PGDATA" --username="$POSTGRES_USER" --auth-local=trust --auth-host="$host_auth")
	# POSTGRES_INITDB_ARGS is split on blanks on purpose, as upstream does.
	# shellcheck disable=SC2206
	args+=(${POSTGRES_INITDB_ARGS:-})
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		# The password file exists only while this one command runs.
		initdb "${args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
	else
		initdb "${args[@]}"
	fi
	printf '\n%s\n' "host all all all $host_auth" >>"$PGDATA/pg_hba.conf"
	printf '\n%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
}

# Runs SQL on the temporary, socket-only server started during initialization.
psql_during_init() {
	psql -X -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password "$@"
}

create_database() {
	if [ "$POSTGRES_DB" = postgres ]; then
		return
	fi
	psql_during_init --dbname postgres --set db="$POSTGRES_DB" <<-'SQL'
		CREATE DATABASE :"db";
	SQL
}

run_init_scripts() {
	local script
	for script in /docker-entrypoint-initdb.d/*; do
		[ -e "$script" ] || continue
		case "$script" in
		*.sh)
			log "running $script"
			# shellcheck source=/dev/null
			. "$script"
			;;
		*.sql) log "running $script"; psql_during_init --dbname "$POSTGRES_DB" -f "$script" ;;
		*.sql.gz) log "running $script"; gunzip -c "$script" | psql_during_init --dbname "$POSTGRES_DB" ;;
		*) log "ignoring $script" ;;
		esac
	done
}

initialize_cluster() {
	check_settings
	run_initdb
	# Listening on no TCP address keeps clients from seeing a half-made server.
	pg_ctl --pgdata="$PGDATA" --wait --silent \
		--options="-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start
	create_database
	run_init_scripts
	pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
	log "initialization finished; starting postgres"
}

main() {
	if [ "$1" != postgres ]; then
		exec "$@"
	fi
	export POSTGRES_USER="${POSTGRES_USER:-postgres}"
	export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	if [ "$(id -u)" = 0 ]; then
		prepare_directories_as_root
		export HOME=/var/lib/postgresql
		exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		initialize_cluster
	fi
	unset POSTGRES_PASSWORD
	exec "$@"
}

main "$@"
