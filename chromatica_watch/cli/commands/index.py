"""Commands about one index, whoever holds it: failed, retry-failed, compact, roots, relocate.

Each reaches the index through `access.reach.use_index`: the running daemon when it answers for this
index, else the index directory opened here.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from chromatica_watch.access.reach import index_dir_for, use_index
from chromatica_watch.cli.options import SharedOptions, load_config
from chromatica_watch.cli.output import fmt_date, print_json, say
from chromatica_watch.core import config as config_mod

if TYPE_CHECKING:
    from chromatica_watch.access.interface import IndexAccess
    from chromatica_watch.cli.options import Subparsers


def add_failed(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("failed", help="list files that could not be indexed", parents=[shared.config, shared.json])
    p.set_defaults(func=cmd_failed)


def cmd_failed(args: argparse.Namespace) -> int:
    failures = use_index(load_config(args), lambda index: index.failures())
    if args.json:
        print_json(failures)
        return 0
    for f in failures:
        print(f"{f['path']}\t{f['reason']}")
    say(f"{len(failures)} failed file(s)")
    return 0


def add_retry_failed(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("retry-failed", help="queue failed files for another try", parents=[shared.config])
    p.set_defaults(func=cmd_retry_failed)


def cmd_retry_failed(args: argparse.Namespace) -> int:
    print(use_index(load_config(args), _retry_failed))
    return 0


def _retry_failed(index: IndexAccess) -> str:
    """The daemon queues the files now; with none running, their records are cleared for its next start."""
    n = index.retry_failed()
    if index.is_daemon:
        return f"re-queued {n} failed file(s)"
    return f"cleared {n} failure record(s); the daemon retries them at its next start"


def add_compact(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("compact", help="rebuild the live index without deleted photos now (daemon running or not)",
                       parents=[shared.index_dir, shared.config])
    p.set_defaults(func=cmd_compact)


def cmd_compact(args: argparse.Namespace) -> int:
    """Rebuild the live index without its tombstones: through the daemon when it holds this index,
    else on the index dir directly."""
    cfg = load_config(args)
    index_dir = index_dir_for(cfg, args.index_dir)
    before, after = use_index(cfg, lambda index: index.compact(), args.index_dir)
    print(f"the live index of {index_dir} holds {after} vectors ({before - after} tombstoned ones dropped)")
    return 0


def add_roots(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("roots", help="the folders the index holds photos of: watched, offline or retired",
                       parents=[shared.config, shared.json])
    p.set_defaults(func=cmd_roots)


def cmd_roots(args: argparse.Namespace) -> int:
    roots = use_index(load_config(args), lambda index: index.roots())
    if args.json:
        print_json(roots)
        return 0
    for r in roots:
        print(f"{r['path']}: {_root_state(r)}; {r['photos']} photos, {r['failed']} failed"
              + (f", last scan {fmt_date(r['last_scan'])}" if r.get("last_scan") else ""))
    return 0


def _root_state(root: dict[str, Any]) -> str:
    state = str(root["state"]) + (f" ({root['problem']})" if root.get("problem") else "")
    if root.get("watch") and root["watch"] != "events":
        state += f" by {root['watch']}"
    if root.get("dropped_after"):
        state += f", rows kept until {fmt_date(root['dropped_after'])}"
    return state


def add_relocate(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("relocate", help="the photos of OLD are now in NEW: rewrite the stored paths (reads no image)",
                       parents=[shared.index_dir, shared.config, shared.json])
    p.add_argument("old", help="the folder the index knows")
    p.add_argument("new", help="where its photos are now")
    p.add_argument("--dry-run", action="store_true", help="check a sample and report, change nothing")
    p.add_argument("--force", action="store_true", help="relocate even if most sampled photos are not in NEW")
    p.add_argument("--limit", type=int, default=10, help="missing or different paths shown (default 10)")
    p.set_defaults(func=cmd_relocate)


def cmd_relocate(args: argparse.Namespace) -> int:
    """The stored paths of OLD become NEW's, reading no image: through the daemon when it holds the index."""
    cfg = load_config(args)
    old, new = config_mod.root_path(args.old), config_mod.root_path(args.new)
    report = use_index(cfg, lambda index: index.relocate(old, new, dry_run=args.dry_run, force=args.force),
                       args.index_dir)
    if args.json:
        print_json(report)
        return 0
    _print_relocation(report, old, new, args.limit)
    return 0


def _print_relocation(report: dict[str, Any], old: str, new: str, limit: int) -> None:
    print(report["summary"])
    check = report["check"]
    for path in check["missing"][:limit]:
        print(f"  missing   {path}")
    for path in check["different"][:limit]:
        print(f"  different {path}")
    if report["dry_run"]:
        print(f"dry run: {check['rows']} rows would be rewritten from {old} to {new}")
        return
    print(f"relocated {report['moved']} photos from {old} to {new}; no image was read"
          + (f" ({report['superseded']} already indexed there kept instead)" if report["superseded"] else ""))
    if report.get("configured") is False:
        print(f"note: {new} is not in the config, so its photos are not searched until it is added to `roots`")
