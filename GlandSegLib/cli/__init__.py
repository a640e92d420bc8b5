"""The `glandseg` command line: `main` parses, dispatches and turns every user error into one line and an exit code.

Uses every layer; the default-model tools (`glandseg phantom`) only when they are installed.
"""

from GlandSegLib.cli.main import build_parser, main  # noqa: F401
