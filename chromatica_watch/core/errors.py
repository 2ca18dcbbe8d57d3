"""The few named errors the CLI turns into one-line messages and exit codes."""

from __future__ import annotations

from pathlib import Path


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


class StorageError(ChromaticaError):
    """The disk is full, a quota is exceeded, or the storage failed (ENOSPC, EDQUOT, EIO, EROFS) while
    writing the catalog or the index. Nothing was half-written; the same write works once the storage is
    back. The message says what happened and where; `reason` is the short cause ("no space left on
    device"), `path` the file when known."""

    def __init__(self, message: str, reason: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.path = path


class CatalogDamaged(IndexDirError):
    """The catalog file does not read back (checksum mismatch, truncated, not a catalog). `reason` names
    the damage; the message names the file and the remedy."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"the catalog {path} is damaged ({reason}): start the daemon (`chromatica-watch run`) "
                         "to set it aside and index the folder again, or restore it from a backup")
        self.path = Path(path)
        self.reason = reason


class ClusterError(ChromaticaError):
    """The Dask cluster of `build --dask` cannot be used: the scheduler does not answer, no worker joins,
    or a worker runs another package version or histogram fingerprint than the driver."""


class DaemonAlreadyRunning(ChromaticaError):
    """A second daemon was started on the same index or state directory."""


class DaemonNotRunning(ChromaticaError):
    """No live daemon answers for this index directory."""

    exit_code = 3


class DaemonBusy(ChromaticaError):
    """The daemon answered that every thread for such requests is busy: nothing was done; try again."""


class ImageError(Exception):
    """One image could not be indexed; `reason` is what goes into the failure report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
