"""Commands about the daemon itself: run, status, open, init-config, install-service."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromatica_watch.access.remote import ask_status
from chromatica_watch.cli.options import SharedOptions, config_file, load_config
from chromatica_watch.cli.output import fmt_date, fmt_duration, print_json
from chromatica_watch.core import config as config_mod
from chromatica_watch.core.errors import ChromaticaError, DaemonNotRunning, UsageError
from chromatica_watch.daemon.status import judge, read_status

if TYPE_CHECKING:
    from chromatica_watch.cli.options import Subparsers


def add_run(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("run", help="run the daemon in the foreground", parents=[shared.config])
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from chromatica_watch.daemon.compose import run

    path = config_file(args)
    return run(config_mod.load(path), path, config_named=bool(args.config))


def add_status(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("status", help="show the daemon's status (exit 0 healthy, 1 degraded, 3 not running)",
                       parents=[shared.config, shared.json])
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """The daemon's own answer when it should be alive, else the status it saved last; judged together."""
    cfg = load_config(args)
    saved, saved_problem = read_status(cfg.status_path)
    live, live_problem = ask_status(cfg.socket_path)
    code, verdict = judge(live, live_problem, saved, saved_problem)
    found = str(config_file(args) or "")
    if args.json:
        print_json({"verdict": verdict, "exit_code": code, "status": live if live is not None else saved,
                    "live": live is not None, "config_file": found or None})
        return code
    print(f"chromatica-watch: {verdict}")
    _print_config_in_force(live, found)
    if live is not None:
        _print_live_status(live)
    return code


def _print_config_in_force(live: dict[str, Any] | None, found: str) -> None:
    """The daemon's config file, and a hint when this command found another one."""
    in_force = live.get("config_file") or "" if live is not None else found
    print(f"  config {in_force or 'built-in defaults (no config file)'}"
          + (f" (this command found {found or 'none'}: set the same --config or "
             "$CHROMATICA_WATCH_CONFIG)" if in_force != found else ""))


def _print_live_status(live: dict[str, Any]) -> None:
    c = live.get("counts", {})
    print(f"  indexed {c.get('indexed', 0)}, queued {c.get('queued', 0)}, failed {c.get('failed', 0)}, "
          f"tombstoned {c.get('tombstoned', 0)}")
    print(f"  throughput {live.get('throughput_per_s', 0)} img/s"
          + (f", ETA {fmt_duration(live['eta_seconds'])}" if live.get("eta_seconds") else ""))
    for root in live.get("roots", []):
        print(_root_line(root, live))
    if rebuilding := live.get("live_index"):
        print(_rebuild_line(rebuilding, live.get("state") == "starting"))
    if upgrade := live.get("upgrade"):
        print(_upgrade_line(upgrade, live.get("throughput_per_s") or 0))
    if live.get("details_pending"):
        print(f"  reading the dates, cameras and orientations of {live['details_pending']} photo(s) indexed "
              "before these were kept (headers only; searches work meanwhile)")
    if live.get("web_url"):
        print(f"  web app {live['web_url']}  (`chromatica-watch open`)")
    if live.get("last_checkpoint"):
        print(f"  last checkpoint {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(live['last_checkpoint']))}")
    for alert in live.get("alerts", []):
        print(f"  NOTE: {alert['message']}")
    if live.get("thumbnail_cache"):
        print(f"  NOTE: {live['thumbnail_cache']}")
    for f in live.get("recent_failures", [])[-5:]:
        print(f"  failed: {f['path']}: {f['reason']}")


def _root_line(root: dict[str, Any], live: dict[str, Any]) -> str:
    photos = f"{root.get('photos', 0)} photos"
    if root.get("state") == "retired":
        kept = f", kept until {fmt_date(root['dropped_after'])}" if root.get("dropped_after") else ""
        return f"  root {root['path']}: retired (not in the config): {photos} hidden from searches{kept}"
    mode = live.get("watcher_mode", {}).get(root["path"], "-")
    if rescan := live.get("rescanned", {}).get(root["path"]):
        mode += f", and rescanned every {rescan['rescan']:g} s ({rescan['reason']})"
    if root["path"] in live.get("watch_unchecked", []):
        mode += " (which folders got a watch cannot be checked: those without one wait for the rescan)"
    where = "online" if root["online"] else f"OFFLINE ({root.get('problem') or 'missing'})"
    return f"  root {root['path']}: {where}, {photos}, watcher {mode}"


def _rebuild_line(rebuilding: dict[str, Any], starting: bool) -> str:
    return (f"  building the live index from the catalog: {rebuilding['added']} of {rebuilding['total']} photos "
            "(no image is read); " + ("searches wait for it" if starting else "searches use the previous one"))


def _upgrade_line(upgrade: dict[str, Any], rate: float) -> str:
    left = max(0, upgrade["total"] - upgrade["done"])
    return (f"  upgrading: {upgrade['done']} of {upgrade['total']} photos indexed again with the new histogram "
            f"settings" + (f", ETA {fmt_duration(left / rate)}" if rate and left else "")
            + "; searches use the previous index until then")


def add_open(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("open", help="open the web app in your browser (prints its address)", parents=[shared.config])
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.set_defaults(func=cmd_open)


def cmd_open(args: argparse.Namespace) -> int:
    """Print the web app's address (with its access token) and open it in the browser."""
    cfg = load_config(args)
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


def add_init_config(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("init-config", help="write a commented copy of the default config to the user's config file")
    # Not the shared --config: this one is where to write, and $CHROMATICA_WATCH_CONFIG plays no part.
    p.add_argument("--config", help="write it here instead of ~/.config/chromatica-watch/config.toml")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_init_config)


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


def add_install_service(sub: Subparsers, shared: SharedOptions) -> None:
    p = sub.add_parser("install-service", help="write the systemd unit and print the systemctl commands",
                       parents=[shared.config])
    p.add_argument("--system", action="store_true",
                   help="install the system template unit chromatica-watch@.service (needs root)")
    p.add_argument("--dry-run", action="store_true", help="show the unit and the commands, write nothing")
    p.add_argument("--user", help="with --system: whose photos to index (default: the user who ran sudo)")
    p.set_defaults(func=cmd_install_service)


def cmd_install_service(args: argparse.Namespace) -> int:
    from chromatica_watch.daemon.systemd import install_service

    if args.user and not args.system:
        raise UsageError("--user only applies with --system")
    path = config_file(args)  # the unit runs with the file this command finds, whatever its env
    if path is not None and not path.is_file():
        raise UsageError(f"config file {path} not found")
    plan = install_service(system=args.system, dry_run=args.dry_run, config_path=path, user=args.user)
    if plan.written:
        print(f"wrote {plan.path}")
    else:
        print(f"would write {plan.path}:\n")
        print(plan.unit_text)
    print("to start it now and at every boot/login, run:")
    for line in plan.commands:
        print(f"  {line}")
    return 0
