"""The argument parser: the program, and every command with its arguments (declared beside the command,
in `commands/`), listed in the order `--help` shows them."""

from __future__ import annotations

import argparse

from chromatica_watch.cli.commands import browse, daemon, index, keywords, offline, search
from chromatica_watch.cli.options import shared_options

COMMANDS = (
    offline.add_build, offline.add_validate, offline.add_merge, offline.add_formats,
    daemon.add_run, daemon.add_status,
    index.add_failed, index.add_retry_failed,
    search.add_search, browse.add_palette,
    index.add_compact,
    offline.add_diff,
    index.add_roots, index.add_relocate,
    keywords.add_keywords,
    daemon.add_open, daemon.add_init_config, daemon.add_install_service,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromatica-watch",
                                     description="Keep a color-search index of a photo folder live.")
    sub = parser.add_subparsers(dest="command", required=True)
    shared = shared_options()
    for add_command in COMMANDS:
        add_command(sub, shared)
    return parser
