"""The ``edgepair`` command: one console script for both sides.

``handshake`` imports neither side. Each command names the module that implements it, and
only that module is imported, when that command runs: ``edgepair keygen`` loads no daemon,
``edgepair pi run api`` no host code. ``wake``, ``status`` and ``check-config`` take either
side's config file; the side is told by its keys (or ``--side``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Protocol

from handshake.auth import keygen
from handshake.errors import ConfigError
from handshake.util.cliexit import EXIT_USAGE, report
from handshake.util.configfile import load_toml

# command → the module whose ``main(argv)`` runs it (argv without the command itself).
GROUPS = {
    "pi": "pi.cli",
    "host": "host.cli",
    "power": "pi.power.cli",
    "control": "pi.control.cli",
    "node": "pi.nodes.cli",
    "demo": "handshake.demo",
}
# Commands either side offers: ``<side>.cli`` runs them with the command kept in argv.
EITHER_SIDE = ("wake", "status", "check-config")
SIDES = {"pi": "pi.cli", "host": "host.cli"}
HELP = {
    "pi": "the Pi: `edgepair pi run [api|power|inbox|control …]`, `edgepair pi restore FILE`",
    "host": "the host side: `edgepair host run|notify|plan …`",
    "power": "power history: `edgepair power export …`",
    "control": "energy control: `edgepair control commission|status …`",
    "node": "ESP32 nodes: `edgepair node list|approve|remove|rename|job|flash …`",
    "demo": "everything on 127.0.0.1 with simulated devices",
    "wake": "ask the Pi to wake the host (--config: either side's file)",
    "status": "show the host's state as the Pi sees it (--config: either side's file)",
    "check-config": "validate a config file and its secrets",
    "keygen": "print a new handshake key",
}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Main(Protocol):
    def __call__(self, argv: list[str]) -> int: ...


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.command == "keygen":
        print(keygen())
        return 0
    rest: list[str] = args.args
    if args.command in GROUPS:
        return _entry(GROUPS[args.command])(rest)
    try:
        side = _side_of(args.command, rest)
    except ConfigError as exc:
        return report(exc)
    if side is None:
        print(f"edgepair {args.command}: expected "
              f"{'a config FILE' if args.command == 'check-config' else '--config FILE'}",
              file=sys.stderr)
        return EXIT_USAGE
    return _entry(SIDES[side])([args.command, *rest])


def configure_logging(level: str = "INFO") -> None:
    """Every ``edgepair`` process logs the same way, to stderr (journald adds the time)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepair", description="A sleeping home server and the Raspberry Pi beside it.",
        epilog="\n".join(f"  {name:<13} {text}" for name, text in HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("command", choices=tuple(HELP), metavar="COMMAND",
                        help="one of the commands below; `edgepair COMMAND --help` for more")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _entry(module: str) -> _Main:
    entry: _Main = importlib.import_module(module).main
    return entry


def _side_of(command: str, argv: list[str]) -> str | None:
    """Which side's config ``argv`` names: ``--side`` if given, else guessed from its keys."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--side", choices=tuple(SIDES))
    probe.add_argument("--config", type=Path)
    probe.add_argument("-h", "--help", action="store_true")
    if command == "check-config":
        probe.add_argument("file", type=Path, nargs="?")
    known, _ = probe.parse_known_args(argv)
    if known.side:
        return str(known.side)
    path = getattr(known, "file", None) or known.config
    if path is None:
        return "pi" if known.help else None
    return guess_side(path)


def guess_side(path: Path) -> str:
    """``pi`` or ``host``, from the keys only the one side's config has."""
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


if __name__ == "__main__":
    sys.exit(main())
