"""``edgepair pi run`` and the Pi's side of ``wake``, ``status`` and ``check-config``.

Reached through the ``edgepair`` dispatcher (handshake/command.py), which strips the
``pi`` group name: ``edgepair pi run api`` is ``main(["run", "api"])`` here, and
``edgepair wake --config pi.toml`` is ``main(["wake", "--config", "pi.toml"])``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

from handshake.errors import EdgepairError
from handshake.util.cliexit import EXIT_USAGE, report, report_group
from handshake.util.sdnotify import Notifier, Watchdog
from handshake.util.secrets import load_secrets
from handshake.util.urls import local_url
from pi import config as pi_config

log = logging.getLogger("edgepair")

# Each daemon is a module with ``async def run(config, *, ready, kick)``, imported only
# when it runs: a unit running ``api`` alone does not pay for kasa, pymodbus or the inbox.
DAEMONS = {
    "api": "pi.api",
    "power": "pi.power.daemon",
    "inbox": "pi.inbox.daemon",
    "control": "pi.control.daemon",
    "mqtt": "pi.mqtt.daemon",
    "node": "pi.nodes.daemon",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result: int = args.func(args)
    except EdgepairError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair pi", description="The Pi's daemons.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run daemons (default: every configured one)")
    run.add_argument("daemons", nargs="*", metavar="DAEMON", help=", ".join(DAEMONS))
    run.add_argument("--config", type=Path, required=True)
    run.set_defaults(func=cmd_run)
    for name, func, text in (("wake", cmd_wake, "ask the Pi to wake the host"),
                             ("status", cmd_status, "show the host's state as the Pi sees it")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, required=True, help="the Pi's config file")
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
        p.set_defaults(func=func)
    test = sub.add_parser("notify-test", help="send a test message to each [[notify]] target")
    test.add_argument("targets", nargs="*", metavar="NAME", help="only these targets")
    test.add_argument("--config", type=Path, required=True, help="the Pi's config file")
    test.set_defaults(func=cmd_notify_test)
    check = sub.add_parser("check-config", help="validate a Pi config file and its secrets")
    check.add_argument("file", type=Path)
    check.add_argument("--side", choices=["pi"], help=argparse.SUPPRESS)
    check.set_defaults(func=cmd_check_config)
    restore = sub.add_parser("restore", help="rebuild this Pi's state from a backup the host kept",
                             description="Check every file of a backup archive, then restore the "
                             "config (if --config does not exist yet), private/ and, if the "
                             "backup has them and none exist, the secrets. Stop the daemons first.")
    restore.add_argument("file", type=Path, help="an edgepair-pi-*.tar.gz from the host's "
                         "backup folder")
    restore.add_argument("--config", type=Path, required=True,
                         help="the Pi's config file (written from the backup if missing)")
    restore.add_argument("--force", action="store_true",
                         help="set an existing private/ aside (never deleted) and restore")
    restore.set_defaults(func=cmd_restore)
    return parser


# -- pi run ------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    unknown = [n for n in args.daemons if n not in DAEMONS]
    if unknown:
        print(f"edgepair: unknown daemon(s) {', '.join(unknown)}; "
              f"expected {', '.join(DAEMONS)}", file=sys.stderr)
        return EXIT_USAGE
    config = pi_config.load(args.config)
    names = tuple(args.daemons) or config.daemons()
    config.secrets()  # refuse to start on a readable or broken secrets file
    modules = {name: daemon_module(name) for name in names}
    return run_until_signal(lambda ready, kick: run_daemons(config, modules, ready, kick),
                            modules)


def daemon_module(name: str) -> ModuleType:
    return importlib.import_module(DAEMONS[name])


async def run_daemons(config: pi_config.PiConfig, modules: dict[str, ModuleType],
                      ready: Callable[[], None], kick: Callable[[str], None]) -> None:
    """Run the daemons in this process; the first to fail stops the others."""
    runners: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
        name: module.run for name, module in modules.items()}
    pending = len(runners)

    def one_ready() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0:
            ready()

    async with asyncio.TaskGroup() as group:
        for name, run in runners.items():
            group.create_task(run(config, ready=one_ready, kick=kick), name=name)


def run_until_signal(factory: Callable[[Callable[[], None], Callable[[str], None]],
                                       Awaitable[None]],
                     modules: dict[str, ModuleType]) -> int:
    """asyncio.run with SIGTERM/SIGINT → cancel, sd_notify READY and a real watchdog."""
    async def body() -> None:
        notifier = Notifier()
        watchdog = Watchdog(notifier)
        for module in modules.values():
            for name in getattr(module, "WATCHDOG_LOOPS", ()):
                watchdog.register(name)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)

        def ready() -> None:
            notifier.ready()
            notifier.status("running")

        dog = asyncio.create_task(watchdog.run(), name="watchdog")
        try:
            await factory(ready, watchdog.kick)
        finally:
            notifier.stopping()
            dog.cancel()
            await asyncio.gather(dog, return_exceptions=True)

    try:
        asyncio.run(body())
    except asyncio.CancelledError:
        log.info("stopped")
        return 0
    except BaseExceptionGroup as group:  # from the daemons' TaskGroup
        code = report_group(group)
        if code is None:
            raise
        return code
    return 0


# -- the commands both sides offer ----------------------------------------------------------

def _api(path: Path) -> tuple[str, bytes]:
    """The Pi's own api daemon, as a client on this Pi reaches it."""
    config = pi_config.load(path)
    return local_url(config.api.listen), config.secrets().handshake_key


# clientcmd pulls aiohttp (≈ 10 MB RSS): imported by the commands that use it, so a daemon
# that has no use for it (mqtt, control) does not carry it.

def cmd_wake(args: argparse.Namespace) -> int:
    from handshake import clientcmd  # noqa: PLC0415

    return clientcmd.wake(*_api(args.config), args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from handshake import clientcmd  # noqa: PLC0415

    return clientcmd.status(*_api(args.config), args.json)


def cmd_notify_test(args: argparse.Namespace) -> int:
    from pi.notify import check  # noqa: PLC0415 - only this command needs the senders

    return check.main(pi_config.load(args.config), args.targets)


def cmd_restore(args: argparse.Namespace) -> int:
    from pi.backup import restore  # noqa: PLC0415 - sqlite3 and tarfile (≈ 2.7 MB) only here

    restore.restore(args.file, args.config, force=args.force,
                    say=lambda line: print(f"edgepair: {line}"))
    print("edgepair: restored; start the daemons (systemctl start edgepair-pi-api …)")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from handshake import clientcmd  # noqa: PLC0415

    return clientcmd.check_config(
        args.file, "pi", pi_config.load, lambda path: load_secrets(path, pi_config.PiSecrets),
        clientcmd.secrets_path(args.file, "pi"))


if __name__ == "__main__":
    sys.exit(main())
