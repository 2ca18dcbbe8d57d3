"""The options several commands share, each declared once as an argparse parent parser (`--config`,
`--json`, `--index-dir`, `--verbose`), and what they mean: the config file in force, the logging level."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chromatica_watch.core import config as config_mod
from chromatica_watch.core.config import Config

if TYPE_CHECKING:
    from typing import TypeAlias

    # What `add_subparsers` returns, where each command module adds its commands.
    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True)
class SharedOptions:
    """Parent parsers: a command takes an option by listing its parent in `parents=`."""

    config: argparse.ArgumentParser
    json: argparse.ArgumentParser
    index_dir: argparse.ArgumentParser
    verbose: argparse.ArgumentParser


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)  # the command's own parser adds -h once


def shared_options() -> SharedOptions:
    config = _parent()
    config.add_argument("--config", help="TOML config file (default: $CHROMATICA_WATCH_CONFIG, else "
                                         "~/.config/chromatica-watch/config.toml if it exists, else built-in defaults)")
    json = _parent()
    json.add_argument("--json", action="store_true", help="the output as JSON")
    index_dir = _parent()
    index_dir.add_argument("--index-dir", help="this index directory instead of the configured one "
                                               "(e.g. one made by build)")
    verbose = _parent()
    verbose.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return SharedOptions(config=config, json=json, index_dir=index_dir, verbose=verbose)


def add_filters(p: argparse.ArgumentParser) -> None:
    """Which photos a command looks at (search, palette): --in, --taken-after, --taken-before, --camera,
    --orientation; added where the command's help should list them."""
    p.add_argument("--in", dest="folders", action="append", default=[], metavar="FOLDER",
                   help="only photos in this folder (under a watched root) or below it, or in folders matching "
                        "a glob ('*/2024/*'); repeatable")
    p.add_argument("--taken-after", metavar="DATE", help="taken on or after DATE (YYYY, YYYY-MM, YYYY-MM-DD)")
    p.add_argument("--taken-before", metavar="DATE", help="taken before DATE (YYYY, YYYY-MM, YYYY-MM-DD)")
    p.add_argument("--camera", metavar="TEXT", help="taken with a camera whose make or model contains TEXT")
    p.add_argument("--orientation", choices=("landscape", "portrait", "square"),
                   help="only photos of this orientation (as shown, after the EXIF rotation)")


def config_file(args: argparse.Namespace) -> Path | None:
    """The config file in force for this command (`--config`, $CHROMATICA_WATCH_CONFIG, the user's)."""
    found = config_mod.find_config_file(Path(args.config) if getattr(args, "config", None) else None)
    return found.absolute() if found is not None else None


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(config_file(args))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
