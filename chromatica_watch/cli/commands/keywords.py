"""`keywords write|remove`: each indexed photo's main colours as keywords in its XMP sidecar, or taken out again.

Through the running daemon when it answers (it records what could not be written, for `failed`), else on the
index dir opened read-only here (what could not be written is listed here only). No photo is read or written:
the colours come from the catalog, and only sidecars are written.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from chromatica_watch.access.reach import use_index
from chromatica_watch.cli.options import SharedOptions, load_config
from chromatica_watch.cli.output import print_json, say

if TYPE_CHECKING:
    from chromatica_watch.cli.options import Subparsers


def add_keywords(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("keywords", help="write the photos' main colours as keywords in their XMP sidecars "
                                        "(digiKam, darktable, Lightroom, Immich), or remove them",
                       parents=[shared.config, shared.json])
    p.add_argument("action", choices=("write", "remove"),
                   help="write: add or update our colour keywords; remove: take them out (nothing else is touched)")
    p.add_argument("--in", dest="folder", metavar="FOLDER", help="only the photos in this folder (under a root)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    p.set_defaults(func=cmd_keywords)


def cmd_keywords(args: argparse.Namespace) -> int:
    folder = os.path.abspath(os.path.expanduser(args.folder)) if args.folder else None
    report = use_index(load_config(args), lambda index: index.keywords(args.action, folder, dry_run=args.dry_run))
    if args.json:
        print_json(report)
    else:
        for f in report["failed"]:
            print(f"{f['path']}\t{f['reason']}")
        say(summary(report))
    if report.get("stopped"):
        say(f"stopped: {report['stopped']}")
    return 1 if report["failed"] or report.get("stopped") else 0


def summary(report: dict[str, Any]) -> str:
    """One line: what was done to how many sidecars."""
    would = "would be " if report["dry_run"] else ""
    if report["action"] == "write":
        done = f"{report['written']} sidecar(s) {would}written"
    else:
        done = (f"colour keywords {would}removed from {report['removed'] + report['deleted']} sidecar(s)"
                f" ({report['deleted']} {would}deleted: nothing else was in them)")
    return (f"{report['photos']} photo(s): {done}, {report['unchanged']} unchanged, {len(report['failed'])} "
            "could not be written" + (" (dry run)" if report["dry_run"] else ""))
