"""Whether one demand wakes the host: a pure ``decide(demand, now, …) -> Verdict``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, tzinfo

from pi.demand.config import DemandConfig

# States in which the host needs no demand wake: it answers already, or it is on its way
# up. Going down is not one of them: a person who asks just as it suspends must not wait
# for the next wake; the state machine wakes it as soon as it is down.
_NOT_ASLEEP = ("online", "waking")


@dataclass(frozen=True, slots=True)
class Demand:
    """Somebody wanted the host: ``via`` "dns" or "port" (and which port)."""

    client: str
    via: str
    port: int | None = None

    @property
    def reason(self) -> str:
        return f"demand:{self.via}"


@dataclass(frozen=True, slots=True)
class Verdict:
    wake: bool
    why: str  # "wake", or what stopped it: a stable word for logs and counters
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    """What the decision needs besides the demand; built by the thin listener code."""

    host_state: str
    last_wake_at: float | None  # the last demand wake, for min_interval_s
    own_addresses: frozenset[str]  # the Pi's and the host's own: never a demand
    tz: tzinfo


def decide(demand: Demand, now: float, context: Context, config: DemandConfig) -> Verdict:
    """One demand → wake or not, and why not: the first rule that says no wins."""
    try:
        client = ipaddress.ip_address(demand.client)
    except ValueError:
        return Verdict(False, "bad-client", f"not an address: {demand.client!r}")
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    if context.host_state in _NOT_ASLEEP:
        return Verdict(False, "not-asleep", f"the host is {context.host_state}")
    if str(client) in context.own_addresses or (
            client.is_loopback and not _allowed(client, config)):
        return Verdict(False, "own", f"{client} is the Pi or the host itself")
    if any(client in net for net in config.deny if net.version == client.version):
        return Verdict(False, "denied", f"{client} is in wake_on_demand.deny")
    if not _allowed(client, config):
        return Verdict(False, "not-allowed", f"{client} is not in wake_on_demand.clients")
    minute = _minute_of_day(now, context.tz)
    for span in config.quiet_hours:
        if span.covers(minute):
            return Verdict(False, "quiet", f"quiet hours {span}")
    if context.last_wake_at is not None and now - context.last_wake_at < config.min_interval_s:
        left = config.min_interval_s - (now - context.last_wake_at)
        return Verdict(False, "too-soon", f"the last demand wake was {now - context.last_wake_at:.0f} s "
                       f"ago (min_interval_s {config.min_interval_s:g}; {left:.0f} s left)")
    return Verdict(True, "wake", f"{demand.reason} from {client}")


def _allowed(client: ipaddress.IPv4Address | ipaddress.IPv6Address, config: DemandConfig) -> bool:
    return any(client in net for net in config.clients if net.version == client.version)


def _minute_of_day(now: float, tz: tzinfo) -> int:
    local = datetime.fromtimestamp(now, tz)
    return local.hour * 60 + local.minute
