"""DuckDB's errors, mapped to ours: no DuckDB exception leaves the catalog. A storage failure (a full or
failing disk: retry later) becomes StorageError, damage (the file does not read back) CatalogDamaged, a file
held by another process IndexDirBusy, anything else IndexDirError."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import duckdb

from chromatica_watch.core.errors import CatalogDamaged, ChromaticaError, IndexDirBusy, IndexDirError, StorageError

logger = logging.getLogger(__name__)

# What DuckDB 2.0.1 raised here, with a real tmpfs filled up and real catalog files damaged on purpose:
# - COMMIT on a full disk, writing the WAL: TransactionException "TransactionContext Error: Failed to commit:
#   Could not write file ".../chromatica_metadata.db.wal": No space left on device". DuckDB has already ended
#   the transaction (a ROLLBACK then raises TransactionException "cannot rollback - no transaction is active")
#   and cut the WAL back; the connection stays usable and nothing of the batch is stored.
# - a checkpoint on a full disk, run by a COMMIT that takes the WAL past checkpoint_threshold (16 MiB) or by
#   CHECKPOINT: FatalException "FATAL Error: Failed to create checkpoint because of error: Could not write file
#   ".../chromatica_metadata.db": No space left on device". The database is then invalidated: every later
#   statement, ROLLBACK included, raises FatalException "... database has been invalidated because of a
#   previous fatal error. The database must be restarted prior to being used again. Original error: ..."
#   until the connection is closed and opened again (which works even while the disk is still full). After
#   that reopen everything committed before is there and nothing of the batch whose COMMIT failed (DuckDB
#   skips the WAL write of a commit that checkpoints).
# - close() on a full disk raises nothing: its checkpoint is abandoned and the WAL kept.
# - a damaged block: plain duckdb.Error (no subclass) "Corrupt database file: computed checksum A does not
#   match stored checksum B in block at location N", only when a statement reads that block: connect reads
#   the headers and the schema, a histogram block is read only when that column is selected. The connection
#   stays usable. Read through an Arrow stream (to_arrow_reader) the same error comes as a bare OSError
#   "Data Corruption Error: Corrupt database file: ...".
# - a truncated file: IOException "IO Error: Could not read enough bytes from file "...": attempted to read
#   262144 bytes from location N", at connect when the metadata is cut off, else at the read.
# - a damaged main header, an empty file, a file that is not DuckDB's: IOException "IO Error: The file "..."
#   exists, but it is not a valid DuckDB database file!" at connect; a damaged database header (byte 4096 or
#   8192): the checksum error above, at connect.
# - garbage in the .wal file: nothing; DuckDB ignores it as a torn write.
# - the file held by another process: IOException "IO Error: Could not set lock on file "...": Conflicting
#   lock is held in ... (PID n)".
# DuckDB ends its I/O messages with strerror(errno), which is what tells a storage failure apart.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)
_STORAGE_STRERRORS = tuple(os.strerror(e) for e in _STORAGE_ERRNOS)
_CHECKSUM_MISMATCH = re.compile(r"Corrupt database file:.*?in block at location (\d+)")
_SHORT_READ = re.compile(r"Could not read enough bytes from file .*?from location (\d+)")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def _damage(text: str) -> str | None:
    """The damage a DuckDB message reports, in a few words; None if it reports none."""
    if m := _CHECKSUM_MISMATCH.search(text):
        return f"checksum mismatch in the block at byte {m.group(1)}"
    if "Corrupt database file" in text:
        return "checksum mismatch"
    if m := _SHORT_READ.search(text):
        return f"truncated: the block at byte {m.group(1)} lies past the end of the file"
    if "not a valid DuckDB database file" in text:
        return "not a DuckDB database file"
    return None


def _doing(text: str) -> str:
    lowered = text.lower()
    if any(w in lowered for w in ("write", "checkpoint", "commit", "fsync", "truncate")):
        return "writing"
    return "reading" if "read" in lowered else "using"


def _domain_error(exc: BaseException, path: Path) -> ChromaticaError:
    text = str(exc)
    logger.debug("catalog %s: DuckDB says: %s", path, text)
    for strerror in _STORAGE_STRERRORS:
        if strerror in text:
            reason = strerror.lower()
            return StorageError(f"{reason} {_doing(text)} the catalog {path}", reason, path)
    if (damage := _damage(text)) is not None:
        return CatalogDamaged(path, damage)
    if "Could not set lock" in text:
        return IndexDirBusy(f"catalog {path} is in use by another process (is the daemon running?)")
    return IndexDirError(f"catalog {path}: {_first_line(text)}")


def _invalidates(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.FatalException) or "database has been invalidated" in str(exc)


@contextlib.contextmanager
def _duckdb_errors(path: Path, on_invalidated: Callable[[], None] | None = None) -> Iterator[None]:
    """DuckDB's errors inside become ours; `on_invalidated` hears of a database DuckDB gave up on."""
    try:
        yield
    except duckdb.Error as exc:
        if on_invalidated is not None and _invalidates(exc):
            on_invalidated()
        raise _domain_error(exc, path) from exc
    except OSError as exc:
        if exc.errno is not None:
            raise
        # an Arrow stream of a DuckDB result reports DuckDB's error as a bare OSError
        raise _domain_error(exc, path) from exc


def _roll_back(con: duckdb.DuckDBPyConnection) -> None:
    """End a failed transaction without hiding why it failed: after a failed COMMIT DuckDB has already
    ended it ("no transaction is active"), and an invalidated database refuses even a ROLLBACK."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as exc:
        logger.debug("no rollback after the failed transaction: %s", _first_line(str(exc)))


class _MapsErrors(Protocol):
    """What `_mapped` needs of the object whose method it wraps (a Catalog)."""

    def _duckdb_errors(self) -> AbstractContextManager[None]: ...


S = TypeVar("S", bound=_MapsErrors)
P = ParamSpec("P")
R = TypeVar("R")


def _mapped(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A Catalog method that raises only our errors; a generator method is covered while it is iterated."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def iterate(self: S, *args: P.args, **kwargs: P.kwargs) -> Iterator[Any]:
            with self._duckdb_errors():
                yield from cast(Iterator[Any], method(self, *args, **kwargs))
        return cast("Callable[Concatenate[S, P], R]", iterate)

    @functools.wraps(method)
    def call(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._duckdb_errors():
            return method(self, *args, **kwargs)
    return call
