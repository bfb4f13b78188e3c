"""Sub-commands that features add to `pgbackup`, one module per feature.

Each module listed in FEATURE_COMMAND_MODULES defines
``add_commands(subparsers) -> dict[str, Callable[[Settings, argparse.Namespace], int]]``
which adds its parsers and returns the handler of each command name it added.
"""

FEATURE_COMMAND_MODULES: list[str] = []
FEATURE_COMMAND_MODULES.append("daemon.commands.retention")
FEATURE_COMMAND_MODULES.append("daemon.commands.volume")
FEATURE_COMMAND_MODULES.append("daemon.commands.restore")
