"""A search result as the Python API and the CLI hand it out.

The daemon's answer and a search made here both pass through the same JSON form (`Result.to_json`), so a
`Match` is the same whichever way the index was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Match:
    """One search result: the file, how close its colours are, and the colours themselves."""

    path: str  # absolute
    relative_path: str  # to its watched root
    root: str
    id: int
    score: float  # Earth Mover's Distance in CIE delta E: 0 = the same colours, lower is closer
    similarity: float  # exp(-score / 20): 1 = the same colours
    dominant_colors: tuple[tuple[str, float], ...]  # ('#rrggbb', share of the image), largest first
    offline: bool = False  # its folder is not reachable now (an unplugged drive)
    sidecars: tuple[str, ...] = ()  # grouped searches: the other files of its RAW+JPEG pair (absolute)
    shares: tuple[tuple[str, float], ...] = ()  # ('#rrggbb', share it holds) of each colour asked about
    taken: str | None = None  # when it was taken (ISO 8601, the camera's wall clock), if known
    taken_source: str | None = None  # where that date comes from: "exif", "xmp", "png" or "mtime"
    camera: str | None = None
    orientation: str | None = None  # "landscape", "portrait" or "square"
    monochrome: bool | None = None  # no colour of its own (greyscale, sepia, cyanotype...)
    colourfulness: float | None = None  # RMS chroma, CIE delta E from grey (30 and up: vivid)
    # `path` and `sidecars` are for showing (one line: odd bytes and control characters escaped); these are
    # for opening: the names' bytes through surrogateescape, `os.fsencode(match.fs_path)` gives them back.
    fs_path: str = ""
    fs_sidecars: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Match:
        return cls(path=str(data["path"]), relative_path=str(data["relative_path"]), root=str(data["root"]),
                   id=int(data["id"]), score=float(data["score"]), similarity=float(data["similarity"]),
                   dominant_colors=tuple((str(c["hex"]), float(c["share"])) for c in data["dominant_colors"]),
                   offline=bool(data.get("offline", False)),
                   sidecars=tuple(str(p) for p in data.get("sidecars", ())),
                   shares=tuple((str(c["hex"]), float(c["share"])) for c in data.get("shares", ())),
                   taken=data.get("taken"), taken_source=data.get("taken_source"), camera=data.get("camera"),
                   orientation=data.get("orientation"), monochrome=data.get("monochrome"),
                   colourfulness=data.get("colourfulness"), fs_path=str(data.get("fs_path", data["path"])),
                   fs_sidecars=tuple(str(p) for p in data.get("fs_sidecars", data.get("sidecars", ()))))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "relative_path": self.relative_path, "root": self.root, "id": self.id,
                "score": self.score, "similarity": self.similarity,
                "dominant_colors": [{"hex": h, "share": s} for h, s in self.dominant_colors],
                "offline": self.offline, "sidecars": list(self.sidecars),
                "shares": [{"hex": h, "share": s} for h, s in self.shares], "taken": self.taken,
                "taken_source": self.taken_source, "camera": self.camera, "orientation": self.orientation,
                "monochrome": self.monochrome, "colourfulness": self.colourfulness, "fs_path": self.fs_path,
                "fs_sidecars": list(self.fs_sidecars)}
