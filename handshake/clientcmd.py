"""The commands both sides offer: ``wake``, ``status`` (as clients of the Pi's api) and
``check-config``. Each side finds the Pi's URL and key in its own config and calls these."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from handshake.client import HandshakeClient
from handshake.errors import ConfigError
from handshake.override import MODES
from handshake.util.cliexit import EXIT_OK, EXIT_USAGE
from handshake.util.configfile import load_toml, resolve
from handshake.util.timeutil import iso, parse_iso


def wake(url: str, key: bytes, as_json: bool) -> int:
    """Ask the Pi to wake the host (signed)."""
    async def go() -> Any:
        async with HandshakeClient(url, key) as client:
            return await client.request("POST", "/api/v1/wake", {"source": "cli"})

    answer = asyncio.run(go())
    if as_json:
        _print_json(answer)
    elif answer.get("sent"):
        print(f"magic packet sent; host is {answer['state']} "
              f"(boot timeout {answer.get('boot_timeout_s', '?')} s)")
    else:
        print(f"no packet sent: {answer.get('message', answer.get('state'))}")
    return EXIT_OK


def status(url: str, key: bytes, as_json: bool) -> int:
    """The host's state as the Pi sees it."""
    async def go() -> Any:
        async with HandshakeClient(url, key) as client:
            return await client.request("GET", "/api/v1/status", signed=False)

    doc = asyncio.run(go())
    if as_json:
        _print_json(doc)
        return EXIT_OK
    if doc.get("reason") == "never_seen":  # pi.state.NEVER_SEEN
        print("host:      unknown: no heartbeat answered yet")
    else:
        print(f"host:      {doc['state']} since {doc['since']}")
    dns = doc.get("dns") or {}
    print(f"dns:       {dns.get('name')} → {dns.get('address')} ({dns.get('target')}"
          f"{'' if dns.get('applied') else ', NOT applied: ' + str(dns.get('error'))})")
    beat = doc.get("last_heartbeat")
    if beat is None:
        print("heartbeat: not yet")
    else:
        print(f"heartbeat: {'ok' if beat.get('ok') else 'failing'} at {beat.get('at')}"
              f"{' (' + beat['error'] + ')' if beat.get('error') else ''}")
    next_wake = doc.get("next_wake")
    print(f"next wake: {next_wake['at'] + ' (' + next_wake['source'] + ')' if next_wake else 'none'}")
    if doc.get("alarm"):
        print(f"ALARM:     {doc['alarm']['message']} since {doc['alarm']['since']}")
    return EXIT_OK


def override_body(mode: str, until: str | None, target_soc: float | None,
                  power_w: float | None, now: datetime) -> dict[str, Any]:
    """The override request from the CLI's arguments; ``until``: ISO or ``+2h``/``90m``/``30s``."""
    body: dict[str, Any] = {"mode": mode}
    if until is not None:
        body["until"] = iso(_until(until, now))
    if target_soc is not None:
        body["target_soc"] = target_soc
    if power_w is not None:
        body["power_w"] = power_w
    return body


def _until(text: str, now: datetime) -> datetime:
    match = re.fullmatch(r"\+?(\d+(?:\.\d+)?)([hms])", text.strip())
    if match:
        seconds = float(match[1]) * {"h": 3600, "m": 60, "s": 1}[match[2]]
        return now + timedelta(seconds=seconds)
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise ConfigError([f"--until: expected an ISO time (2026-01-01T18:00:00Z) or a "
                           f"duration like 2h, 90m; got {text!r} ({exc})"]) from None


def override(url: str, key: bytes | None, path: str, body: dict[str, Any], as_json: bool) -> int:
    """POST an override (signed when ``key`` is given) and say what is in force now."""
    async def go() -> Any:
        async with HandshakeClient(url, key) as client:
            return await client.request("POST", path, body, signed=key is not None)

    answer = asyncio.run(go())
    if as_json:
        _print_json(answer)
    elif answer.get("override") is None:
        print("override ended: the control daemon follows the plan again")
    else:
        print(answer.get("detail") or answer["override"])
    return EXIT_OK


def check_config(file: Path, side: str, load: Callable[[Path], object],
                 load_secrets: Callable[[Path], object], secrets: Path | None) -> int:
    """Every problem of a config file and of the secrets file it names, one per line."""
    problems: list[str] = []
    try:
        load(file)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if secrets is not None:
        try:
            load_secrets(secrets)
        except ConfigError as exc:
            problems.extend(exc.problems)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{file}: {len(problems)} problem(s) ({side} config)", file=sys.stderr)
        return EXIT_USAGE
    print(f"{file}: ok ({side} config)")
    return EXIT_OK


def secrets_path(file: Path, section: str) -> Path | None:
    """The secrets file a config names, read leniently so it is checked even if the rest fails."""
    try:
        table = load_toml(file).get(section, {})
    except ConfigError:
        return None
    value = table.get("secrets_file", "/etc/edgepair/secrets.toml") \
        if isinstance(table, dict) else None
    return resolve(file, value) if isinstance(value, str) else None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def add_override_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                           text: str) -> argparse.ArgumentParser:
    """``override MODE --until … [--target-soc] [--power-w] --config F`` (the host's too)."""
    o = sub.add_parser("override", help=text)
    o.add_argument("mode", choices=MODES, metavar="MODE", help=" | ".join(MODES))
    o.add_argument("--until", metavar="TIME", help="ISO time or a duration (2h, 90m): at most "
                   "24 h; required but for auto")
    o.add_argument("--target-soc", type=float, metavar="PCT", dest="target_soc",
                   help="charge: where it stops (required); discharge: its floor")
    o.add_argument("--power-w", type=float, metavar="W", dest="power_w",
                   help="charge/discharge power (required for both)")
    o.add_argument("--config", type=Path, required=True, metavar="FILE")
    o.add_argument("--json", action="store_true", help="print the answer as JSON")
    return o
