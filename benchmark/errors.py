"""Errors that reach the user as one line and a non-zero exit (see benchmark/cli.py)."""

from medprivbench.datasets.base import DataError


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what would be valid."""


USER_ERRORS = (ConfigError, DataError)
