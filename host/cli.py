"""``edgepair host run|notify|plan`` and the host's side of ``wake``, ``status`` and
``check-config``: the host side of the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import cast

import msgspec

from handshake import clientcmd
from handshake.errors import EdgepairError
from handshake.messages import REASONS, Reason
from handshake.util.cliexit import EXIT_FAILED, EXIT_OK, report
from handshake.util.sdnotify import Notifier, Watchdog
from handshake.util.secrets import load_secrets
from handshake.util.timeutil import parse_iso
from host import config as host_config
from host.agent import TICK_S, run
from host.backup import cli as backup_cli
from host.idle import cli as idle_cli
from host.notify import notify, shutdown_reason

log = logging.getLogger(__name__)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def main(argv: list[str], *, on_ready: Callable[[], object] | None = None,
         on_tick: Callable[[], object] | None = None) -> int:
    """Run ``edgepair host …``; ``run`` talks sd_notify itself unless hooks are given."""
    if argv[:1] == ["plan"]:
        # Lazily: the planner's numpy stays out of the agent that runs all day.
        from host.planner import cli as plan_cli  # noqa: PLC0415

        return plan_cli.main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format=LOG_FORMAT, stream=sys.stderr)
    try:
        if args.command == "check-config":
            return clientcmd.check_config(
                args.file, "host", host_config.load,
                lambda path: load_secrets(path, host_config.HostSecrets),
                clientcmd.secrets_path(args.file, "host"))
        config = host_config.load(args.config)
        if args.command == "run":
            return _run(config, on_ready, on_tick)
        if args.command == "idle":
            return idle_cli.status(config, args.json)
        if args.command == "sleep":
            return idle_cli.sleep(config, args.dry_run)
        if args.command == "backups":
            return backup_cli.backups(config, verify=args.verify, as_json=args.json)
        if args.command in ("wake", "status"):
            command = clientcmd.wake if args.command == "wake" else clientcmd.status
            return command(config.pi.url, config.secrets().handshake_key, args.json)
        return _notify(config, args)
    except EdgepairError as exc:
        return report(exc)


def _run(config: host_config.HostConfig, on_ready: Callable[[], object] | None,
         on_tick: Callable[[], object] | None) -> int:
    notifier = Notifier()
    watchdog = Watchdog(notifier)
    # Ping at least twice per WatchdogSec, whatever the unit sets.
    tick_s = min(TICK_S, watchdog.period / 2) if watchdog.period else TICK_S
    try:
        asyncio.run(run(config, on_ready=on_ready or notifier.ready,
                        on_tick=on_tick or watchdog.tick, tick_s=tick_s))
    except KeyboardInterrupt:  # Ctrl-C before the agent's own signal handlers are in place
        return EXIT_FAILED
    return EXIT_OK


def _notify(config: host_config.HostConfig, args: argparse.Namespace) -> int:
    reason: Reason | None = args.reason
    if args.reason == "auto":
        reason = shutdown_reason()
        if reason is None:
            log.info("not shutting down; nothing sent")
            return EXIT_OK
    if args.deadline is not None:
        config = msgspec.structs.replace(
            config, pi=msgspec.structs.replace(config.pi, notify_deadline_s=args.deadline))
    asyncio.run(notify(config, args.kind, reason=cast(Reason, reason), wake_at=args.wake_at))
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair host",
                                     description="The agent on the host that sleeps.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, required=True, metavar="FILE")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="serve the host agent (health, inbox)")
    notify = sub.add_parser("notify", parents=[common],
                            help="tell the Pi the host goes offline or came online")
    notify.add_argument("kind", choices=("going-offline", "coming-online"))
    notify.add_argument("--reason", choices=(*REASONS, "auto"), default="shutdown",
                        help="why the host goes offline; auto asks systemd (default: shutdown)")
    notify.add_argument("--wake-at", type=_timestamp, metavar="ISO",
                        help="ask the Pi to wake the host then, e.g. 2026-01-01T07:00:00Z")
    notify.add_argument("--deadline", type=_seconds, metavar="S",
                        help="give up after S seconds (default: pi.notify_deadline_s)")
    for name, text in (("wake", "ask the Pi to wake the host"),
                       ("status", "show the host's state as the Pi sees it")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    idle = sub.add_parser("idle", help="sleep when idle: what keeps the host awake")
    idle_sub = idle.add_subparsers(dest="idle_command", required=True, metavar="COMMAND")
    idle_status = idle_sub.add_parser("status", parents=[common],
                                      help="every check's verdict, idle since, next wake")
    idle_status.add_argument("--json", action="store_true", help="print it as JSON")
    sleep = sub.add_parser("sleep", parents=[common],
                           help="tell the Pi and suspend now (suspend_command)")
    sleep.add_argument("--dry-run", action="store_true",
                       help="say what would happen; send and suspend nothing")
    backups = sub.add_parser("backups", parents=[common],
                             help="the Pi's backups kept here (newest last)")
    backups.add_argument("--verify", action="store_true",
                         help="hash every archive again and compare with its .sha256 file")
    backups.add_argument("--json", action="store_true", help="print them as JSON")
    check = sub.add_parser("check-config", help="validate a host config file and its secrets")
    check.add_argument("file", type=Path)
    check.add_argument("--side", choices=["host"], help=argparse.SUPPRESS)
    return parser


def _timestamp(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time with zone: {exc}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value
