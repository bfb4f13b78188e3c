"""Transitional: the names daemon/commands/restore.py and daemon/restore_test.py still import
from here. Their homes are ``restorer`` (Restorer) and ``base`` (SYSTEM_DATABASES, quote_ident);
delete this module once those two callers import from there."""

from daemon.restore.base import SYSTEM_DATABASES, quote_ident
from daemon.restore.restorer import Restorer

__all__ = ["SYSTEM_DATABASES", "Restorer", "quote_ident"]
