"""Connection caps and deadlines for the HTTP daemons: the numbers, the config keys and
the admission rule (pure; no aiohttp here, so reading a config stays light). See guard."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta

log = logging.getLogger(__name__)

# Connect (or the end of the previous response) → the request's headers complete.
HEADER_TIMEOUT_S = 10.0
# A kept-alive connection without a request; aiohttp's client drops its own after 15 s.
IDLE_TIMEOUT_S = 30.0
# A body is judged over windows this long, against at least this rate (bytes/s).
BODY_WINDOW_S = 10.0
MIN_BODY_RATE = 1024
# A response the client does not read at all.
SEND_STALL_S = 30.0
# Descriptors kept for the daemon itself: state files, sqlite, DNS, outbound heartbeats.
RESERVED_FDS = 256
# Past SOFT_SHARE of the total, a client holding this many connections is refused.
FAIR_SHARE = 4
SOFT_SHARE = 0.75
MIN_CONNECTIONS = 16

# The config keys, the same on the api daemon and the host agent.
MaxConnections = Annotated[int, Meta(
    ge=MIN_CONNECTIONS, le=65536, description="open HTTP connections at most (lowered to what "
    "LimitNOFILE leaves, less 256 kept for the daemon)")]
MaxClientConnections = Annotated[int, Meta(
    ge=1, le=65536, description="open HTTP connections at most from one address")]
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_MAX_CLIENT_CONNECTIONS = 32


@dataclass(frozen=True)
class Limits:
    max_total: int
    max_per_client: int
    header_timeout_s: float = HEADER_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    body_window_s: float = BODY_WINDOW_S
    min_body_rate: float = MIN_BODY_RATE
    send_stall_s: float = SEND_STALL_S

    @property
    def soft_total(self) -> int:
        return max(1, int(self.max_total * SOFT_SHARE))


def descriptor_budget(soft_nofile: int) -> int:
    """How many connections the descriptor limit leaves room for."""
    return max(MIN_CONNECTIONS, soft_nofile - RESERVED_FDS)


def limits_for(max_connections: int, max_client_connections: int,
               soft_nofile: int | None = None) -> Limits:
    """The configured caps, the total lowered to what the descriptor limit allows."""
    if soft_nofile is None:
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    budget = descriptor_budget(soft_nofile)
    total = max_connections
    if total > budget:
        log.warning("max_connections %d does not fit LimitNOFILE %d (%d kept for the daemon): "
                    "using %d", total, soft_nofile, RESERVED_FDS, budget)
        total = budget
    return Limits(max_total=total, max_per_client=min(max_client_connections, total))


def admit(held_by_client: int, total: int, limits: Limits) -> str | None:
    """None to admit a new connection; else why not."""
    if held_by_client >= limits.max_per_client:
        return f"this client already holds {held_by_client} connections (limit {limits.max_per_client})"
    if total >= limits.max_total:
        return f"the server holds {total} connections (limit {limits.max_total})"
    if total >= limits.soft_total and held_by_client >= FAIR_SHARE:
        return f"the server is busy ({total} connections) and this client holds {held_by_client}"
    return None
