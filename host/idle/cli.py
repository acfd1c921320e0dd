"""``edgepair host idle status`` and ``edgepair host sleep``: what keeps the host awake; sleep now."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from handshake.util import atomic
from handshake.util.cliexit import EXIT_FAILED, EXIT_OK
from handshake.util.timeutil import parse_iso, utcnow
from host import activity
from host.config import HostConfig
from host.idle import checks, loop, wakes
from host.idle.decide import History, decide


def status(config: HostConfig, as_json: bool) -> int:
    """Run every check now and say, like autosuspend's log, what keeps the host awake."""
    idle = config.idle
    probes = loop.probes_for(config)
    published = _read_published(config)
    doing = sorted(set(loop_activity(config)) | set(published.get("activity") or []))
    results = checks.run_all(idle, probes, doing)
    now = utcnow()
    next_wake = wakes.next_wake(idle, now, probes.run)
    idle_since = _time(published.get("idle_since"))
    decision = decide(results, now, History(idle_since=idle_since), idle, next_wake)
    doc = loop.document(config, results, doing, decision, next_wake, now, decision.history, None)
    doc["agent"] = {"generated_at": published.get("generated_at"),
                    "last_suspend": published.get("last_suspend"),
                    "failures": published.get("failures"),
                    "backoff_until": published.get("backoff_until")}
    if as_json:
        print(json.dumps(doc, indent=1))
        return EXIT_OK
    print(f"idle suspend: {'enabled' if idle.enabled else 'disabled'}"
          f"{' (dry run)' if idle.dry_run else ''}; after {idle.idle_after_s:g} s idle")
    for r in results:
        print(f"  {r.name:<11} {r.verdict:<5}  {r.detail}")
    print(f"idle since: {doc['idle_since'] or '-'}")
    left = decision.seconds_left
    print(f"sleep in:   {'-' if left is None else f'{left:.0f} s'} ({decision.action}: "
          f"{decision.why})")
    wake = doc["next_wake"]
    print(f"next wake:  {wake['at'] or '-'}"
          + (f" ({wake['source']} at {wake['event_at']})" if wake["source"] else "")
          + (f" error: {wake['error']}" if wake["error"] else ""))
    last = published.get("last_suspend")
    if isinstance(last, dict):
        print(f"last suspend: {last.get('at')} {last.get('result')}: {last.get('detail')}")
    return EXIT_OK


def sleep(config: HostConfig, dry_run: bool) -> int:
    """Sleep now (no idle checks) through the agent's path: notify, suspend, recover."""
    idle = config.idle
    next_wake = wakes.next_wake(idle, utcnow(), loop.probes_for(config).run)
    result = asyncio.run(loop.suspend(config, next_wake.at, dry_run=dry_run))
    print(f"{result.result}: {result.detail}" + (f" (wake_at {result.wake_at})"
                                                  if result.wake_at and not dry_run else ""))
    return EXIT_OK if result.ok else EXIT_FAILED


def loop_activity(config: HostConfig) -> list[str]:
    """Other processes' activity markers (the agent's own is in idle.json)."""
    return activity.current(loop.marker_dir(config))


def _read_published(config: HostConfig) -> dict[str, Any]:
    try:
        doc = atomic.read_json(config.public_dir / loop.IDLE_FILE)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None

