"""The live index (FAISS): the only module importing faiss.

HNSW(M=32) inside IndexIDMap2, so FAISS ids are catalog ids. HNSW cannot remove vectors: tombstoned
ids are excluded at search time by an IDSelector, and the index is rebuilt from the catalog when they
pass a threshold. HNSW add concurrent with search crashes, so one lock guards every call into it.

A checkpoint is the serialized index plus `manifest.json` (the commit point), both written
tmp + fsync + rename + fsync(dir). The index is derived data: whatever does not verify is rebuilt from
the catalog, loudly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from chromatica_watch.colour.histogram import TOTAL_BINS, VECTORS, index_vectors
from chromatica_watch.core.defaults import available_cores
from chromatica_watch.core.fsutil import atomic_write, remove_stale_temps
from chromatica_watch.core.hashing import file_checksum, file_checksum_of

logger = logging.getLogger(__name__)

INDEX_FILE = "chromatica_index.faiss"
MANIFEST_FILE = "manifest.json"
HNSW_M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 96
MANIFEST_VERSION = 1

# Layouts (docs/architecture.md has the measurements behind them). FLAT: each photo's 1152 index-vector
# coordinates (histogram.index_vectors) in HNSW, exact, 4.9 KB of RAM a photo. PCA: the coordinates projected
# on the collection's first PCA_DIMS principal axes (fitted on a sample of its own histograms, kept in the
# index file), stored in 8 bits a coordinate, HNSW over those: ~0.45 KB a photo. Its distances are
# approximate, but smoothed vectors live in few dimensions: its neighbours are the exact index's.
FLAT = "hnsw-flat"
PCA_DIMS = 96
PCA = f"pca{PCA_DIMS}-sq8-hnsw"  # the projections stored in 8 bits a coordinate (96 B)
PCA_FROM = 50_000  # live photos from which an index is (re)built in the PCA layout
# Histograms sampled to fit the projection: plenty for 96 axes, and within DuckDB's memory limit even from a
# version-1 catalog's dense rows (92 MB).
PCA_TRAINING = 20_000


class CheckpointInvalid(Exception):
    """The checkpoint on disk cannot be trusted; the caller rebuilds from the catalog."""


class CheckpointOutdated(CheckpointInvalid):
    """The checkpoint holds vectors of an earlier release (not damaged): rebuilt from the catalog all the same."""


@dataclass(frozen=True)
class Manifest:
    watermark: int  # highest catalog id whose vector the checkpoint holds
    vector_count: int
    tombstone_count: int
    faiss_version: str
    fingerprint: str
    saved_at: float
    # The index file's checksum. xxh3-128 since it checks at ~20 GB/s where sha256 took 1.2 (4 s on every
    # start at a million photos); a checkpoint written before carries its sha256, still verified.
    xxh3_128: str = ""
    sha256: str = ""
    layout: str = FLAT  # a manifest written before layouts existed is of the flat one
    vectors: str = "hellinger"  # what each vector is (histogram.VECTORS); before smoothing, plain Hellinger

    @property
    def checksum(self) -> str:
        return f"xxh3-128 {self.xxh3_128}" if self.xxh3_128 else f"sha256 {self.sha256}"

    def matches(self, blob: bytes | memoryview) -> bool:
        if self.xxh3_128:
            return file_checksum(blob) == self.xxh3_128
        return bool(self.sha256) and hashlib.sha256(blob).hexdigest() == self.sha256

    def matches_file(self, path: Path) -> bool:
        if self.xxh3_128:
            return file_checksum_of(path) == self.xxh3_128
        if not self.sha256:
            return False
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == self.sha256

    def to_json(self) -> bytes:
        return json.dumps({"version": MANIFEST_VERSION, "index_file": INDEX_FILE, **self.__dict__},
                          indent=2).encode()


def layout_for(live_photos: int, pca_from: int = PCA_FROM) -> str:
    """The layout an index of this many photos is built in (0: never the PCA one; and never below the
    2 x PCA_DIMS photos the projection needs to be fitted)."""
    return PCA if 0 < pca_from <= live_photos and live_photos >= 2 * PCA_DIMS else FLAT


def _new_hnsw(dims: int) -> Any:
    inner = faiss.IndexHNSWFlat(dims, HNSW_M)
    inner.hnsw.efConstruction = EF_CONSTRUCTION
    inner.hnsw.efSearch = EF_SEARCH
    return inner


def _vectors(histograms: np.ndarray) -> np.ndarray:
    """What FAISS is given for these histograms (rows, or one): their index vectors, float32 rows in C order."""
    return np.ascontiguousarray(index_vectors(histograms), dtype=np.float32)


def new_index(training: np.ndarray | None = None) -> Any:
    """An empty FAISS index: the flat layout, or with `training` histograms the PCA layout fitted on them."""
    if training is None:
        return faiss.IndexIDMap2(_new_hnsw(TOTAL_BINS))
    if len(training) < 2 * PCA_DIMS:
        raise ValueError(f"the PCA layout needs at least {2 * PCA_DIMS} histograms to fit, got {len(training)}")
    make_sq8: Any = faiss.IndexHNSWSQ  # the stubs mistype its quantizer-type argument
    hnsw = make_sq8(PCA_DIMS, faiss.ScalarQuantizer.QT_8bit, HNSW_M)
    hnsw.hnsw.efConstruction = EF_CONSTRUCTION
    hnsw.hnsw.efSearch = EF_SEARCH
    # The id map inside the projection: searches pass it their IDSelector, which it translates to positions.
    index = faiss.IndexPreTransform(faiss.PCAMatrix(TOTAL_BINS, PCA_DIMS), faiss.IndexIDMap(hnsw))
    index.train(_vectors(training))  # the projection, then the 8-bit ranges
    return index


def _parts(index: Any) -> tuple[str, Any, Any]:
    """(layout, its id map, its HNSW) of a FAISS index made by new_index; ValueError for any other."""
    if isinstance(index, faiss.IndexPreTransform):
        pretransform: Any = index
        idmap: Any = faiss.downcast_index(pretransform.index)
        layout = PCA if pretransform.chain.size() == 1 and idmap.d == PCA_DIMS else "?"
    else:
        idmap, layout = index, FLAT
    hnsw = faiss.downcast_index(idmap.index) if isinstance(idmap, faiss.IndexIDMap | faiss.IndexIDMap2) else None
    if layout == "?" or not isinstance(hnsw, faiss.IndexHNSWSQ if layout == PCA else faiss.IndexHNSWFlat):
        raise ValueError(f"not an index of a known layout: {type(index).__name__}")
    return layout, idmap, hnsw


class LiveIndex:
    """Hellinger vectors of catalog histograms (or their PCA projections), searchable with tombstoned ids
    excluded."""

    def __init__(self, index: Any = None, watermark: int = 0, mapped: bool = False) -> None:
        self._index: Any = index if index is not None else new_index()
        self.layout, self._idmap, self._hnsw = _parts(self._index)
        self._storage: Any = faiss.downcast_index(self._hnsw.storage)  # the stored vectors, flat or 8-bit codes
        self._projection: Any = (faiss.downcast_VectorTransform(self._index.chain.at(0)) if self.layout == PCA
                                 else None)
        self._positions = np.zeros(0, np.int32)  # each id's position among the stored vectors, -1 for none
        self._positioned = 0  # vectors whose ids are in it (vectors are only ever appended)
        # Its vectors are the checkpoint file's pages, mapped read-only: searchable, never added to (FAISS
        # would abort the process, not raise).
        self.mapped = mapped
        self._lock = threading.Lock()
        self._deleted: set[int] = set()
        self._hidden = np.zeros(0, np.int64)  # live rows not searched (their root is not configured)
        self._selector: Any = None
        self._selector_parts: Any = None
        self.watermark = watermark
        self.dirty = False  # changed since the last checkpoint

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def tombstone_count(self) -> int:
        return len(self._deleted)

    def add(self, ids: np.ndarray, histograms: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        if self.mapped:
            raise ValueError("a live index mapped from its checkpoint is read-only: load it to add to it")
        vectors = _vectors(histograms)  # outside the lock: searches go on meanwhile
        with self._lock:
            self._index.add_with_ids(vectors, ids)
            self.watermark = max(self.watermark, int(ids.max()))
            self.dirty = True

    def add_from(self, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                 progress: Callable[[int], None] | None = None) -> int:
        """Add chunks of (ids, histograms); `progress` is told how many were added after each (a rebuild of a
        large catalog takes minutes: the daemon's watchdog must hear that it is moving, and status says how far)."""
        added = 0
        for ids, hists in batches:
            self.add(ids, hists)
            added += len(ids)
            if progress is not None:
                progress(added)
        return added

    def mark_deleted(self, ids: Iterable[int]) -> None:
        new = {int(i) for i in ids} - self._deleted
        if not new:
            return
        with self._lock:
            self._deleted |= new
            self._selector = None
            self.dirty = True

    def hide(self, ids: np.ndarray) -> None:
        """Exclude these ids from searches, replacing the previous hidden set (unlike a tombstone, this
        is undone by the next call: a retired root's photos come back if it is configured again)."""
        hidden = np.unique(np.asarray(ids, dtype=np.int64))
        if np.array_equal(hidden, self._hidden):
            return
        with self._lock:
            self._hidden = hidden
            self._selector = None

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._idmap.id_map).astype(np.int64)

    def reconstruct(self, image_id: int) -> np.ndarray:
        """The vector stored for an id: its index vector (flat layout) or its projection (PCA)."""
        with self._lock:
            position = int(self._positions_of(np.array([image_id], np.int64))[0])
            if position < 0:
                raise KeyError(f"id {image_id} is not in the live index")
            return np.asarray(self._hnsw.reconstruct(position))

    def distances_to(self, histogram: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Squared L2 distances from the query's index vector to the vectors stored for `ids`, as `search`
        measures them (projection and 8-bit codes included); inf for an id the index does not hold. A narrow
        filter's rows ranked with no walk of the graph: ~0.3 us a row, where the graph, asked for the nearest
        among 1% of the photos, must visit a hundred times the usual."""
        ids = np.asarray(ids, dtype=np.int64)
        query = _vectors(histogram)
        if self._projection is not None:
            query = self._projection.apply(query)
        with self._lock:
            at = self._positions_of(ids)
            held = at >= 0
            size = self._storage.code_size
            stored = faiss.rev_swig_ptr(self._storage.codes.data(), self.ntotal * size) if self.ntotal else b""
            codes = np.frombuffer(stored, np.uint8).reshape(-1, size)[at[held]]  # a copy: safe past the lock
        out = np.full(len(ids), np.inf, np.float32)
        if len(codes):
            out[held] = np.square(self._storage.sa_decode(codes) - query).sum(axis=1)
        return out

    def _positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Each id's position among the stored vectors, -1 for none; the lock held."""
        total = self.ntotal
        if self._positioned < total:
            added = faiss.rev_swig_ptr(self._idmap.id_map.data(), total)[self._positioned:]
            if int(added.max()) >= len(self._positions):
                grown = np.full(max(int(added.max()) + 1, 2 * len(self._positions)), -1, np.int32)
                grown[:len(self._positions)] = self._positions
                self._positions = grown
            self._positions[added] = np.arange(self._positioned, total, dtype=np.int32)
            self._positioned = total
        inside = (ids >= 0) & (ids < len(self._positions))
        return np.where(inside, self._positions[np.where(inside, ids, 0)], -1)

    def _search_params(self, k: int, selector: Any = None, ef_search: int = EF_SEARCH) -> Any:
        if selector is not None:
            return self._wrapped(faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef_search, k)))  # type: ignore[attr-defined]
        if self._selector is None and (self._deleted or len(self._hidden)):
            deleted = np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted))
            batch = faiss.IDSelectorBatch(np.concatenate([deleted, self._hidden]))
            self._selector = faiss.IDSelectorNot(batch)
            self._selector_parts = batch  # keep the wrapped selector alive as long as the wrapper
        hnsw: Any = faiss.SearchParametersHNSW  # type: ignore[attr-defined]
        return self._wrapped(hnsw(sel=self._selector, efSearch=max(EF_SEARCH, k)))

    def _wrapped(self, params: Any) -> Any:
        if self.layout == FLAT:
            return params
        outer: Any = faiss.SearchParametersPreTransform
        wrapped = outer(index_params=params)
        wrapped.keep = params  # the SWIG wrapper does not hold the inner parameters alive
        return wrapped

    def search(self, histogram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, squared L2 distances between index vectors (`histogram.index_vectors`), or between their
        projections), best first, tombstoned and hidden ids excluded."""
        return self._search(histogram, k)

    def search_among(self, histogram: np.ndarray, k: int, allowed: np.ndarray,
                     ef_search: int) -> tuple[np.ndarray, np.ndarray]:
        """As `search`, among the `allowed` ids only (a filter's rows: live and searchable already), exploring
        `ef_search` nodes: a filter keeping a fraction f of the photos needs about 1/f times the usual."""
        allowed = np.asarray(allowed, dtype=np.int64)
        if not len(allowed):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        bits = np.zeros(int(allowed.max()) + 1, bool)
        bits[allowed] = True
        bitmap = np.packbits(bits, bitorder="little")
        # Its size is in bytes: FAISS reads bitmap[id / 8] for any id below 8 x that.
        selector: Any = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        found = self._search(histogram, k, selector, ef_search)
        del bitmap  # held until the search is done: the selector only points at it
        return found

    def _search(self, histogram: np.ndarray, k: int, selector: Any = None,
                ef_search: int = EF_SEARCH) -> tuple[np.ndarray, np.ndarray]:
        query = _vectors(histogram)
        with self._lock:
            k = min(k, self.ntotal)
            if k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            distances, ids = self._index.search(query, k, params=self._search_params(k, selector, ef_search))
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), distances[0][keep]

    def checkpoint(self, index_dir: Path, fingerprint: str) -> Manifest:
        """Write the index, then the manifest that commits it. Only the lock-held part blocks searches."""
        with self._lock:
            blob: Any = faiss.serialize_index(self._index)
            watermark, count, tombstones = self.watermark, self.ntotal, len(self._deleted)
            self.dirty = False
        index_dir = Path(index_dir)
        digest = file_checksum(memoryview(blob))
        manifest = Manifest(watermark=watermark, vector_count=count, tombstone_count=tombstones,
                            xxh3_128=digest, faiss_version=faiss.__version__, fingerprint=fingerprint,
                            saved_at=time.time(), layout=self.layout, vectors=VECTORS)
        try:
            atomic_write(index_dir / INDEX_FILE, memoryview(blob))
            atomic_write(index_dir / MANIFEST_FILE, manifest.to_json())
        except BaseException:
            self.dirty = True  # not saved: the next checkpoint must try again
            raise
        logger.debug("checkpoint: %d vectors up to id %d", count, watermark)
        return manifest


def read_manifest(index_dir: Path) -> Manifest:
    path = Path(index_dir) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_bytes())
        if raw.pop("version", None) != MANIFEST_VERSION:
            raise CheckpointInvalid(f"{path}: unknown manifest version")
        raw.pop("index_file", None)
        return Manifest(**raw)
    except FileNotFoundError as exc:
        raise CheckpointInvalid("no checkpoint (manifest.json missing)") from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointInvalid(f"{path} is not a valid manifest: {exc}") from exc


def load_checkpoint(index_dir: Path, fingerprint: str, *, mapped: bool = False) -> tuple[LiveIndex, Manifest]:
    """The checkpointed index, verified against its manifest; raises CheckpointInvalid otherwise.

    `mapped`: for a reader that adds nothing (a search with no daemon), the vectors stay in the file,
    mapped (FAISS's IO_FLAG_MMAP_IFC): nothing is copied at load, and pages are read as searches touch
    them (the kernel's readahead brings much of the file in with the first). The checksum is then
    computed over the file in chunks, before it is mapped."""
    path = Path(index_dir) / INDEX_FILE
    try:
        if mapped:
            manifest = _verified_file(index_dir, fingerprint)
            index: Any = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        else:
            blob, manifest = _verified_checkpoint(index_dir, fingerprint)
            index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
    except RuntimeError as exc:
        raise CheckpointInvalid(f"{path} cannot be read by faiss: {str(exc).splitlines()[0]}") from exc
    if index.ntotal != manifest.vector_count or index.d != TOTAL_BINS:
        raise CheckpointInvalid(f"{path} holds {index.ntotal} vectors of dimension {index.d}, manifest "
                                f"says {manifest.vector_count} of {TOTAL_BINS}")
    try:
        live = LiveIndex(index, watermark=manifest.watermark, mapped=mapped)
    except ValueError as exc:
        raise CheckpointInvalid(f"{path}: {exc}") from exc
    if live.layout != manifest.layout:
        raise CheckpointInvalid(f"{path} is of the {live.layout} layout, its manifest says {manifest.layout}")
    live._hnsw.hnsw.efSearch = EF_SEARCH
    return live, manifest


def _matching_manifest(index_dir: Path, fingerprint: str) -> Manifest:
    manifest = read_manifest(index_dir)
    if manifest.fingerprint != fingerprint:
        raise CheckpointInvalid(f"checkpoint built with histogram settings {manifest.fingerprint}, "
                                f"not {fingerprint}")
    if manifest.vectors != VECTORS:  # an index of an earlier release: made again from the catalog, no decode
        raise CheckpointOutdated(f"checkpoint holds {manifest.vectors} vectors; this release indexes {VECTORS}")
    return manifest


def _verified_file(index_dir: Path, fingerprint: str) -> Manifest:
    """The manifest, the index file's checksum computed in chunks (no copy of the file in memory)."""
    manifest = _matching_manifest(index_dir, fingerprint)
    path = Path(index_dir) / INDEX_FILE
    try:
        ok = manifest.matches_file(path)
    except FileNotFoundError as exc:
        raise CheckpointInvalid(f"{path} missing") from exc
    if not ok:
        raise CheckpointInvalid(f"{path} does not match its manifest checksum (truncated or corrupted)")
    return manifest


def _verified_checkpoint(index_dir: Path, fingerprint: str) -> tuple[bytes, Manifest]:
    """The serialized index and its manifest, the fingerprint and checksum checked (not deserialized)."""
    manifest = _matching_manifest(index_dir, fingerprint)
    path = Path(index_dir) / INDEX_FILE
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointInvalid(f"{path} missing") from exc
    if not manifest.matches(blob):
        raise CheckpointInvalid(f"{path} does not match its manifest checksum (truncated or corrupted)")
    return blob, manifest


def copy_checkpoint(src_dir: Path, dest_dir: Path, fingerprint: str) -> Manifest:
    """Copy a checkpoint that verifies into another directory, the manifest (the commit point) last; the
    bytes checked are the bytes written. Raises CheckpointInvalid."""
    blob, manifest = _verified_checkpoint(src_dir, fingerprint)
    atomic_write(Path(dest_dir) / INDEX_FILE, blob)
    atomic_write(Path(dest_dir) / MANIFEST_FILE, manifest.to_json())
    return manifest


def rebuild(batches: Iterator[tuple[np.ndarray, np.ndarray]], progress: Callable[[int], None] | None = None,
            training: np.ndarray | None = None) -> LiveIndex:
    """A new index of these (ids, histograms): flat, or in the PCA layout fitted on `training`."""
    live = LiveIndex(new_index(training))
    live.add_from(batches, progress)
    live.dirty = True
    return live


def configure_threads(threads: int) -> None:
    """OpenMP threads FAISS may use for adds and searches in this process."""
    faiss.omp_set_num_threads(max(1, threads))


def default_threads() -> int:
    return available_cores()


__all__ = ["FLAT", "PCA", "CheckpointInvalid", "LiveIndex", "Manifest", "configure_threads", "copy_checkpoint",
           "layout_for", "load_checkpoint", "new_index", "read_manifest", "rebuild", "remove_stale_temps"]
