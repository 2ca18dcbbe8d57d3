"""The decoders' stamp: a catalog remembers which decoders made its histograms, and files of a format that
this install decodes to other pixels are read again, the rest of the index kept. Real builds, real files of
every format, a real catalog whose stamp another install would have written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pytest

from chromatica_watch.core.filetypes import IMAGE_EXTENSIONS
from chromatica_watch.offline.build import BuildOptions, build
from chromatica_watch.storage.catalog import Catalog
from chromatica_watch.storage.decoder_stamp import (
    LOCKED_DIGESTS,
    LOCKED_VERSIONS,
    META_KEY,
    UNSTAMPED_DIGESTS,
    DecoderStamp,
    decoder_digests,
    decoder_versions,
    merged_stamp,
    restamp,
    suffixes_of,
)
from tests import format_files as F
from tests.conftest import photo


def test_this_lock_decodes_the_references_as_recorded() -> None:
    """What this lock's decoders (constraints.txt) are and turn data/probes/ into, as the package records it
    (a new catalog is stamped from the record, decoding nothing). A lock refresh that changes a digest
    changes how that format decodes: every install upgrading to it reads those files again (say so in the
    commit); record the new versions and digests in storage/decoder_stamp.py."""
    assert decoder_versions() == LOCKED_VERSIONS
    assert decoder_digests() == LOCKED_DIGESTS
    # the set before the lock decoded JPEG XL otherwise, and only that
    assert {k for k, v in UNSTAMPED_DIGESTS.items() if LOCKED_DIGESTS[k] != v} == {"jxl"}


def test_only_changed_formats_are_named_and_same_versions_decode_nothing() -> None:
    now = DecoderStamp(decoder_versions(), decoder_digests())
    assert restamp(now) is None  # same versions: not even the references are decoded
    other_versions = DecoderStamp({**now.versions, "pillow": "0.0"}, dict(now.digests))
    outcome = restamp(other_versions)
    assert outcome is not None and outcome[1] == [] and outcome[0].versions == now.versions
    other_jxl = DecoderStamp({**now.versions, "pillow-jxl-plugin": "0.0"}, {**now.digests, "jxl": "0" * 16})
    outcome = restamp(other_jxl)
    assert outcome is not None and outcome[1] == ["jxl"] and outcome[0].digests == now.digests


def test_the_suffixes_of_a_changed_format() -> None:
    assert suffixes_of(["jxl"]) == [".jxl"]
    assert suffixes_of(["heif", "avif"]) == [".avif", ".heic", ".heif", ".hif"]
    assert suffixes_of(["icc"]) == sorted(IMAGE_EXTENSIONS)  # a profile may be in any format
    assert suffixes_of([]) == []


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    writers = {"a.jpg": F.jpeg, "b.png": F.png, "c.JXL": F.jxl, "d.heic": F.heic, "e.jxl": F.jxl}
    for i, (name, write) in enumerate(writers.items()):
        (folder / name).write_bytes(write(photo(["astronaut", "coffee", "chelsea", "rocket", "astronaut"][i])))
        os.utime(folder / name, (1_767_225_600, 1_767_225_600))  # outside the racy window: not hashed again
    return folder


def _stamp(index: Path) -> DecoderStamp:
    with Catalog.open(index, None, read_only=True) as catalog:
        return DecoderStamp.from_json(catalog.meta(META_KEY))


def _live_ids(index: Path) -> dict[bytes, int]:
    with Catalog.open(index, None, read_only=True) as catalog:
        root = catalog.roots()[0]
        return {p: f.image_id for p, f in catalog.live_files(root).items()}


def test_a_build_reads_again_only_the_files_of_a_format_decoded_otherwise(dataset: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    opts = BuildOptions(dataset, index, workers=1)
    assert build(opts).indexed == 5
    assert _stamp(index) == DecoderStamp(decoder_versions(), decoder_digests())  # a new catalog is stamped
    before = _live_ids(index)

    # the stamp another install would have written: an older pillow-jxl-plugin that decoded JPEG XL otherwise
    con = duckdb.connect(str(index / "chromatica_metadata.db"))
    stamp = DecoderStamp({**decoder_versions(), "pillow-jxl-plugin": "1.0.0"}, {**decoder_digests(), "jxl": "0" * 16})
    con.execute("UPDATE meta SET value = ? WHERE key = ?", [stamp.to_json(), META_KEY])
    con.close()

    report = build(opts)
    assert (report.indexed, report.unchanged, report.tombstoned) == (2, 3, 2)  # c.JXL and e.jxl, decoded again
    after = _live_ids(index)
    assert {p for p in after if after[p] != before[p]} == {b"c.JXL", b"e.jxl"}
    assert json.loads(_stamp(index).to_json()) == json.loads(DecoderStamp(decoder_versions(),
                                                                          decoder_digests()).to_json())
    with Catalog.open(index, None, read_only=True) as catalog:
        hists = catalog.histograms([after[b"e.jxl"]])
        assert np.isclose(hists[after[b"e.jxl"]].sum(), 1.0, atol=1e-2)  # a real histogram, not a stale copy

    report = build(opts)
    assert (report.indexed, report.unchanged) == (0, 5)  # stamped again: nothing more to read


def test_a_merged_catalog_is_stamped_mixed_where_its_inputs_disagree() -> None:
    a = DecoderStamp({"pillow": "1"}, {"basic": "b1", "jxl": "j1"}).to_json()
    b = DecoderStamp({"pillow": "2"}, {"basic": "b1", "jxl": "j2"}).to_json()
    assert DecoderStamp.from_json(merged_stamp([a, a])) == DecoderStamp.from_json(a)
    mixed = DecoderStamp.from_json(merged_stamp([a, b]))
    assert mixed.versions == {} and mixed.digests == {"basic": "b1", "jxl": "mixed"}
    # a catalog from before stamps counts as the set before the lock
    assert DecoderStamp.from_json(merged_stamp([None])).digests == UNSTAMPED_DIGESTS


def test_the_build_driver_and_a_new_catalogs_stamp_load_no_decoder(tmp_path: Path) -> None:
    """`build`'s driver leaves the decoders to its fork server (start-up, docs/architecture.md): stamping
    the new catalog it makes must not load OpenCV or Pillow in it."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from chromatica_watch.offline import build; "
            "from chromatica_watch.storage.catalog import Catalog; "
            "from chromatica_watch.storage.decoder_stamp import check_decoders; "
            f"c = Catalog.open(Path({str(tmp_path)!r}), 'fp'); check_decoders(c); c.close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'PIL', 'rawpy', 'pillow_heif')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert _stamp(tmp_path).digests == LOCKED_DIGESTS  # stamped from the record
