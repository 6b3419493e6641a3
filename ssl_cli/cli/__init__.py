"""The ``sslkit`` command line: one module per group of commands, each a thin layer that parses,
calls one library function and prints (see :mod:`sslkit.cli.app` for what they share).

Commands are listed in ``--help`` in the order their modules are imported here.
"""
# isort: skip_file

from sslkit.cli.app import app
from sslkit.cli import simulate, tdoa, locate, train, imports, seld, bench  # noqa: F401  (registers the commands)

__all__ = ["app"]
