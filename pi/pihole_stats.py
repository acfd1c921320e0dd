"""Pi-hole summary stats for the dashboard: ``[pihole]`` config and the ``pihole.json`` writer.

The api daemon runs ``run(config, session)`` when ``[pihole]`` is present. It logs in to
Pi-hole v6 (``POST /api/auth``, header ``X-FTL-SID``), reads ``GET /api/stats/summary``
every ``interval_s`` and logs out (``DELETE /api/auth``) on exit: Pi-hole has only 16
API seats. A failure is written into ``pihole.json`` (``"ok": false``) and logged quietly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

from handshake import documents
from handshake.documents import PiholeDocument, schema_of
from handshake.util.quietlog import QuietLogger
from handshake.util.schema import Section, Url
from handshake.util.timeutil import iso
from pi.pihole_api import REQUEST_TIMEOUT_S, PiholeError, PiholeSession, PiholeUnavailable

if TYPE_CHECKING:  # check-config imports this module for parse(): keep aiohttp out of it
    import aiohttp

    from pi.config import PiConfig

log = logging.getLogger(__name__)

SCHEMA = schema_of(PiholeDocument)
FILE = "pihole.json"
# After failures, ask less often (interval × 2^n) but at least this often, so a fixed
# Pi-hole shows up within minutes without a restart.
MAX_BACKOFF_S = 300.0


class PiholeStatsConfig(Section, frozen=True, kw_only=True):
    url: Annotated[Url, Meta(description="Pi-hole's web server")] = "http://127.0.0.1"
    interval_s: Annotated[float, Meta(ge=1, le=3600, description="pihole.json refresh period")] = 60.0


class PiholeStats:
    """``summary()`` reads the stats over one Pi-hole API session, logging in as needed."""

    def __init__(self, url: str, password: str | None, session: aiohttp.ClientSession,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._api = PiholeSession(url, password, session=session, timeout_s=timeout_s)

    async def summary(self) -> dict[str, Any]:
        """``/api/stats/summary``; PiholeError says why it could not be read."""
        answer = await self._api.request("GET", "/api/stats/summary")
        if not isinstance(answer, dict):
            raise PiholeUnavailable(f"Pi-hole at {self.url} sent no summary: {answer!r:.200}")
        return answer

    async def close(self) -> None:
        """Log out, freeing the API seat; never raises."""
        await self._api.close()


def document(summary: dict[str, Any] | None, error: str | None, now: float,
             interval_s: float) -> PiholeDocument:
    """The ``pihole.json`` document: the summary's headline, or the error and nulls."""
    doc = PiholeDocument(generated_at=iso(now) or "", interval_s=interval_s, ok=error is None,
                         error=error)
    if summary is None:
        return doc
    queries = _table(summary, "queries")
    clients = _table(summary, "clients")
    gravity = _table(summary, "gravity")
    last_update = _number(gravity.get("last_update"))
    return msgspec.structs.replace(
        doc,
        queries={"total": _number(queries.get("total")),
                 "blocked": _number(queries.get("blocked")),
                 "percent_blocked": _number(queries.get("percent_blocked"))},
        clients={"active": _number(clients.get("active")), "total": _number(clients.get("total"))},
        gravity={
            "domains_being_blocked": _number(gravity.get("domains_being_blocked")),
            "last_update": iso(last_update) if last_update else None,
            "age_s": round(max(0.0, now - last_update), 1) if last_update else None,
        })


async def run(config: PiConfig, session: aiohttp.ClientSession, *,
              clock: Callable[[], float] = time.time) -> None:
    """Write ``pihole.json`` every ``interval_s`` until cancelled; log out on the way out."""
    section = config.pihole
    assert section is not None  # run only when [pihole] is configured
    stats = PiholeStats(section.url, config.secrets().pihole_password, session)
    quiet = QuietLogger(log)
    path = config.public_dir / FILE
    failures = 0
    try:
        while True:
            try:
                summary, error = await stats.summary(), None
            except PiholeError as exc:
                summary, error = None, str(exc)
            if error is None:
                failures = 0
                quiet.success("stats", "Pi-hole stats readable again")
            else:
                failures += 1
                quiet.failure("stats", "Pi-hole stats: %s", error)
            delay = next_delay(section.interval_s, failures)
            try:
                await asyncio.to_thread(documents.publish, path,
                                        document(summary, error, clock(), delay))
            except OSError as exc:
                quiet.failure("write", "cannot write %s: %s", path, exc)
            else:
                quiet.success("write", "%s written again", path)
            await asyncio.sleep(delay)
    finally:
        await stats.close()  # bounded by LOGOUT_TIMEOUT_S


def next_delay(interval_s: float, failures: int) -> float:
    """The interval while Pi-hole answers; doubling per failure, capped, never below it."""
    if failures == 0:
        return interval_s
    doubled = interval_s * 2.0 ** min(failures - 1, 16)  # bounded exponent: no overflow
    return max(interval_s, min(doubled, MAX_BACKOFF_S))


def _table(summary: dict[str, Any], key: str) -> dict[str, Any]:
    value = summary.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
