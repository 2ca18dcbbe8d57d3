"""Commands on index directories, with no daemon involved: build, validate, merge, formats, diff."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chromatica_watch.cli.options import SharedOptions, setup_logging
from chromatica_watch.cli.output import interrupted, print_json, print_some
from chromatica_watch.core.defaults import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS
from chromatica_watch.core.errors import UsageError

if TYPE_CHECKING:
    from chromatica_watch.cli.options import Subparsers


def add_build(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("build", help="index a folder offline (resumable)", parents=[shared.verbose])
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
    p.set_defaults(func=cmd_build)


def _check_build_args(args: argparse.Namespace) -> None:
    if args.batch_size <= 0 or args.max_dimension < 8 or args.workers < 0:
        raise UsageError("--batch-size must be > 0, --max-dimension >= 8, --workers >= 0")
    if args.dask_path_map and not args.dask:
        raise UsageError("--dask-path-map needs --dask")
    if args.dask_timeout <= 0:
        raise UsageError("--dask-timeout must be > 0")


def cmd_build(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    _check_build_args(args)
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
            from chromatica_watch.cli.progress import BuildProgress  # tqdm: 30 ms, only for a build

            with BuildProgress() as bar:
                report = build(opts, on_progress=None if args.quiet else bar, should_stop=should_stop)
    if report.adopted:
        print(f"took over the index's photos of {report.adopted} (matched by name, not read again)")
    print(f"indexed {report.indexed} new images ({report.unchanged} already indexed, {report.moved} moved, "
          f"{report.tombstoned} removed) in {report.seconds:.1f} s, {report.images_per_second:.1f} img/s; "
          f"{report.total_live} in the index")
    if report.failures:
        print(f"{len(report.failures)} files could not be indexed; see {opts.output}/failed_images_report.txt")
    if report.interrupted:
        return interrupted("; what was read is kept: run the same command again to go on")
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


def add_validate(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("validate", help="check an index directory", parents=[shared.verbose])
    p.add_argument("index_dir")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from chromatica_watch.offline.validate import validate

    setup_logging(args.verbose)
    checks = validate(Path(args.index_dir))
    for c in checks:
        print(f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    print("index is valid" if not failed else f"{len(failed)} check(s) failed")
    return 0 if not failed else 1


def add_merge(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("merge", help="combine index directories built with the same settings into a new one",
                       description="Combine index directories built with the same histogram settings (two "
                                   "machines, two halves of a collection) into a new one, without decoding any "
                                   "image. A file in several of them (same root and path) is kept once, its "
                                   "newest version.", parents=[shared.json, shared.verbose])
    p.add_argument("index_dirs", nargs="+", metavar="INDEX_DIR", help="index directories to merge (two or more)")
    p.add_argument("--output", required=True, help="the new index directory (must not exist, or be empty)")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from chromatica_watch.offline.merge import merge

    setup_logging(args.verbose)
    report = merge([Path(p) for p in args.index_dirs], Path(args.output))
    if args.json:
        print_json(report.to_json())
        return 0
    index = (f"the live index of {report.base} kept, {report.vectors_appended} vectors appended"
             if report.checkpoint_reused else f"the live index built from the catalog ({report.vectors} vectors)")
    print(f"merged {len(report.inputs)} index dirs ({' + '.join(str(n) for n in report.rows)} rows) into "
          f"{report.output}: {report.live} live, {report.duplicates} duplicates dropped, {report.failed} failed; "
          f"{index}; {report.seconds:.1f} s")
    return 0


def add_formats(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("formats", help="the image formats this install reads, and the package each needs",
                       parents=[shared.json])
    p.set_defaults(func=cmd_formats)


def cmd_formats(args: argparse.Namespace) -> int:
    from chromatica_watch.imaging.formats import format_support

    support = format_support()
    if args.json:
        print_json([f.to_json() for f in support])
        return 0
    for f in support:
        state = "available" if f.available else f"MISSING: {f.install}"
        print(f"{f.name:32} {state:12}  package {f.package}")
        print(f"    {' '.join(f.extensions)}")
        if f.note:
            print(f"    {f.note}")
    return 0


def add_diff(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("diff", help="what a build would do: new, changed, moved, missing files (reads no image)",
                       parents=[shared.json])
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--dataset", required=True, help="folder of images")
    p.add_argument("--match-by", choices=("path", "name"), default="path",
                   help="pair files with the index's rows by relative path (default) or by file name")
    p.add_argument("--exclude", action="append", default=[], help="glob of paths to skip (repeatable)")
    p.add_argument("--limit", type=int, default=10, help="paths shown per list (default 10)")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    """What `build --dataset D --output I` would do, stat-only (no image opened)."""
    from chromatica_watch.offline.delta import diff_dataset

    report = diff_dataset(Path(args.index), Path(args.dataset), args.match_by, tuple(args.exclude))
    if args.json:
        print_json(report.to_json())
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
        print_some(label, items, args.limit)
    print_some("moved", [f"{a} -> {b}" for a, b in report.moved], args.limit)
    for folder, n in report.other_folders.items():
        print(f"the index also holds {n} photos of {folder}"
              + ("; `chromatica-watch relocate` or --match-by name reuses them" if report.match_by == "path" else ""))
    return 0
