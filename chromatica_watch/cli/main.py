"""The command line: the only place that prints. Domain errors become one line and an exit code."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from chromatica_watch.access.remote import ask_status, daemon_available, request
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import ChromaticaError, DaemonNotRunning, UsageError
from chromatica_watch.daemon.status import judge, read_status

if TYPE_CHECKING:
    from chromatica_watch.access.api import Match
    from chromatica_watch.offline.build import Progress

logger = logging.getLogger(__name__)


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A one-line bar with rate and ETA on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, interval: float = 5.0) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.done >= p.total
        if not final and now - self._last < self.interval:
            return
        self._last = now
        rate = p.done / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.total - p.done) / rate if rate > 0 else 0.0
        frac = p.done / p.total if p.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {p.done}/{p.total} {frac:6.1%}  {rate:6.1f} img/s  ETA {_fmt_duration(eta)}"
                f"  failed {p.failed}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _setup_cli_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    _setup_cli_logging(args.verbose)
    if args.batch_size <= 0 or args.max_dimension < 8 or args.workers < 0:
        raise UsageError("--batch-size must be > 0, --max-dimension >= 8, --workers >= 0")
    if args.dask_path_map and not args.dask:
        raise UsageError("--dask-path-map needs --dask")
    if args.dask_timeout <= 0:
        raise UsageError("--dask-timeout must be > 0")
    from chromatica_watch.core.interrupt import stop_on_sigint

    with stop_on_sigint(on_first=_say_stopping) as should_stop:
        if args.dask is None and args.shards == 1:
            from chromatica_watch.ingest.pool import start_worker_server

            start_worker_server()  # the workers' decoders load in their server while DuckDB and FAISS load here
        from chromatica_watch.offline.build import BuildOptions, build
        opts = BuildOptions(dataset=Path(args.dataset), output=Path(args.output), batch_size=args.batch_size,
                            max_dimension=args.max_dimension, max_pixels=args.max_pixels, workers=args.workers,
                            excludes=tuple(args.exclude), match_by=args.match_by, dask=args.dask,
                            dask_path_map=_path_map(args.dask_path_map), dask_timeout=args.dask_timeout)
        if args.shards != 1:
            from chromatica_watch.offline.shards import build_sharded

            report = build_sharded(opts, args.shards, should_stop)
        else:
            report = build(opts, on_progress=None if args.quiet else ProgressBar(), should_stop=should_stop)
    if report.adopted:
        print(f"took over the index's photos of {report.adopted} (matched by name, not read again)")
    print(f"indexed {report.indexed} new images ({report.unchanged} already indexed, {report.moved} moved, "
          f"{report.tombstoned} removed) in {report.seconds:.1f} s, {report.images_per_second:.1f} img/s; "
          f"{report.total_live} in the index")
    if report.failures:
        print(f"{len(report.failures)} files could not be indexed; see {opts.output}/failed_images_report.txt")
    if report.interrupted:
        print("chromatica-watch: interrupted; what was read is kept: run the same command again to go on",
              file=sys.stderr)
        return 130
    return 0


def _say_stopping() -> None:
    sys.stderr.write("\nstopping: committing the files in hand (Ctrl-C again to stop at once)\n")


def _path_map(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for spec in specs:
        src, sep, dest = spec.partition("=")
        if not sep or not src or not dest:
            raise UsageError(f"--dask-path-map takes SRC=DEST, not {spec!r}")
        pairs.append((src, dest))
    return tuple(pairs)


def cmd_validate(args: argparse.Namespace) -> int:
    from chromatica_watch.offline.validate import validate

    _setup_cli_logging(args.verbose)
    checks = validate(Path(args.index_dir))
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    print("index is valid" if not failed else f"{len(failed)} check(s) failed")
    return 0 if not failed else 1


def cmd_merge(args: argparse.Namespace) -> int:
    from chromatica_watch.offline.merge import merge

    _setup_cli_logging(args.verbose)
    report = merge([Path(p) for p in args.index_dirs], Path(args.output))
    if args.json:
        print(json_dumps(report.to_json()))
        return 0
    index = (f"the live index of {report.base} kept, {report.vectors_appended} vectors appended"
             if report.checkpoint_reused else f"the live index built from the catalog ({report.vectors} vectors)")
    print(f"merged {len(report.inputs)} index dirs ({' + '.join(str(n) for n in report.rows)} rows) into "
          f"{report.output}: {report.live} live, {report.duplicates} duplicates dropped, {report.failed} failed; "
          f"{index}; {report.seconds:.1f} s")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from chromatica_watch.imaging.formats import format_support

    support = format_support()
    if args.json:
        print(json_dumps([f.to_json() for f in support]))
        return 0
    for f in support:
        state = "available" if f.available else f"MISSING: {f.install}"
        print(f"{f.name:32} {state:12}  package {f.package}")
        print(f"    {' '.join(f.extensions)}")
        if f.note:
            print(f"    {f.note}")
    return 0


def _config_file(args: argparse.Namespace) -> Path | None:
    """The config file in force for this command (`--config`, $CHROMATICA_WATCH_CONFIG, the user's)."""
    found = config_mod.find_config_file(Path(args.config) if getattr(args, "config", None) else None)
    return found.absolute() if found is not None else None


def _load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(_config_file(args))


def cmd_run(args: argparse.Namespace) -> int:
    from chromatica_watch.daemon.daemon import run

    path = _config_file(args)
    return run(config_mod.load(path), path)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    saved, saved_problem = read_status(cfg.status_path)
    live, live_problem = ask_status(cfg.socket_path)  # the daemon itself, when it should be alive
    code, verdict = judge(live, live_problem, saved, saved_problem)
    data = live if live is not None else saved
    config_file = str(_config_file(args) or "")
    if args.json:
        print(json_dumps({"verdict": verdict, "exit_code": code, "status": data, "live": live is not None,
                          "config_file": config_file or None}))
        return code
    print(f"chromatica-watch: {verdict}")
    in_force = live.get("config_file") or "" if live is not None else config_file
    print(f"  config {in_force or 'built-in defaults (no config file)'}"
          + (f" (this command found {config_file or 'none'}: set the same --config or "
             "$CHROMATICA_WATCH_CONFIG)" if in_force != config_file else ""))
    if live is None:
        return code
    c = live.get("counts", {})
    print(f"  indexed {c.get('indexed', 0)}, queued {c.get('queued', 0)}, failed {c.get('failed', 0)}, "
          f"tombstoned {c.get('tombstoned', 0)}")
    print(f"  throughput {live.get('throughput_per_s', 0)} img/s"
          + (f", ETA {_fmt_duration(live['eta_seconds'])}" if live.get("eta_seconds") else ""))
    for root in live.get("roots", []):
        photos = f"{root.get('photos', 0)} photos"
        if root.get("state") == "retired":
            kept = f", kept until {_date(root['dropped_after'])}" if root.get("dropped_after") else ""
            print(f"  root {root['path']}: retired (not in the config): {photos} hidden from searches{kept}")
            continue
        mode = live.get("watcher_mode", {}).get(root["path"], "-")
        if root["path"] in live.get("watch_unchecked", []):
            mode += " (which folders got a watch cannot be checked: those without one wait for the rescan)"
        where = "online" if root["online"] else f"OFFLINE ({root.get('problem') or 'missing'})"
        print(f"  root {root['path']}: {where}, {photos}, watcher {mode}")
    if upgrade := live.get("upgrade"):
        rate = live.get("throughput_per_s") or 0
        left = max(0, upgrade["total"] - upgrade["done"])
        print(f"  upgrading: {upgrade['done']} of {upgrade['total']} photos indexed again with the new histogram "
              f"settings" + (f", ETA {_fmt_duration(left / rate)}" if rate and left else "")
              + "; searches use the previous index until then")
    if live.get("web_url"):
        print(f"  web app {live['web_url']}  (`chromatica-watch open`)")
    if live.get("last_checkpoint"):
        print(f"  last checkpoint {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(live['last_checkpoint']))}")
    for alert in live.get("alerts", []):
        print(f"  NOTE: {alert['message']}")
    for f in live.get("recent_failures", [])[-5:]:
        print(f"  failed: {f['path']}: {f['reason']}")
    return code


def _failures_without_daemon(cfg: Config) -> list[dict[str, object]]:
    from chromatica_watch.colour.histogram import fingerprint
    from chromatica_watch.storage.catalog import Catalog

    with Catalog.open(Path(cfg.index_dir), fingerprint(cfg.max_dimension), read_only=True) as catalog:
        return [f.to_json() for f in catalog.failed_files().values()]


def cmd_failed(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    if daemon_available(cfg.socket_path):
        failures = request(cfg.socket_path, {"op": "failed"})["failures"]
    else:
        failures = _failures_without_daemon(cfg)
    if args.json:
        print(json_dumps(failures))
        return 0
    for f in failures:
        print(f"{f['path']}\t{f['reason']}")
    print(f"{len(failures)} failed file(s)", file=sys.stderr)
    return 0


def cmd_retry_failed(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    if daemon_available(cfg.socket_path):
        n = request(cfg.socket_path, {"op": "retry_failed"})["requeued"]
        print(f"re-queued {n} failed file(s)")
        return 0
    from chromatica_watch.colour.histogram import fingerprint
    from chromatica_watch.storage.catalog import Catalog

    with Catalog.open(Path(cfg.index_dir), fingerprint(cfg.max_dimension), must_exist=True) as catalog:
        n = catalog.clear_failures()
    print(f"cleared {n} failure record(s); the daemon retries them at its next start")
    return 0


def _swatch(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[48;2;{r};{g};{b}m  \x1b[0m"


def format_matches(matches: Sequence[Match], swatches: bool = False) -> list[str]:
    """A table: rank, colour distance (EMD in CIE delta E: 0 = the same colours), dominant colours, path."""
    lines = [f"{'#':>3}  {'ΔE':>5}  {'colors':<{_COLORS_WIDTH}}  path"]
    for rank, m in enumerate(matches, 1):
        shown = m.dominant_colors[:3]
        colors = "  ".join(f"{h} {share:3.0%}" for h, share in shown)
        if swatches:  # the swatch is 2 visible columns, added after padding so widths stay right
            colors = "  ".join(f"{_swatch(h)} {h} {share:3.0%}" for h, share in shown) + \
                " " * (_COLORS_WIDTH - len(colors) - 3 * len(shown))
        where = f"{m.path}  (offline: {m.root} is not reachable)" if m.offline else m.path
        if m.sidecars:
            where += f"  (+ {', '.join(os.path.basename(p) for p in m.sidecars)})"
        lines.append(f"{rank:>3}  {m.score:5.1f}  {colors:<{_COLORS_WIDTH}}  {where}")
    return lines


_COLORS_WIDTH = 3 * len("#rrggbb 100%") + 2 * 2


def cmd_search(args: argparse.Namespace) -> int:
    from chromatica_watch.access.api import search

    cfg = _load_config(args)
    if args.color and args.image:
        raise UsageError("search by --color or by --image, not both")
    if not args.color and not args.image:
        raise UsageError("nothing to search for: give --color '#ff8800[:weight]' (repeatable) or --image PATH")
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    matches = search(args.color or None, args.image, k=args.k, config=cfg, index_dir=args.index_dir,
                     group_sidecars=args.group_sidecars)
    if args.json:
        print(json_dumps([m.to_json() for m in matches]))
        return 0
    if not matches:
        print("no matches: the index is empty", file=sys.stderr)
        return 0
    swatches = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for line in format_matches(matches, swatches):
        print(line)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """Rebuild the live index without its tombstones: through the daemon when it holds this index,
    else on the index dir directly."""
    cfg = _load_config(args)
    index_dir = Path(args.index_dir).resolve() if args.index_dir else Path(cfg.index_dir)
    if _daemon_index(cfg, args.index_dir):
        done = request(cfg.socket_path, {"op": "compact"}, timeout=3600)["compacted"]
        before, after = done["before"], done["after"]
    else:
        from chromatica_watch.colour.histogram import fingerprint
        from chromatica_watch.storage.indexdir import compact

        before, after = compact(index_dir, fingerprint(cfg.max_dimension))
    print(f"the live index of {index_dir} holds {after} vectors ({before - after} tombstoned ones dropped)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """What `build --dataset D --output I` would do, stat-only (no image opened)."""
    from chromatica_watch.offline.delta import diff_dataset

    report = diff_dataset(Path(args.index), Path(args.dataset), args.match_by, tuple(args.exclude))
    if args.json:
        print(json_dumps(report.to_json()))
        return 0
    c = report.counts()
    if report.adopted:
        print(f"takes over the index's photos of {report.adopted} (by name)")
    print(f"{c['files']} files in {report.dataset}: {c['unchanged']} unchanged, {c['new']} new, {c['changed']} "
          f"changed, {c['moved']} moved, {c['missing']} missing"
          + (f", {c['ambiguous']} ambiguous names" if report.match_by == "name" else "")
          + (f", {c['failed_unchanged']} failed before and unchanged" if c["failed_unchanged"] else ""))
    print(f"to read: {report.to_read} files; the others need no read")
    for label, items in (("new", report.new), ("changed", report.changed), ("missing", report.missing),
                         ("ambiguous", report.ambiguous)):
        _print_some(label, items, args.limit)
    _print_some("moved", [f"{a} -> {b}" for a, b in report.moved], args.limit)
    for folder, n in report.other_folders.items():
        print(f"the index also holds {n} photos of {folder}"
              + ("; `chromatica-watch relocate` or --match-by name reuses them" if report.match_by == "path" else ""))
    return 0


def _print_some(label: str, items: Sequence[str], limit: int) -> None:
    for item in items[:limit]:
        print(f"  {label:9} {item}")
    if len(items) > limit:
        print(f"  {label:9} ... and {len(items) - limit} more (--json lists all)")


def _daemon_index(cfg: Config, index_dir: str | None) -> bool:
    """Whether this command is about the running daemon's index (then it must go through the daemon)."""
    wanted = Path(index_dir).resolve() if index_dir else Path(cfg.index_dir)
    return wanted == Path(cfg.index_dir) and daemon_available(cfg.socket_path)


def cmd_roots(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    if daemon_available(cfg.socket_path):
        roots = request(cfg.socket_path, {"op": "roots"})["roots"]
    else:
        from chromatica_watch.ingest.roots import root_problem, root_views
        from chromatica_watch.storage.catalog import Catalog

        with Catalog.open(Path(cfg.index_dir), None, read_only=True) as catalog:
            records = catalog.root_records()
        roots = [v.to_json() for v in root_views(records, cfg.roots, {r: root_problem(r) for r in cfg.roots},
                                                 cfg.retired_root_grace_days)]
    if args.json:
        print(json_dumps(roots))
        return 0
    for r in roots:
        state = r["state"] + (f" ({r['problem']})" if r.get("problem") else "")
        if r.get("dropped_after"):
            state += f", rows kept until {_date(r['dropped_after'])}"
        scanned = f", last scan {_date(r['last_scan'])}" if r.get("last_scan") else ""
        print(f"{r['path']}: {state}; {r['photos']} photos, {r['failed']} failed{scanned}")
    return 0


def _date(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def cmd_relocate(args: argparse.Namespace) -> int:
    """The stored paths of OLD become NEW's, reading no image: through the daemon when it holds the index."""
    cfg = _load_config(args)
    old, new = config_mod.root_path(args.old), config_mod.root_path(args.new)
    payload = {"op": "relocate", "old": old, "new": new, "dry_run": args.dry_run, "force": args.force}
    if _daemon_index(cfg, args.index_dir):
        report = request(cfg.socket_path, payload, timeout=3600)["relocated"]
    else:
        from chromatica_watch.colour.histogram import fingerprint
        from chromatica_watch.ingest.roots import relocate
        from chromatica_watch.storage.catalog import Catalog

        index_dir = Path(args.index_dir).resolve() if args.index_dir else Path(cfg.index_dir)
        with Catalog.open(index_dir, fingerprint(cfg.max_dimension), read_only=args.dry_run,
                          must_exist=True) as catalog:
            report = relocate(catalog, old, new, dry_run=args.dry_run, force=args.force, rewrite=catalog.relocate)
        report["configured"] = None  # no daemon: the config is read at its next start
    if args.json:
        print(json_dumps(report))
        return 0
    print(report["summary"])
    check = report["check"]
    for path in check["missing"][:args.limit]:
        print(f"  missing   {path}")
    for path in check["different"][:args.limit]:
        print(f"  different {path}")
    if report["dry_run"]:
        print(f"dry run: {check['rows']} rows would be rewritten from {old} to {new}")
        return 0
    print(f"relocated {report['moved']} photos from {old} to {new}; no image was read"
          + (f" ({report['superseded']} already indexed there kept instead)" if report["superseded"] else ""))
    if report.get("configured") is False:
        print(f"note: {new} is not in the config, so its photos are not searched until it is added to `roots`")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    """Print the web app's address (with its access token) and open it in the browser."""
    cfg = _load_config(args)
    live, _ = ask_status(cfg.socket_path)
    if live is None:
        raise DaemonNotRunning("the daemon is not running: the web app is served by it (start it with "
                               "`chromatica-watch run`, or its service)")
    url = live.get("web_url")
    if not url:
        why = "web = false in its config" if not cfg.web else "it could not listen: see `chromatica-watch status`"
        raise ChromaticaError(f"the daemon serves no web app ({why})")
    print(url)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    return 0


def cmd_init_config(args: argparse.Namespace) -> int:
    target = Path(args.config) if args.config else config_mod.user_config_file()
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists already; use --force to replace it with the defaults")
    from chromatica_watch.core.fsutil import atomic_write

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, config_mod.default_config_text().encode())
    except OSError as exc:
        raise ChromaticaError(f"cannot write {target}: {exc.strerror}") from exc
    print(f"wrote {target} (every setting, commented out at its default); every command now reads it")
    return 0


def cmd_install_service(args: argparse.Namespace) -> int:
    from chromatica_watch.daemon.systemd import install_service

    if args.user and not args.system:
        raise UsageError("--user only applies with --system")
    config_path = _config_file(args)  # the unit runs with the file this command finds, whatever its env
    if config_path is not None and not config_path.is_file():
        raise UsageError(f"config file {config_path} not found")
    plan = install_service(system=args.system, dry_run=args.dry_run, config_path=config_path, user=args.user)
    if plan.written:
        print(f"wrote {plan.path}")
    else:
        print(f"would write {plan.path}:\n")
        print(plan.unit_text)
    print("to start it now and at every boot/login, run:")
    for line in plan.commands:
        print(f"  {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromatica-watch",
                                     description="Keep a color-search index of a photo folder live.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="index a folder offline (resumable)")
    p.add_argument("--dataset", required=True, help="folder of images to index (recursively)")
    p.add_argument("--output", required=True, help="index directory to create or update")
    p.add_argument("--batch-size", type=int, default=100, help="images per committed batch (default 100)")
    p.add_argument("--max-dimension", type=int, default=DEFAULT_MAX_DIMENSION, help="longest side before histogramming")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse images above this many pixels")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    p.add_argument("--exclude", action="append", default=[], help="glob of paths to skip (repeatable)")
    p.add_argument("--match-by", choices=("path", "name"), default="path",
                   help="name: take over an index built under another folder name, pairing files by name "
                        "(matched files are not read again)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="make the histograms on a Dask cluster: a scheduler address (tcp://host:8786), or local[:N] "
                        "for N local worker processes; needs 'chromatica-watch[dask]' here and on the workers")
    p.add_argument("--dask-path-map", action="append", default=[], metavar="SRC=DEST",
                   help="the dataset folder SRC is mounted at DEST on the workers (repeatable)")
    p.add_argument("--dask-timeout", type=float, default=10.0,
                   help="seconds to reach the scheduler and see a worker (default 10)")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="N writers, each building a disjoint part into its own index, then merged into the "
                        "(new) output; the workers are shared among them")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check an index directory")
    p.add_argument("index_dir")
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("merge", help="combine index directories built with the same settings into a new one",
                       description="Combine index directories built with the same histogram settings (two "
                                   "machines, two halves of a collection) into a new one, without decoding any "
                                   "image. A file in several of them (same root and path) is kept once, its "
                                   "newest version.")
    p.add_argument("index_dirs", nargs="+", metavar="INDEX_DIR", help="index directories to merge (two or more)")
    p.add_argument("--output", required=True, help="the new index directory (must not exist, or be empty)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("formats", help="the image formats this install reads, and the package each needs")
    p.add_argument("--json", action="store_true", help="the list as JSON")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("--config", help="TOML config file (default: $CHROMATICA_WATCH_CONFIG, else "
                                    "~/.config/chromatica-watch/config.toml if it exists, else built-in defaults)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="show the daemon's status (exit 0 healthy, 1 degraded, 3 not running)")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("failed", help="list files that could not be indexed")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_failed)

    p = sub.add_parser("retry-failed", help="queue failed files for another try")
    p.add_argument("--config")
    p.set_defaults(func=cmd_retry_failed)

    p = sub.add_parser("search", help="find photos by color or by an example image",
                       description="Find photos by weighted colors or by an example image. Asks the running "
                                   "daemon; with none running, opens the index read-only.")
    p.add_argument("--color", "-c", action="append", default=[], metavar="COLOR[:WEIGHT]",
                   help="a color like '#ff8800', '#f80' or 'teal', optionally weighted ('#ff8800:0.7'); repeatable, "
                        "up to 8")
    p.add_argument("--image", "-i", metavar="PATH", help="find photos colored like this one")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--group-sidecars", action="store_true",
                   help="show a camera's RAW and the JPEG or HEIF beside it (same name) as one result")
    p.add_argument("--json", action="store_true", help="results as JSON")
    p.add_argument("--index-dir", help="search this index directory read-only (e.g. one made by build)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("compact", help="rebuild the live index without deleted photos now (daemon running or not)")
    p.add_argument("--index-dir", help="an index directory (default: the daemon's)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("diff", help="what a build would do: new, changed, moved, missing files (reads no image)")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--dataset", required=True, help="folder of images")
    p.add_argument("--match-by", choices=("path", "name"), default="path",
                   help="pair files with the index's rows by relative path (default) or by file name")
    p.add_argument("--exclude", action="append", default=[], help="glob of paths to skip (repeatable)")
    p.add_argument("--json", action="store_true", help="counts and every list as JSON")
    p.add_argument("--limit", type=int, default=10, help="paths shown per list (default 10)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("roots", help="the folders the index holds photos of: watched, offline or retired")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_roots)

    p = sub.add_parser("relocate", help="the photos of OLD are now in NEW: rewrite the stored paths (reads no image)")
    p.add_argument("old", help="the folder the index knows")
    p.add_argument("new", help="where its photos are now")
    p.add_argument("--dry-run", action="store_true", help="check a sample and report, change nothing")
    p.add_argument("--force", action="store_true", help="relocate even if most sampled photos are not in NEW")
    p.add_argument("--index-dir", help="an index directory (default: the daemon's)")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=10, help="missing or different paths shown (default 10)")
    p.set_defaults(func=cmd_relocate)

    p = sub.add_parser("open", help="open the web app in your browser (prints its address)")
    p.add_argument("--config")
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("init-config", help="write a commented copy of the default config to the user's config file")
    p.add_argument("--config", help="write it here instead of ~/.config/chromatica-watch/config.toml")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_init_config)

    p = sub.add_parser("install-service", help="write the systemd unit and print the systemctl commands")
    p.add_argument("--system", action="store_true",
                   help="install the system template unit chromatica-watch@.service (needs root)")
    p.add_argument("--dry-run", action="store_true", help="show the unit and the commands, write nothing")
    p.add_argument("--config", help="TOML config file the service runs with")
    p.add_argument("--user", help="with --system: whose photos to index (default: the user who ran sudo)")
    p.set_defaults(func=cmd_install_service)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe (`status | head -1`) is caught below
        # Everything left is freed by the exit anyway: frozen, it is skipped by the interpreter's last
        # garbage collections (~40 ms with DuckDB, FAISS and pyarrow loaded, for every command).
        gc.freeze()
        return code
    except ChromaticaError as exc:
        print(f"chromatica-watch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("chromatica-watch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a traceback. Point stdout at /dev/null so
        # that the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the signal would report


def json_dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
