"""Exception types shared by the whole package.

Every error caused by user input names the offending file (or option) and says what is wrong, so that the
CLI can print it as one line and exit with a nonzero status.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CheckpointError", "ConfigError", "CorrvosError", "DataError"]


class CorrvosError(Exception):
    """Base class of all corrvos errors that the CLI reports without a traceback."""


class DataError(CorrvosError, ValueError):
    """Bad input data: a missing, corrupt or inconsistent image, mask or dataset folder."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class CheckpointError(CorrvosError, ValueError):
    """A checkpoint that cannot be loaded: unsafe pickle, wrong keys or wrong shapes."""


class ConfigError(CorrvosError, ValueError):
    """An invalid configuration value, YAML file or ``--set`` override."""
