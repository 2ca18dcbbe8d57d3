"""The histogram file: a copy of the catalog's histograms that a search reads by id in microseconds.

A search reranks a few hundred candidates and needs their histograms. DuckDB fetches each one from a
block of its own (~35 us a row at a million rows: 20 ms a search); this file answers with one pread a
row. It holds facts that never change: an id's histogram is written once, when the row is committed,
and ids are never reused within a catalog. So every record that reads back whole is true, and nothing
needs a checkpoint: a record cut short by a crash is dropped (the file is cut there), one missing
(a crash between the catalog's commit and the append) is read from the catalog, and filled in later.

The file starts with the catalog's identity (`catalog_id` in its meta table): a file of another
catalog (one set aside as damaged, a copied index dir) is discarded, never read. Each record is
(id, length, crc32) and the stored form of `histogram.pack`.

One thread opens it: reads the records back (at a million, 0.6 GB in a second or two), then appends
the histograms of the catalog's live rows it does not hold, a chunk at a time. Until then searches
read what is missing from the catalog. The owner stops it with `close()`.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chromatica_watch.colour.histogram import TOTAL_BINS, pack, unpack
from chromatica_watch.core.errors import ChromaticaError

logger = logging.getLogger(__name__)

HISTOGRAM_FILE = "chromatica_histograms.bin"
_MAGIC = b"CWHIST01"
_FILE_HEADER = struct.Struct("<8s32s")  # magic, catalog id (hex of a uuid4, 32 ASCII bytes)
_RECORD = struct.Struct("<qII")  # id, payload length, crc32 of the payload
_READ_CHUNK = 8 << 20
_MAX_FORM = TOTAL_BINS // 8 + 2 * TOTAL_BINS  # the bitmap and every bin non-zero


class HistogramFile:
    """Histograms by id from the file, the rest from `fallback` (the catalog); safe from several threads."""

    def __init__(self, path: Path, catalog_id: str, max_id: int | None = None) -> None:
        self.path = path
        self._catalog_id = catalog_id
        self._max_id = max_id  # the catalog's highest id: a record past it is of another catalog's row
        self._lock = threading.Lock()
        self._offset = np.full(0, -1, np.int64)  # by id: where its record starts; -1: not in the file
        self._length = np.zeros(0, np.uint32)
        self._fd = -1
        self._end = 0
        self._failed = False  # an append failed (said once)
        self.ready = threading.Event()  # set once the file was read back and every live row is in it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- opening -------------------------------------------------------------------------------
    def start(self, live_ids: Callable[[], np.ndarray],
              fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], chunk: int = 4096) -> None:
        """Read the file back, then add the live rows (`live_ids()`) it lacks, read with `fetch(ids)` ->
        (ids, histograms) a chunk at a time, on a thread of its own."""
        self._thread = threading.Thread(target=self._open_and_fill, args=(live_ids, fetch, chunk),
                                        name="histogram-file", daemon=True)
        self._thread.start()

    def _open_and_fill(self, live_ids: Callable[[], np.ndarray],
                       fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], chunk: int) -> None:
        try:
            self._open()
            ids = live_ids()
            missing = ids[~self._holds(ids)]
            for start in range(0, len(missing), chunk):
                if self._stop.is_set():
                    return
                self.append(*fetch(missing[start:start + chunk]))
            logger.info("histogram file ready: %d rows (%d added from the catalog)", self.count, len(missing))
            self.ready.set()
        except OSError as exc:  # a full or failing disk: searches read the catalog, as before
            logger.warning("histogram file %s unusable (%s); searches read the catalog", self.path, exc.strerror)
            self._close_fd()
        except ChromaticaError as exc:  # the catalog failed or was replaced meanwhile: the next start fills it
            logger.info("histogram file %s not filled: %s", self.path, exc)

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        header = os.pread(fd, _FILE_HEADER.size, 0)
        if (problem := header_problem(header, self._catalog_id)) is not None:
            if header:
                logger.warning("histogram file %s %s: started again", self.path, problem)
            os.ftruncate(fd, 0)
            os.pwrite(fd, _identity(self._catalog_id), 0)
            end = _FILE_HEADER.size
        else:
            end = self._read_back(fd)
        with self._lock:
            self._fd, self._end = fd, end

    def _read_back(self, fd: int) -> int:
        """Index every whole record; cut the file after the last one (a crash may have left half of one)."""
        found = read_records(fd, self._max_id, self._stop)
        if self._stop.is_set():
            return found.end  # closed while reading: nothing is cut
        if found.problem is not None:
            logger.warning("histogram file %s: %s; the %d bytes from there dropped", self.path, found.problem,
                           found.size - found.end)
            os.ftruncate(fd, found.end)
        self._index(found.ids, found.offsets, found.lengths)
        return found.end

    def _index(self, ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        with self._lock:
            if len(ids) and ids.max() >= len(self._offset):
                grown = max(int(ids.max()) + 1, 2 * len(self._offset))
                self._offset = np.concatenate([self._offset, np.full(grown - len(self._offset), -1, np.int64)])
                self._length = np.concatenate([self._length, np.zeros(grown - len(self._length), np.uint32)])
            self._offset[ids] = offsets
            self._length[ids] = lengths

    # -- writing and reading ---------------------------------------------------------------------
    def append(self, ids: np.ndarray, hists: np.ndarray) -> None:
        """Add committed rows (after the catalog's commit); a write that fails is logged once, not raised."""
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0 or self._fd < 0:
            return
        forms = pack(hists)
        records = b"".join(_RECORD.pack(int(i), len(f), zlib.crc32(f)) + f for i, f in zip(ids.tolist(), forms,
                                                                                           strict=True))
        with self._lock:
            start = self._end
            try:
                os.pwrite(self._fd, records, start)  # past the end: a crash leaves at most a cut record there
            except OSError as exc:
                # Not fatal: these rows are read from the catalog, and added again at the next start.
                if not self._failed:
                    logger.warning("histogram file %s: cannot add to it (%s); searches read those rows from "
                                   "the catalog", self.path, exc.strerror)
                self._failed = True
                return
            self._end += len(records)
        sizes = np.array([_RECORD.size + len(f) for f in forms], np.int64)
        self._index(ids, start + np.concatenate([[0], np.cumsum(sizes)[:-1]]),
                    np.array([len(f) for f in forms], np.uint32))

    def _holds(self, ids: np.ndarray) -> np.ndarray:
        offset = self._offset
        inside = ids < len(offset)
        held = np.zeros(len(ids), bool)
        held[inside] = offset[ids[inside]] >= 0
        return held

    def read(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their (n, 1152) histograms), in the order given; ids the file lacks are left out
        (the caller reads them from the catalog)."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            fd = self._fd
            held = self._holds(ids) if fd >= 0 else np.zeros(len(ids), bool)
            found = ids[held]
            offsets, lengths = self._offset[found], self._length[found]
        forms, good = [], np.ones(len(found), bool)
        for n, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist(), strict=True)):
            try:
                raw = os.pread(fd, _RECORD.size + length, offset)
            except OSError:  # closed meanwhile (the daemon stopping), or a failing disk: the catalog has it
                good[n] = False
                continue
            if len(raw) < _RECORD.size:
                good[n] = False
                continue
            image_id, size, crc = _RECORD.unpack_from(raw)
            form = raw[_RECORD.size:]
            if image_id != found[n] or size != length or zlib.crc32(form) != crc:
                good[n] = False  # damaged since it was read back: the catalog has it
                continue
            forms.append(form)
        if not forms:
            return np.zeros(0, np.int64), np.zeros((0, TOTAL_BINS), np.float32)
        ends = np.cumsum([len(f) for f in forms])
        data = np.frombuffer(b"".join(forms), np.uint8)
        return found[good], unpack(np.concatenate([[0], ends]), data)

    @property
    def count(self) -> int:
        return int((self._offset >= 0).sum())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._close_fd()

    def _close_fd(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1


# -- the checks, the daemon's and `validate`'s ----------------------------------------------------
def _identity(catalog_id: str) -> bytes:
    return _FILE_HEADER.pack(_MAGIC, catalog_id.encode("ascii")[:32].ljust(32, b"-"))


def header_problem(header: bytes, catalog_id: str) -> str | None:
    """What is wrong with a file that starts with `header` as the histogram file of catalog `catalog_id`;
    None when it is that catalog's (an empty header: a new file, "is empty")."""
    if header == _identity(catalog_id):
        return None
    if not header:
        return "is empty"
    if len(header) < _FILE_HEADER.size or not header.startswith(_MAGIC):
        return "is not a histogram file"
    named = header[len(_MAGIC):].decode("ascii", "replace")
    return f"belongs to another catalog (catalog id {named}, this catalog's is {catalog_id or 'none'})"


@dataclass(frozen=True)
class Records:
    """The whole records of a histogram file, read in order from its header on."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    end: int  # where the last whole record ends
    size: int  # the file's size
    problem: str | None  # why reading stopped before `size` (None: every record read back)
    cut_short: bool  # the problem is only a last record cut short (a write a crash interrupted)


def read_records(fd: int, max_id: int | None = None, stop: threading.Event | None = None) -> Records:
    """Read the records of the histogram file open on `fd` until one does not read back: cut short, a length
    no histogram has, an id that is not a catalog's (below 1, or past `max_id`: the catalog's highest), or a
    crc32 mismatch. Reads only; `stop` ends it early."""
    position = _FILE_HEADER.size
    size = os.fstat(fd).st_size
    ids, offsets, lengths = [], [], []
    buffer, base = b"", position
    problem, cut_short = None, False
    while position < size and not (stop is not None and stop.is_set()):
        if position + _RECORD.size > base + len(buffer):
            buffer, base = os.pread(fd, _READ_CHUNK, position), position
        if len(buffer) - (position - base) < _RECORD.size:
            problem, cut_short = f"the record at byte {position} is cut short", True
            break
        image_id, length, crc = _RECORD.unpack_from(buffer, position - base)
        if length > _MAX_FORM:
            problem = f"the record at byte {position} has a length no histogram has ({length} bytes)"
            break
        start = position - base + _RECORD.size
        if start + length > len(buffer):
            buffer, base = os.pread(fd, max(_READ_CHUNK, _RECORD.size + length), position), position
            start = _RECORD.size
            if start + length > len(buffer):
                problem, cut_short = f"the record at byte {position} is cut short", True
                break
        if image_id <= 0 or (max_id is not None and image_id > max_id):
            problem = (f"the record at byte {position} is of id {image_id}, which the catalog "
                       + ("never has" if image_id <= 0 else f"does not have (its highest is {max_id})"))
            break
        if zlib.crc32(buffer[start:start + length]) != crc:
            problem = f"the record at byte {position} (id {image_id}) fails its crc32"
            break
        ids.append(image_id)
        offsets.append(position)
        lengths.append(length)
        position += _RECORD.size + length
    return Records(np.array(ids, np.int64), np.array(offsets, np.int64), np.array(lengths, np.uint32),
                   position, size, problem, cut_short)


def check_file(path: Path, catalog_id: str, max_id: int) -> tuple[bool, str]:
    """The histogram file at `path` checked as the daemon's start reads it, changing nothing: (whether it is
    whole and this catalog's, one line saying what was found)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True, "none (the daemon makes it; searches read the catalog meanwhile)"
    except OSError as exc:
        return False, f"{path} cannot be read: {exc.strerror}"
    try:
        header = os.pread(fd, _FILE_HEADER.size, 0)
        if not header:  # what a crash right after creating it leaves: the daemon's start writes its header
            return True, "empty"
        if (problem := header_problem(header, catalog_id)) is not None:
            return False, f"{path} {problem}"
        found = read_records(fd, max_id)
    except OSError as exc:
        return False, f"{path} cannot be read: {exc.strerror}"
    finally:
        os.close(fd)
    whole = f"{len(found.ids)} records that read back"
    if found.problem is None:
        return True, whole
    if found.cut_short:  # what a crash mid-append leaves: the daemon's next start drops it
        return True, f"{whole}; {found.problem} (a write a crash interrupted: the daemon drops it at its start)"
    return False, f"{path}: {found.problem} ({whole} before it)"


def discard(index_dir: Path) -> None:
    """Forget the histogram file (with its catalog: its ids belonged to it)."""
    (Path(index_dir) / HISTOGRAM_FILE).unlink(missing_ok=True)
