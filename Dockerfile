# pg-backup-sidecar: the backup daemon plus PostgreSQL client tools.
#
# With registry access:   docker compose build
# Without one (see docs/deployment.md): a local Debian base with python3 and
# postgresql-client-15 as BASE_IMAGE, and the Python dependencies as wheels in
# .cache/wheels/ of the build context; the build then needs no network at all.

ARG BASE_IMAGE=python:3.11-slim

# --- the daemon in a virtualenv ---------------------------------------------
FROM ${BASE_IMAGE} AS app
# Marks the intermediate image the legacy builder keeps, so it can be pruned.
LABEL org.pgbackup.stage=build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
# tzdata: IANA time zones for TZ; slim images have no /usr/share/zoneinfo.
RUN set -eu; \
    python3 -m venv /opt/pgbackup; \
    if ls /src/.cache/wheels/*.whl >/dev/null 2>&1; then \
        /opt/pgbackup/bin/pip install --no-index --find-links=/src/.cache/wheels /src tzdata; \
    else \
        /opt/pgbackup/bin/pip install /src tzdata; \
    fi; \
    /opt/pgbackup/bin/pip uninstall --yes pip setuptools >/dev/null 2>&1 || true; \
    find /opt/pgbackup -name __pycache__ -prune -exec rm -rf {} +

# --- runtime ----------------------------------------------------------------
FROM ${BASE_IMAGE}

# TCP mode needs client tools at least as new as the server; the daemon picks the
# matching major, else the oldest newer one. They come from apt.postgresql.org,
# unless the base image already brings its own (the registry-free local base
# has postgresql-client-15), in which case nothing is downloaded.
ARG PG_CLIENT_MAJORS="15 16 17 18"
RUN set -eu; \
    if ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1; then \
        echo "client tools from the base image: $(ls /usr/lib/postgresql)"; \
    else \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get update; \
        apt-get install --yes --no-install-recommends ca-certificates postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
        apt-get install --yes --no-install-recommends tini \
            $(for major in $PG_CLIENT_MAJORS; do printf 'postgresql-client-%s ' "$major"; done); \
        apt-get purge --yes --auto-remove postgresql-common; \
        rm -rf /var/lib/apt/lists/* /etc/apt/sources.list.d/pgdg*; \
    fi; \
    for major in $PG_CLIENT_MAJORS; do \
        [ ! -x "/usr/lib/postgresql/$major/bin/pg_dump" ] || "/usr/lib/postgresql/$major/bin/pg_dump" --version; \
    done

# The unprivileged user (see docker/pgbackup.py); written directly because a
# minimal base may lack useradd.
RUN set -eu; \
    echo 'pgbackup:x:10001:10001:pg-backup-sidecar:/home/pgbackup:/usr/sbin/nologin' >>/etc/passwd; \
    echo 'pgbackup:x:10001:' >>/etc/group; \
    mkdir -p /home/pgbackup /backups; \
    chown 10001:10001 /home/pgbackup /backups; \
    if command -v tini >/dev/null; then \
        ln -s "$(command -v tini)" /usr/local/bin/pgbackup-init; \
    else \
        printf '#!/bin/sh\n[ "$1" != -- ] || shift\nexec "$@"\n' >/usr/local/bin/pgbackup-init; \
        chmod 0755 /usr/local/bin/pgbackup-init; \
    fi

COPY --from=app /opt/pgbackup /opt/pgbackup
COPY docker/pgbackup.py /usr/local/bin/pgbackup
RUN chmod 0755 /usr/local/bin/pgbackup && /usr/local/bin/pgbackup --version

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 9877
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('METRICS_PORT') or '9877'), timeout=8)"]
# PID 1 is tini when the base has it (it forwards SIGTERM and reaps children).
ENTRYPOINT ["/usr/local/bin/pgbackup-init", "--"]
CMD ["pgbackup", "run"]
