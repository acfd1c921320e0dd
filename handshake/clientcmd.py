"""The commands both sides offer: ``wake``, ``status`` (as clients of the Pi's api) and
``check-config``. Each side finds the Pi's URL and key in its own config and calls these."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handshake.client import HandshakeClient
from handshake.errors import ConfigError
from handshake.util.cliexit import EXIT_OK, EXIT_USAGE
from handshake.util.configfile import load_toml, resolve


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
