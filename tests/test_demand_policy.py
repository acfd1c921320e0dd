"""Wake on demand's decision (pure) and its config keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from handshake.errors import ConfigError
from handshake.util.schema import decode
from pi import config as pi_config
from pi.demand.config import DemandConfig
from pi.demand.policy import Context, Demand, decide

# Monday 2026-12-07 12:00 UTC.
NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
OWN = frozenset({"192.168.1.2", "192.168.1.10"})


def cfg(**keys: object) -> DemandConfig:
    return decode(DemandConfig, {"dns": True, **keys}, Path("pi.toml"))


def ctx(state: str = "offline", last: float | None = None) -> Context:
    return Context(host_state=state, last_wake_at=last, own_addresses=OWN, tz=UTC)


@pytest.mark.parametrize(("client", "context", "keys", "now", "why"), [
    ("192.168.1.50", ctx(), {}, NOON, "wake"),
    ("192.168.1.50", ctx("unreachable"), {}, NOON, "wake"),
    ("::ffff:192.168.1.50", ctx(), {}, NOON, "wake"),
    ("fd00::5", ctx(), {}, NOON, "wake"),
    ("192.168.1.50", ctx("online"), {}, NOON, "not-asleep"),
    ("192.168.1.50", ctx("waking"), {}, NOON, "not-asleep"),
    ("192.168.1.50", ctx("going_offline"), {}, NOON, "wake"),  # once it is down
    ("192.168.1.2", ctx(), {}, NOON, "own"),  # the Pi itself
    ("192.168.1.10", ctx(), {}, NOON, "own"),  # the host, just before it slept
    ("127.0.0.1", ctx(), {}, NOON, "own"),
    ("8.8.8.8", ctx(), {}, NOON, "not-allowed"),
    ("192.168.1.77", ctx(), {"deny": ["192.168.1.77"]}, NOON, "denied"),
    ("192.168.1.77", ctx(), {"deny": ["192.168.1.64/26"]}, NOON, "denied"),
    ("192.168.1.50", ctx(), {"clients": ["10.0.0.0/8"]}, NOON, "not-allowed"),
    ("192.168.1.50", ctx(), {"quiet_hours": "11:30-12:30"}, NOON, "quiet"),
    ("192.168.1.50", ctx(), {"quiet_hours": ["23:00-12:01"]}, NOON, "quiet"),  # over midnight
    ("192.168.1.50", ctx(), {"quiet_hours": ["23:00-12:00"]}, NOON, "wake"),  # end excluded
    ("192.168.1.50", ctx(), {"quiet_hours": ["01:00-06:00"]}, NOON, "wake"),
    ("192.168.1.50", ctx(last=NOON - 599), {}, NOON, "too-soon"),
    ("192.168.1.50", ctx(last=NOON - 600), {}, NOON, "wake"),
    ("192.168.1.50", ctx(last=NOON - 10), {"min_interval_s": 5}, NOON, "wake"),
    ("not an address", ctx(), {}, NOON, "bad-client"),
])
def test_decide(client: str, context: Context, keys: dict[str, object], now: float,
                why: str) -> None:
    verdict = decide(Demand(client, "dns"), now, context, cfg(**keys))
    assert (verdict.wake, verdict.why) == (why == "wake", why)
    assert verdict.detail


def test_the_deny_list_wins_over_the_allow_list() -> None:
    config = cfg(clients=["192.168.1.0/24"], deny=["192.168.1.77/32"])
    assert decide(Demand("192.168.1.77", "port", 80), NOON, ctx(), config).why == "denied"
    assert decide(Demand("192.168.1.78", "port", 80), NOON, ctx(), config).wake


def test_quiet_hours_are_local_time() -> None:
    berlin = Context(host_state="offline", last_wake_at=None, own_addresses=OWN,
                     tz=ZoneInfo("Europe/Berlin"))
    # 12:00 UTC is 13:00 in Berlin in December.
    config = cfg(quiet_hours="12:30-13:30")
    assert decide(Demand("192.168.1.50", "dns"), NOON, berlin, config).why == "quiet"
    assert decide(Demand("192.168.1.50", "dns"), NOON, ctx(), config).wake


@pytest.mark.parametrize(("keys", "message"), [
    ({"ports": [22, 22]}, "ports: expected distinct TCP ports 1-65535, at most 16, got [22, 22]"),
    ({"ports": [0]}, "ports: expected distinct TCP ports"),
    ({"ports": [70000]}, "ports: expected distinct TCP ports"),
    ({"ports": "80"}, "ports: expected a list of integers, got '80'"),
    ({"ports": [80], "http_ports": [80]}, "http_ports: expected ports not also in ports"),
    ({"clients": ["192.168.1.1/24"]}, "clients: expected a list of CIDR networks like "
                                      "\"192.168.1.0/24\" (host bits zero), got ['192.168.1.1/24']"),
    ({"deny": "192.168.1.7"}, "deny: expected a list of CIDR networks"),
    ({"deny": ["tv.home"]}, "deny: expected a list of CIDR networks"),
    ({"quiet_hours": "1:00-6:00"}, "quiet_hours: expected local time spans like \"01:00-06:00\""),
    ({"quiet_hours": ["01:00-01:00"]}, "quiet_hours: expected local time spans"),
    ({"quiet_hours": ["25:00-06:00"]}, "quiet_hours: expected local time spans"),
    ({"min_interval_s": -1}, "min_interval_s: expected a value ≥ 0, got -1"),
    ({"mni_interval_s": 5}, "mni_interval_s: unknown key (did you mean 'min_interval_s'?)"),
])
def test_bad_keys_are_named(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(**keys)
    assert any(message in problem for problem in err.value.problems), err.value.problems


def test_defaults_allow_the_private_ranges_only() -> None:
    config = DemandConfig()
    assert not config.enabled
    assert {str(n) for n in config.clients} >= {"10.0.0.0/8", "192.168.0.0/16", "fc00::/7"}
    assert cfg(ports=[445], http_ports=[80]).listen_ports == (80, 445)


def test_the_dns_trigger_needs_the_builtin_responder(tmp_path: Path) -> None:
    path = tmp_path / "pi.toml"
    path.write_text("""
[pi]
address = "192.168.1.2"
[host]
address = "192.168.1.10"
mac = "AA:BB:CC:DD:EE:FF"
url = "http://192.168.1.10:8771"
[dns]
backend = "pihole"
[wake_on_demand]
dns = true
""")
    with pytest.raises(ConfigError) as err:
        pi_config.load(path)
    assert err.value.problems == [
        f"{path}: wake_on_demand.dns: expected dns.backend = \"builtin\" (only the built-in "
        "responder sees the queries; Pi-hole forwards the zone to it), got dns.backend = "
        "\"pihole\""]
