#!/opt/pgbackup/bin/python
"""`pgbackup` inside the image: the daemon's command line, run as the user pgbackup.

The container starts as root only so that this wrapper can pick the groups it needs:
the group that owns the Docker socket (its gid differs from host to host) is added,
then root is dropped for uid/gid 10001. `pgbackup run` and
`docker compose exec pgbackup pgbackup ...` both pass through here, so every file
in the backup directory belongs to the same user.

It stays root, and says why on stderr, when dropping root would break the daemon: a
Docker socket without group read/write, or a backup directory that uid 10001 cannot
write and that is not an empty directory it may take over. Started as any other
user (compose `user:`), it changes nothing.
"""

import os
import stat
import sys
from pathlib import Path

APP_UID = APP_GID = 10001
APP_HOME = "/home/pgbackup"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def say(message: str) -> None:
    print(f"pgbackup-entrypoint: {message}", file=sys.stderr)


def docker_socket_group() -> tuple[int | None, str | None]:
    """(gid to add, None) or (None, reason to stay root)."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if not host.startswith("unix://"):
        return None, None
    path = host.removeprefix("unix://")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, None
    if not stat.S_ISSOCK(info.st_mode):
        return None, None
    if info.st_mode & 0o060 != 0o060:
        return None, f"{path} grants its group no read/write (mode {stat.filemode(info.st_mode)})"
    return info.st_gid, None


def backup_dir_problem(path: Path) -> str | None:
    """Make an empty, foreign backup directory ours; describe one we cannot use."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_uid == APP_UID:
        return None
    if info.st_mode & 0o002:
        return None
    if not any(path.iterdir()):
        # A bind mount that Docker just created (root-owned and empty).
        os.chown(path, APP_UID, APP_GID)
        return None
    return f"{path} belongs to uid {info.st_uid} and is not empty; chown -R {APP_UID}:{APP_GID} it to run unprivileged"


def drop_root() -> None:
    gid, socket_problem = docker_socket_group()
    problem = socket_problem or backup_dir_problem(Path(os.environ.get("BACKUP_DIR") or "/backups"))
    if problem:
        say(f"running as root: {problem}")
        return
    os.setgroups([gid] if gid is not None else [])
    os.setgid(APP_GID)
    os.setuid(APP_UID)
    os.environ["HOME"] = APP_HOME
    os.environ["USER"] = os.environ["LOGNAME"] = "pgbackup"


if __name__ == "__main__":
    if os.getuid() == 0:
        drop_root()
    from daemon.cli import main

    sys.exit(main())
