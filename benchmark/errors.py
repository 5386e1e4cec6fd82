"""Errors that reach the user as one line and a non-zero exit (see benchmark/cli.py)."""

import sys

from medprivbench.datasets.base import DataError


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what would be valid."""


USER_ERRORS = (ConfigError, DataError)


def fail(program: str, message: str) -> None:
    """End a command with its one error line on stderr and exit status 2."""
    print(f"{program}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
