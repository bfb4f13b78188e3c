"""What a restore may change, each by name, and only where it is seen to happen.

An allowance is applied to the image a restore is compared with: it first asserts that the
restored server shows exactly the allowed change (so an allowance that no longer happens, or
happens differently, fails the test too), then makes the expected image say the same.
Everything else must be equal.
"""

from __future__ import annotations

import re
from dataclasses import replace

from tests.support.fidelity.image import DatabaseImage, ServerImage

_PASSWORD = re.compile(r" PASSWORD '[^']*'")


def subscriptions_come_back_disabled(expected: ServerImage, actual: ServerImage) -> ServerImage:
    """pg_dump writes every subscription with `connect = false`, so a restored subscription is
    disabled, whatever it was (the reference restore does the same): it would otherwise start
    replicating into the restored database at once. Re-enable it with ALTER SUBSCRIPTION ... ENABLE
    once the publisher and its slot are right. Everything else about it (connection, slot name,
    publications, options, owner, comment) comes back."""
    databases = {}
    for name, want in expected.databases.items():
        got = actual.databases.get(name)
        if got is None:
            databases[name] = want
            continue
        subscriptions = {}
        for subscription, state in want.subscriptions.items():
            restored = got.subscriptions.get(subscription)
            if state.get("subenabled") and restored is not None:
                assert restored.get("subenabled") is False, (
                    f"subscription {subscription} in {name!r} came back enabled: the allowance is out of date")
                state = {**state, "subenabled": False}
            subscriptions[subscription] = state
        databases[name] = replace(want, subscriptions=subscriptions)
    return replace(expected, databases=databases)


def connecting_role_keeps_its_password(expected: ServerImage, actual: ServerImage, role: str,
                                       own_password: str) -> ServerImage:
    """pgbackup restores every role's password from the backup except the one of the role it
    connects as (POSTGRES_USER), which keeps the target server's: the backup's would lock the
    running restore and pgbackup itself out (README, runbook scenario 1). ``own_password`` is that
    role's stored password on the target before the restore; it must still be there."""
    prefix = f"ALTER ROLE {role} WITH "
    restored = [line for line in actual.globals if line.startswith(prefix)]
    assert len(restored) == 1, f"no single {prefix}... line in the restored server's globals: {restored}"
    assert _password_of(restored[0]) == own_password, (
        f"role {role} does not have the target's own password after the restore: {restored[0]}")
    lines = tuple(_with_password(line, own_password) if line.startswith(prefix) else line
                  for line in expected.globals)
    return replace(expected, globals=lines)


def password_line(image: ServerImage, role: str) -> str:
    """The stored password (its PASSWORD clause) of ``role`` in the image's globals."""
    prefix = f"ALTER ROLE {role} WITH "
    (line,) = [line for line in image.globals if line.startswith(prefix)]
    return _password_of(line)


def _password_of(line: str) -> str:
    match = _PASSWORD.search(line)
    return match.group(0) if match else ""


def _with_password(line: str, password: str) -> str:
    assert _PASSWORD.search(line), f"the source's role has no password: {line}"
    return _PASSWORD.sub(lambda _: password, line)


def only(image: ServerImage, *databases: str) -> ServerImage:
    """The image with just the named databases (and the globals)."""
    return replace(image, databases={name: image.databases[name] for name in databases})


def database(image: ServerImage, name: str) -> DatabaseImage:
    return image.databases[name]
