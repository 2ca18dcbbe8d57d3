"""The few named errors the CLI turns into one-line messages and exit codes."""

from __future__ import annotations


class ChromaticaError(Exception):
    """Base of every error the user should see as one line; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(ChromaticaError):
    """Bad arguments or a bad query."""

    exit_code = 2


class ConfigError(ChromaticaError):
    """A config file with an unknown key or a bad value."""

    exit_code = 2


class DatasetError(ChromaticaError):
    """The folder to index is missing, unreadable, or holds no images."""


class IndexDirError(ChromaticaError):
    """The index directory cannot be created, written, read, or was built with other settings."""


class IndexDirBusy(IndexDirError):
    """Another process (the daemon) holds the catalog for writing."""


class DaemonNotRunning(ChromaticaError):
    """No live daemon answers for this index directory."""

    exit_code = 3


class ImageError(Exception):
    """One image could not be indexed; `reason` is what goes into the failure report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
