"""Colour keywords in a photo's XMP sidecar, where digiKam, darktable, Lightroom and Immich read keywords: the
only module that reads or writes XMP (python-xmp-toolkit over Exempi, the Adobe XMP Toolkit's C wrapper).

A colour term ("teal") is written three ways, each as its tools expect it:
- digiKam's tag paths, `digiKam:TagsList` (rdf:Seq): "Colours/Teal" (digiKam, darktable's import, Immich);
- Lightroom's keyword hierarchy, `lr:hierarchicalSubject` (rdf:Bag): "Colours|Teal";
- plain keywords, Dublin Core `dc:subject` (rdf:Bag): "Teal" (every tool).

The photo itself is never opened for writing. An existing sidecar is merged: every other property and
keyword is kept, ours are replaced. Ours are the tags "Colours/<Term>" and "Colours|<Term>" of our vocabulary
(colour/terms.py), and in dc:subject the words we added, which the sidecar notes in a property of our own
(`chromaticaWatch:addedSubjects`): a word the user had typed before is theirs, and stays when ours go. A
sidecar that does not parse as XMP is left as it is (`SidecarUnreadable`). The new sidecar replaces the old
by `core.fsutil.atomic_write` (temp file, fsync, rename, fsync of the folder): a kill or a full disk leaves
the old sidecar or the new one, whole.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chromatica_watch.core.errors import ChromaticaError
from chromatica_watch.core.fsutil import atomic_write

DIGIKAM_NS = "http://www.digikam.org/ns/1.0/"
LIGHTROOM_NS = "http://ns.adobe.com/lightroom/1.0/"
DC_NS = "http://purl.org/dc/elements/1.1/"

PARENT = "Colours"
NAMINGS = ("name.ext.xmp", "name.xmp")  # IMG_1.jpg.xmp (digiKam, darktable), IMG_1.xmp (Lightroom's, for RAW)
MAX_SIDECAR_BYTES = 16 << 20  # a sidecar larger than this is not read (no tool writes one)

# (namespace, property, separator (None: plain words), whether made anew as an rdf:Seq)
_TAGS = (DIGIKAM_NS, "TagsList", "/", True)
_HIERARCHY = (LIGHTROOM_NS, "hierarchicalSubject", "|", False)
_SUBJECT = (DC_NS, "subject", None, False)
# Which dc:subject words we added (a word the user had typed before is theirs, and stays when ours go)
OUR_NS = "http://ns.chromatica-watch.org/1.0/"
_ADDED = (OUR_NS, "addedSubjects", None, False)


class KeywordsUnavailable(ChromaticaError):
    """The XMP toolkit cannot be loaded (Debian's libexempi8 is missing)."""


@functools.cache
def _toolkit() -> Any:
    """python-xmp-toolkit, loaded when a sidecar is first touched: it needs the system's Exempi library, and
    an install without it must still index and search."""
    try:
        import libxmp
    except Exception as exc:  # libxmp.ExempiLoadError, or an OSError from the loader
        raise KeywordsUnavailable("colour keywords need the Exempi library: install Debian's libexempi8 "
                                  f"(apt-get install libexempi8) ({exc})") from exc
    libxmp.XMPMeta.register_namespace(DIGIKAM_NS, "digiKam")
    libxmp.XMPMeta.register_namespace(LIGHTROOM_NS, "lr")
    libxmp.XMPMeta.register_namespace(OUR_NS, "chromaticaWatch")
    return libxmp


def available() -> str | None:
    """None when sidecars can be written, else why not (one line)."""
    try:
        _toolkit()
    except KeywordsUnavailable as exc:
        return str(exc)
    return None


class SidecarUnreadable(ChromaticaError):
    """A sidecar that is there but cannot be read as XMP: left untouched, and said why."""

    def __init__(self, path: bytes, reason: str) -> None:
        super().__init__(f"{os.fsdecode(path)}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    """What one sidecar came to: "written" (made or changed), "unchanged" (already so), "removed" (our
    keywords taken out), "deleted" (the sidecar held nothing else and is gone) or "absent" (no sidecar)."""

    path: bytes
    action: str


def sidecar_path(photo: bytes, naming: str = NAMINGS[0]) -> bytes:
    """The sidecar of a photo (absolute path, bytes): `photo.jpg.xmp`, or `photo.xmp` (naming "name.xmp")."""
    if naming == "name.xmp":
        stem, ext = os.path.splitext(photo)
        return (stem if ext and not os.path.basename(stem).startswith(b".") else photo) + b".xmp"
    return photo + b".xmp"


def word(term: str) -> str:
    """A term as a keyword: "teal" -> "Teal"."""
    return term[:1].upper() + term[1:]


def write_keywords(path: bytes, terms: Sequence[str], vocabulary: Sequence[str], *, dry_run: bool = False) -> Outcome:
    """Make the sidecar at `path` hold exactly `terms` as our colour keywords (merged into what it holds)."""
    words = [word(t) for t in terms]
    return _update(path, lambda meta: _set_ours(meta, words, {word(t) for t in vocabulary}), dry_run, "written",
                   creates=bool(words))


def remove_keywords(path: bytes, vocabulary: Sequence[str], *, dry_run: bool = False) -> Outcome:
    """Take our colour keywords out of the sidecar at `path`; a sidecar left holding nothing is deleted."""
    return _update(path, lambda meta: _set_ours(meta, [], {word(t) for t in vocabulary}), dry_run, "removed")


def _update(path: bytes, change: Callable[[Any], bool], dry_run: bool, done: str, creates: bool = False
            ) -> Outcome:
    data, mode = _read(path)
    if data is None and (done == "removed" or not creates):
        return Outcome(path, "absent")  # no sidecar is made to say nothing
    meta = _parse(path, data)
    if not change(meta):
        return Outcome(path, "unchanged")
    if done == "removed" and not _holds_anything(meta):
        if not dry_run:
            os.unlink(path)
        return Outcome(path, "deleted")
    if not dry_run:
        packet = meta.serialize_to_str(omit_packet_wrapper=False).encode("utf-8")
        atomic_write(Path(os.fsdecode(path)), packet, mode=mode)
    return Outcome(path, done)


def _read(path: bytes) -> tuple[bytes | None, int]:
    """(the sidecar's bytes, its permission bits to keep), or (None, 0o644) when there is none."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, 0o644
    except OSError as exc:
        raise SidecarUnreadable(path, f"cannot read the XMP sidecar ({exc.strerror}): left as it is") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SidecarUnreadable(path, "the XMP sidecar is not a regular file (a link, a folder...): left as it is")
    if st.st_size > MAX_SIDECAR_BYTES:
        raise SidecarUnreadable(path, f"the XMP sidecar is larger than {MAX_SIDECAR_BYTES >> 20} MB: left as it is")
    try:
        with open(path, "rb") as f:
            return f.read(), stat.S_IMODE(st.st_mode)
    except OSError as exc:
        raise SidecarUnreadable(path, f"cannot read the XMP sidecar ({exc.strerror}): left as it is") from exc


def _parse(path: bytes, data: bytes | None) -> Any:
    xmp = _toolkit()
    meta = xmp.XMPMeta()
    if data is None or not data.strip():
        return meta
    if b"rdf:RDF" not in data and b"xmpmeta" not in data:
        raise SidecarUnreadable(path, "the XMP sidecar holds no XMP packet: left as it is")
    try:
        meta.parse_from_str(data.decode("utf-8"))
    except (xmp.XMPError, UnicodeDecodeError) as exc:
        detail = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "bad XML"
        raise SidecarUnreadable(path, f"the XMP sidecar does not parse ({detail}): left as it is") from exc
    return meta


def _items(meta: Any, ns: str, prop: str) -> list[str]:
    if not meta.does_property_exist(ns, prop):
        return []
    return [str(meta.get_array_item(ns, prop, i)) for i in range(1, meta.count_array_items(ns, prop) + 1)]


def _set_ours(meta: Any, words: list[str], vocabulary: set[str]) -> bool:
    """Replace our keywords by `words` in the three arrays (and our note of the dc:subject words we added);
    whether anything changed."""
    def ours(value: str, sep: str) -> bool:
        parent, _, leaf = value.partition(sep)
        return parent == PARENT and leaf in vocabulary

    before = {p[1]: _items(meta, p[0], p[1]) for p in (_TAGS, _HIERARCHY, _SUBJECT, _ADDED)}
    added_before = set(before[_ADDED[1]])
    subject = [v for v in before["subject"] if v not in added_before or v in words]
    wanted = {
        "TagsList": ([v for v in before["TagsList"] if not ours(v, "/")], [f"{PARENT}/{w}" for w in words]),
        "hierarchicalSubject": ([v for v in before["hierarchicalSubject"] if not ours(v, "|")],
                                [f"{PARENT}|{w}" for w in words]),
        "subject": (subject, [w for w in words if w not in subject]),
    }
    # the words of dc:subject that are ours: those we add now, and those we added before and keep
    ours_now = [w for w in words if w in added_before or w not in subject]
    wanted[_ADDED[1]] = ([v for v in before[_ADDED[1]] if v in ours_now],
                         [w for w in ours_now if w not in added_before])
    changed = False
    for ns, prop, _, ordered in (_TAGS, _HIERARCHY, _SUBJECT, _ADDED):
        kept, added = wanted[prop]
        if kept + added != before[prop]:
            _replace_items(meta, ns, prop, before[prop], kept, added, ordered)
            changed = True
    return changed


def _replace_items(meta: Any, ns: str, prop: str, old: list[str], kept: list[str], added: list[str],
                   ordered: bool) -> None:
    """Delete the items not `kept` (`kept` is `old` with some left out: the array keeps its form, Bag or Seq,
    and its other items in their order), then append `added`; an array left empty goes."""
    keep = list(kept)
    drop = []
    for i, value in enumerate(old, start=1):
        if keep and keep[0] == value:
            keep.pop(0)
        else:
            drop.append(i)
    for i in reversed(drop):
        meta.delete_property(ns, f"{prop}[{i}]")
    for value in added:
        options = None if meta.does_property_exist(ns, prop) else {
            "prop_value_is_array": True, "prop_array_is_ordered": ordered}
        meta.append_array_item(ns, prop, value, options)
    if not kept and not added and meta.does_property_exist(ns, prop):
        meta.delete_property(ns, prop)


def _holds_anything(meta: Any) -> bool:
    return any(not options.get("IS_SCHEMA") for _, _, _, options in _toolkit().XMPIterator(meta))
