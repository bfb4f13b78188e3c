"""Zero loss with WAL_SYNCHRONOUS=on: what the server's ``synchronous_standby_names`` and
``synchronous_commit`` make a commit wait for, what is wrong with them, and the change that
``pgbackup wal setup --apply`` may make (pure).

The receiver connects with the application name ``pgbackup_wal``. A commit waits for it only
when the server cannot make up its synchronous standbys without it: it is named, there is no
``*``, and fewer other names than the number the server waits for (names are compared without
regard to case, quoted or not, as PostgreSQL does). The same wait is what hangs every commit
when the receiver is named and does not run: so the setting is applied only while the receiver
streams, never when WAL_SYNCHRONOUS is off, and never over a value that names other standbys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from daemon.wal.prerequisites import Finding

UNDO_SQL = "ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf();"
AUTO_CONF = "postgresql.auto.conf"  # where ALTER SYSTEM writes
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
_TOKEN = re.compile(r'\s*(?:(?P<quoted>"(?:[^"]|"")*")|(?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)'
                    r'|(?P<number>[0-9]+)|(?P<symbol>[(),*]))')


@dataclass(frozen=True)
class StandbyNames:
    """``synchronous_standby_names`` read: FIRST (priority) or ANY (quorum), how many, which."""

    method: str  # "FIRST" or "ANY"
    count: int
    names: tuple[str, ...]

    def text(self) -> str:
        return f"{self.method} {self.count} ({', '.join(_quote(name) for name in self.names)})"


class Dependency(Enum):
    """How the server's commits depend on the receiver."""

    EVERY_COMMIT = "every commit waits for the receiver"
    SOME_COMMITS = "commits wait for the receiver only when too few other standbys are connected"
    NONE = "commits never wait for the receiver"


@dataclass(frozen=True)
class CommitSettings:
    """The two server settings, as the sidecar's session sees them."""

    standby_names: str
    synchronous_commit: str
    source_file: str = ""  # where synchronous_standby_names is set ('' when unknown or not set)


@dataclass(frozen=True)
class Plan:
    """What ``wal setup --apply`` runs (``statements``, one at a time) and what it says about it."""

    statements: tuple[str, ...]
    text: str

    @property
    def changes(self) -> bool:
        return bool(self.statements)


def parse_standby_names(value: str) -> StandbyNames | None:
    """``synchronous_standby_names`` in any of PostgreSQL's forms (``a, b``; ``2 (a, b)``;
    ``FIRST 2 (a, b)``; ``ANY 1 (a, "B c")``; ``*``); None when empty (asynchronous)."""
    tokens = _tokens(value)
    if not tokens:
        return None
    method = tokens.pop(0)[1] if tokens[0][0] == "word" else None
    if len(tokens) > 1 and tokens[0][0] == "number" and tokens[1] == ("symbol", "("):
        if tokens[-1] != ("symbol", ")"):
            raise ValueError(f"synchronous_standby_names {value!r}: the list must end with ')'")
        return StandbyNames(method or "FIRST", int(tokens[0][1]), _names(tokens[2:-1], value))
    if method is not None:
        raise ValueError(f"synchronous_standby_names {value!r}: {method} must be followed by n (name, ...)")
    return StandbyNames("FIRST", 1, _names(tokens, value))


def receiver_dependency(names: StandbyNames | None, receiver: str) -> Dependency:
    """Whether a commit waits for ``receiver``'s flush always, sometimes or never."""
    if names is None:
        return Dependency.NONE
    named = any(_same(name, receiver) for name in names.names)
    wildcard = "*" in names.names
    if not named and not wildcard:
        return Dependency.NONE
    others = {name.lower() for name in names.names if not _same(name, receiver)}
    if named and not wildcard and len(others) < names.count:
        return Dependency.EVERY_COMMIT
    return Dependency.SOME_COMMITS


def names_only(names: StandbyNames | None, receiver: str) -> bool:
    """True when the value names the receiver and nothing else (the value ``--apply`` sets)."""
    return names is not None and all(_same(name, receiver) for name in names.names)


def without_receiver(names: StandbyNames, receiver: str) -> str:
    """The value with the receiver taken out (a suggestion; '' when nothing is left)."""
    rest = tuple(name for name in names.names if not _same(name, receiver))
    return StandbyNames(names.method, min(names.count, len(rest)), rest).text() if rest else ""


def set_sql(receiver: str) -> str:
    return f"ALTER SYSTEM SET synchronous_standby_names = '{receiver}'"


def commit_meaning(level: str) -> str:
    """What ``synchronous_commit = level`` means with the receiver as the synchronous standby."""
    return {
        "on": "a commit returns once the sidecar has written its WAL and flushed it to disk "
              "(pg_receivewal --synchronous reports the flush)",
        "remote_write": "a commit returns once the sidecar reports the WAL written; pg_receivewal reports it only "
                        "after flushing, so the wait is as long as with 'on', and the promise weaker: prefer 'on'",
        "remote_apply": "commits waiting for the receiver never return: pg_receivewal does not apply WAL",
        "local": "commits do not wait for any standby: no zero loss",
        "off": "commits do not even wait for the server's own disk, nor for any standby: no zero loss",
    }.get(level, f"unknown level {level!r}")


def assess_synchronous(commit: CommitSettings, receiver: str, *, wanted: bool, streaming: bool) -> list[Finding]:
    """What is wrong with the two settings for WAL_SYNCHRONOUS=``wanted`` and WAL_STREAMING=``streaming``
    (a blocking finding: zero loss is not in effect, or commits wait for a receiver they should not)."""
    names = parse_standby_names(commit.standby_names)
    dependency = receiver_dependency(names, receiver)
    findings = []
    shown = f"synchronous_standby_names is {commit.standby_names!r}"
    if wanted:
        findings += _zero_loss_findings(names, dependency, shown, receiver, commit.synchronous_commit)
    elif dependency is Dependency.EVERY_COMMIT:
        findings.append(_unwanted_wait(names, shown, receiver, streaming))
    elif dependency is Dependency.SOME_COMMITS and any(_same(name, receiver) for name in names.names):
        findings.append(Finding(False, f"{shown}: it names the WAL receiver although WAL_SYNCHRONOUS is off; "
                                f"{Dependency.SOME_COMMITS.value}", _undo_change(names, receiver)))
    if dependency is not Dependency.NONE and commit.synchronous_commit == "remote_apply":
        findings.append(Finding(True, f"synchronous_commit is 'remote_apply' and {shown}: "
                                f"{commit_meaning('remote_apply')}",
                                "ALTER SYSTEM SET synchronous_commit = 'on'; SELECT pg_reload_conf();"))
    return findings


def plan_apply(commit: CommitSettings, receiver: str, *, wanted: bool, receiver_streaming: bool) -> Plan | None:
    """The change ``wal setup --apply`` makes to synchronous_standby_names, or why it makes none
    (None: nothing to do). It sets the receiver only when WAL_SYNCHRONOUS is on, the value is
    empty and the receiver streams (else every commit would wait until it does); it resets a value
    that names only the receiver when WAL_SYNCHRONOUS is off and ALTER SYSTEM set it."""
    names = parse_standby_names(commit.standby_names)
    dependency = receiver_dependency(names, receiver)
    if wanted:
        if dependency is Dependency.EVERY_COMMIT:
            return None
        if names is not None:
            return Plan((), f"synchronous_standby_names is {commit.standby_names!r} (other standbys): not "
                        f"overwritten; change it yourself so that no commit can return without {receiver!r}")
        if commit.synchronous_commit == "remote_apply":
            return Plan((), f"synchronous_standby_names not set: synchronous_commit is 'remote_apply', and "
                        f"{commit_meaning('remote_apply')}")
        if not receiver_streaming:
            return Plan((), f"synchronous_standby_names not set yet: the receiver ({receiver!r}) does not stream, "
                        "and every commit would wait until it does; start the daemon with WAL_STREAMING=on and "
                        "WAL_SYNCHRONOUS=on, then run `pgbackup wal setup --apply` again")
        return Plan((set_sql(receiver), "SELECT pg_reload_conf()"),
                    f"synchronous_standby_names = '{receiver}' (ALTER SYSTEM), configuration reloaded: every "
                    "commit now waits until the sidecar has flushed its WAL; undo: " + UNDO_SQL)
    if dependency is not Dependency.EVERY_COMMIT:
        return None
    if not names_only(names, receiver):
        return Plan((), f"synchronous_standby_names is {commit.standby_names!r}: it names other standbys too, so "
                    f"it is not changed; take {receiver!r} out yourself: {_undo_change(names, receiver)}")
    if commit.source_file and not commit.source_file.endswith(AUTO_CONF):
        return Plan((), f"synchronous_standby_names is set in {commit.source_file}: remove it there and SELECT "
                    "pg_reload_conf() (or override it: ALTER SYSTEM SET synchronous_standby_names = ''; "
                    "SELECT pg_reload_conf();)")
    return Plan(("ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()"),
                "synchronous_standby_names reset (ALTER SYSTEM), configuration reloaded: commits no longer wait "
                "for the sidecar (WAL_SYNCHRONOUS is off)")


def _zero_loss_findings(names: StandbyNames | None, dependency: Dependency, shown: str, receiver: str,
                        level: str) -> list[Finding]:
    findings = []
    if dependency is Dependency.NONE:
        change = (f"{set_sql(receiver)}; SELECT pg_reload_conf(); (`pgbackup wal setup --apply` does it while the "
                  "receiver streams)" if names is None else
                  f"name {receiver!r} so that no commit can return without it (with other standbys: FIRST or ANY n "
                  f"with fewer than n other names)")
        findings.append(Finding(True, f"{shown}: commits do not wait for the sidecar, so WAL_SYNCHRONOUS=on has no "
                                "effect", change))
    elif dependency is Dependency.SOME_COMMITS:
        findings.append(Finding(True, f"{shown}: {Dependency.SOME_COMMITS.value}, so a commit can return before "
                                "the sidecar has its WAL", f"make {receiver!r} necessary: '{receiver}' alone, or "
                                "FIRST or ANY n with fewer than n other names and no '*'"))
    if level in ("local", "off"):
        findings.append(Finding(True, f"synchronous_commit is {level!r}: {commit_meaning(level)}",
                                "ALTER SYSTEM SET synchronous_commit = 'on'; SELECT pg_reload_conf(); (and no role "
                                "or database that sets it lower)"))
    return findings


def _unwanted_wait(names: StandbyNames, shown: str, receiver: str, streaming: bool) -> Finding:
    if streaming:
        problem = (f"{shown}: every commit waits for the WAL receiver although WAL_SYNCHRONOUS is off, and hangs "
                   "whenever the sidecar is down")
    else:
        problem = (f"{shown}: every commit waits for the WAL receiver, and with WAL_STREAMING off it does not run: "
                   "COMMITS ON THE SERVER HANG")
    return Finding(True, problem, _undo_change(names, receiver))


def _undo_change(names: StandbyNames, receiver: str) -> str:
    if names_only(names, receiver):
        return f"{UNDO_SQL} (`pgbackup wal setup --apply` does it)"
    return (f"ALTER SYSTEM SET synchronous_standby_names = '{without_receiver(names, receiver)}'; "
            "SELECT pg_reload_conf();")


def _tokens(value: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(value.rstrip()):
        match = _TOKEN.match(value, position)
        if match is None:
            raise ValueError(f"synchronous_standby_names {value!r}: cannot read {value[position:].strip()!r}")
        kind = match.lastgroup
        text = match.group(kind)
        if kind == "quoted":
            tokens.append(("name", text[1:-1].replace('""', '"')))
        elif kind == "word":
            keyword = text.upper() in ("ANY", "FIRST")
            tokens.append(("word", text.upper()) if keyword else ("name", text))
        else:
            tokens.append((kind, text))
        position = match.end()
    return tokens


def _names(tokens: list[tuple[str, str]], value: str) -> tuple[str, ...]:
    """name (, name)*: a name is an identifier, a quoted name, a number or '*'."""
    names = []
    for index, (kind, text) in enumerate(tokens):
        expect_name = index % 2 == 0
        if expect_name and (kind in ("name", "number") or (kind, text) == ("symbol", "*")):
            names.append(text)
        elif not expect_name and (kind, text) == ("symbol", ","):
            continue
        else:
            raise ValueError(f"synchronous_standby_names {value!r}: unexpected {text!r}")
    if not names or len(tokens) % 2 == 0:
        raise ValueError(f"synchronous_standby_names {value!r}: expected a list of names")
    return tuple(names)


def _same(name: str, receiver: str) -> bool:
    return name.lower() == receiver.lower()


def _quote(name: str) -> str:
    return name if name == "*" or _PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'
