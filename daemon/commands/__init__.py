"""The `pgbackup` verbs, one module per verb (named after it); cli.py builds the parser from them.

Each module defines ``add_commands(subparsers) -> {verb: handler}``: it adds its parsers and
returns the handler of each verb it added. ``locking`` holds the backup lock for the verbs
that must not run beside a backup.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from daemon.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]
