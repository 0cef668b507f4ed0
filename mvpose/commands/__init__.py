"""Subcommands of the ``mvpose`` command line, one module each.

Each module has ``register(subparsers)``, which adds its parser(s) with ``set_defaults(func=...)``;
``func(args) -> int`` is the exit status. Heavy imports stay inside ``func``. List the module in
:data:`mvpose.cli.COMMAND_MODULES`.
"""
