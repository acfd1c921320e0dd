"""The ``edgepair`` command: ``pi``, ``host``, ``wake``, ``status``, ``check-config``, …"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from handshake.errors import ConfigError, EdgepairError
from handshake.util.cliexit import report, report_group

log = logging.getLogger("edgepair")


# Command groups owned by a feature's own module: ``main(argv) -> int``.
FEATURE_COMMANDS = {"host": "host.cli", "power": "pi.power.cli", "control": "pi.control.cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in FEATURE_COMMANDS:
        from handshake.optional import optional_module  # noqa: PLC0415

        module = optional_module(FEATURE_COMMANDS[argv[0]])
        if module is None:
            print(f"edgepair: `{argv[0]}` commands are not part of this version", file=sys.stderr)
            return 2
        code: int = module.main(argv[1:])
        return code
    args = _parser().parse_args(argv)
    _logging(args.log_level)
    try:
        result: int = args.func(args)
    except EdgepairError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair", description=__doc__)
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pi = sub.add_parser("pi", help="run the Pi's daemons")
    pi_sub = pi.add_subparsers(dest="pi_command", required=True, metavar="COMMAND")
    run = pi_sub.add_parser("run", help="run daemons (default: every configured one)")
    run.add_argument("daemons", nargs="*", metavar="DAEMON", help="api, power, inbox, control")
    run.add_argument("--config", type=Path, required=True)
    run.set_defaults(func=cmd_pi_run)

    sub.add_parser("host", help="the host side: `edgepair host run|notify|plan …`")
    sub.add_parser("power", help="power history: `edgepair power export …`")
    sub.add_parser("control", help="energy control: `edgepair control commission …`")

    for name, func, text in (("wake", cmd_wake, "ask the Pi to wake the host"),
                             ("status", cmd_status, "show the host's state as the Pi sees it")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, required=True,
                       help="the Pi's or the host's config file")
        p.add_argument("--json", action="store_true", help="print the raw JSON answer")
        p.set_defaults(func=func)

    check = sub.add_parser("check-config", help="validate a config file and its secrets")
    check.add_argument("file", type=Path)
    check.add_argument("--side", choices=["pi", "host"], help="default: guessed from the keys")
    check.set_defaults(func=cmd_check_config)

    keygen = sub.add_parser("keygen", help="print a new handshake key")
    keygen.set_defaults(func=cmd_keygen)

    demo = sub.add_parser("demo", help="everything on 127.0.0.1 with simulated devices")
    demo.add_argument("--dir", type=Path, default=None, help="state directory (default: temp)")
    demo.add_argument("--port", type=int, default=8770, help="the Pi api's port")
    demo.set_defaults(func=cmd_demo)
    return parser


def _logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# -- pi run ------------------------------------------------------------------------------

def cmd_pi_run(args: argparse.Namespace) -> int:
    from pi import config as pi_config  # noqa: PLC0415 - keep `edgepair keygen` light

    unknown = [n for n in args.daemons if n not in pi_config.DAEMONS]
    if unknown:
        print(f"edgepair: unknown daemon(s) {', '.join(unknown)}; "
              f"expected {', '.join(pi_config.DAEMONS)}", file=sys.stderr)
        return 2
    config = pi_config.load(args.config)
    names = tuple(args.daemons) or config.daemons()
    from pi import daemons  # noqa: PLC0415

    available = daemons.available(names)
    missing = [n for n in names if n not in available]
    if missing:
        print(f"edgepair: daemon(s) {', '.join(missing)} are not part of this version "
              f"(available: {', '.join(available)})", file=sys.stderr)
        if args.daemons:
            return 2
        names = tuple(n for n in names if n in available)
    config.secrets()  # refuse to start on a readable or broken secrets file
    return run_until_signal(lambda ready, kick: run_daemons(config, names, ready, kick), names)


async def run_daemons(config: Any, names: tuple[str, ...], ready: Callable[[], None],
                      kick: Callable[[str], None]) -> None:
    """Run the named daemons in this process; the first to fail stops the others."""
    from pi import daemons  # noqa: PLC0415

    runners: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {}
    for name in names:
        module = daemons.load(name)
        assert module is not None
        runners[name] = module.run
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
                     loops: tuple[str, ...]) -> int:
    """asyncio.run with SIGTERM/SIGINT → cancel, sd_notify READY and a real watchdog."""
    from handshake.util.sdnotify import Notifier, Watchdog  # noqa: PLC0415

    async def body() -> None:
        notifier = Notifier()
        watchdog = Watchdog(notifier)
        from pi import daemons  # noqa: PLC0415

        for daemon in loops:
            module = daemons.load(daemon)
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


# -- client commands ---------------------------------------------------------------------

def _pi_url_and_key(path: Path) -> tuple[str, bytes]:
    """Accept the Pi's config (its own listen address) or the host's ([pi] url)."""
    side = _guess_side(path)
    if side == "pi":
        from pi import config as pi_config  # noqa: PLC0415

        pc = pi_config.load(path)
        host, port = pc.api.listen
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{port}", pc.secrets().handshake_key
    from host import config as host_config  # noqa: PLC0415

    hc = host_config.load(path)
    return hc.pi.url, hc.secrets().handshake_key


def cmd_wake(args: argparse.Namespace) -> int:
    from handshake.client import HandshakeClient  # noqa: PLC0415

    url, key = _pi_url_and_key(args.config)

    async def go() -> Any:
        async with HandshakeClient(url, key) as client:
            return await client.request("POST", "/api/v1/wake", {"source": "cli"})

    answer = asyncio.run(go())
    if args.json:
        _print_json(answer)
    elif answer.get("sent"):
        print(f"magic packet sent; host is {answer['state']} "
              f"(boot timeout {answer.get('boot_timeout_s', '?')} s)")
    else:
        print(f"no packet sent: {answer.get('message', answer.get('state'))}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from handshake.client import HandshakeClient  # noqa: PLC0415

    url, key = _pi_url_and_key(args.config)

    async def go() -> Any:
        async with HandshakeClient(url, key) as client:
            return await client.request("GET", "/api/v1/status", signed=False)

    doc = asyncio.run(go())
    if args.json:
        _print_json(doc)
        return 0
    print(f"host:      {doc['state']} since {doc['since']}")
    dns = doc.get("dns") or {}
    print(f"dns:       {dns.get('name')} → {dns.get('address')} ({dns.get('target')}"
          f"{'' if dns.get('applied') else ', NOT applied: ' + str(dns.get('error'))})")
    beat = doc.get("last_heartbeat") or {}
    print(f"heartbeat: {'ok' if beat.get('ok') else 'failing'} at {beat.get('at')}"
          f"{' (' + beat['error'] + ')' if beat.get('error') else ''}")
    wake = doc.get("next_wake")
    print(f"next wake: {wake['at'] + ' (' + wake['source'] + ')' if wake else 'none'}")
    if doc.get("alarm"):
        print(f"ALARM:     {doc['alarm']['message']} since {doc['alarm']['since']}")
    return 0


def _print_json(value: Any) -> None:
    import json  # noqa: PLC0415

    print(json.dumps(value, indent=2))


def _guess_side(path: Path) -> str:
    from handshake.util.configfile import load_toml  # noqa: PLC0415

    data = load_toml(path)
    host = data.get("host")
    pi = data.get("pi")
    host = host if isinstance(host, dict) else {}
    pi = pi if isinstance(pi, dict) else {}
    if "mac" in host or "address" in pi or ("state_dir" in pi and "url" not in pi):
        return "pi"
    if "url" in pi or "listen" in host:
        return "host"
    return "pi"


def cmd_check_config(args: argparse.Namespace) -> int:
    side = args.side or _guess_side(args.file)
    problems: list[str] = []
    try:
        if side == "pi":
            from pi import config as pi_config  # noqa: PLC0415

            pi_config.load(args.file)
        else:
            from host import config as host_config  # noqa: PLC0415

            host_config.load(args.file)
    except ConfigError as exc:
        problems.extend(exc.problems)
    secrets = _secrets_path(args.file, side)
    if secrets is not None:
        from handshake.util.secrets import load_secrets  # noqa: PLC0415
        from host.config import HostSecrets  # noqa: PLC0415
        from pi.config import PiSecrets  # noqa: PLC0415

        try:
            load_secrets(secrets, PiSecrets if side == "pi" else HostSecrets)
        except ConfigError as exc:
            problems.extend(exc.problems)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s) ({side} config)", file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({side} config)")
    return 0


def _secrets_path(path: Path, side: str) -> Path | None:
    """The secrets file a config names, read leniently so it is checked even if the rest fails."""
    from handshake.util.configfile import load_toml, resolve  # noqa: PLC0415

    try:
        section = load_toml(path).get("pi" if side == "pi" else "host", {})
    except ConfigError:
        return None
    value = section.get("secrets_file", "/etc/edgepair/secrets.toml") \
        if isinstance(section, dict) else None
    return resolve(path, value) if isinstance(value, str) else None


def cmd_keygen(args: argparse.Namespace) -> int:
    from handshake.auth import keygen  # noqa: PLC0415

    print(keygen())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pi import demo  # noqa: PLC0415

    return demo.main(args.dir, args.port)


if __name__ == "__main__":
    sys.exit(main())
