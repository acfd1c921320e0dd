"""The Pi's configuration: TOML parsed once into frozen dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handshake.configfile import (
    Problems,
    Secrets,
    Section,
    is_ip,
    is_url,
    load_secrets,
    load_toml,
    parse_hostport,
    parse_sections,
    resolve,
)

DNS_BACKENDS = ("builtin", "pihole", "hostsfile")
# Optional sections and the module whose ``parse(section, file) -> dataclass`` reads each;
# kept light (no device libraries imported) so check-config stays fast.
SECTION_PARSERS = {
    "power": "pi.power.config",
    "inbox": "pi.inbox.config",
    "control": "pi.control.config",
    "pihole": "pi.pihole_stats",
}
DAEMONS = ("api", "power", "inbox", "control")
_MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_NAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class PiSection:
    address: str
    state_dir: Path
    secrets_file: Path


@dataclass(frozen=True, slots=True)
class ApiSection:
    listen: tuple[str, int] = ("0.0.0.0", 8770)
    frontend_dir: Path | None = None
    allow_anonymous_wake: bool = False
    anonymous_wake_per_min: int = 3
    max_body_bytes: int = 4 * 1024 * 1024
    publish_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class HostSection:
    address: str
    mac: str
    url: str
    heartbeat_interval_s: float = 5.0
    heartbeat_timeout_s: float = 2.0
    fall: int = 3
    rise: int = 2
    boot_timeout_s: float = 180.0
    going_offline_grace_s: float = 120.0


@dataclass(frozen=True, slots=True)
class WolSection:
    target: str = "255.255.255.255"
    port: int = 9
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class DnsSection:
    backend: str = "builtin"
    name: str = "nas.home.arpa"
    ttl_s: int = 5
    listen: tuple[str, int] = ("127.0.0.1", 5335)
    reconcile_s: float = 30.0
    pihole_url: str = "http://127.0.0.1"
    hosts_file: Path | None = None
    dnsmasq_pidfile: Path | None = None


@dataclass(frozen=True, slots=True)
class WakeTime:
    """One scheduled wake: a local time of day on some weekdays (0 = Monday)."""

    at: str
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)


@dataclass(frozen=True, slots=True)
class ScheduleSection:
    wake: tuple[WakeTime, ...] = ()
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class PiConfig:
    file: Path
    pi: PiSection
    host: HostSection
    api: ApiSection = field(default_factory=ApiSection)
    wol: WolSection = field(default_factory=WolSection)
    dns: DnsSection = field(default_factory=DnsSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    # Sections owned by the other daemons, parsed by their own modules (SECTION_PARSERS):
    # a frozen dataclass each, or the raw table when this version lacks the parser.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public_dir(self) -> Path:
        return self.pi.state_dir / "public"

    @property
    def private_dir(self) -> Path:
        return self.pi.state_dir / "private"

    def section(self, name: str) -> Any:
        """A parsed optional section (``power``, ``inbox``, ``control``, ``pihole``) or None."""
        return self.extra.get(name)

    def daemons(self) -> tuple[str, ...]:
        """The daemons this file configures: api always, the others when their section exists."""
        return ("api", *(d for d in DAEMONS[1:] if d in self.extra))

    def secrets(self) -> Secrets:
        return load_secrets(self.pi.secrets_file)


def load(path: Path) -> PiConfig:
    """Parse and validate a Pi config file; ConfigError lists every problem."""
    data = load_toml(path)
    problems = Problems(path)
    root = Section(problems, "", data)
    config = _parse(path, root)
    root.done()
    problems.raise_if_any()
    assert config is not None
    return config


def _parse(path: Path, root: Section) -> PiConfig | None:
    s = root.sub("pi")
    address = s.check("address", s.text("address"), is_ip, "an IP address")
    pi = PiSection(address=address,
                   state_dir=resolve(path, s.text("state_dir", "/var/lib/edgepair")),
                   secrets_file=resolve(path, s.text("secrets_file", "/etc/edgepair/secrets.toml")))
    s.done()

    s = root.sub("api")
    listen = _hostport(s, "listen", "0.0.0.0:8770")
    frontend = s.text("frontend_dir", None)
    api = ApiSection(
        listen=listen,
        frontend_dir=resolve(path, frontend) if isinstance(frontend, str) else None,
        allow_anonymous_wake=s.flag("allow_anonymous_wake", False),
        anonymous_wake_per_min=s.integer("anonymous_wake_per_min", 3, lo=1, hi=600),
        max_body_bytes=s.integer("max_body_bytes", 4 * 1024 * 1024, lo=1024, hi=256 * 1024 * 1024),
        publish_interval_s=s.number("publish_interval_s", 30.0, lo=1, hi=3600),
    )
    s.done()

    s = root.sub("host")
    host = HostSection(
        address=s.check("address", s.text("address"), is_ip, "an IP address"),
        mac=s.check("mac", s.text("mac"), lambda v: bool(_MAC_RE.match(v)),
                    "a MAC address like AA:BB:CC:DD:EE:FF"),
        url=s.check("url", s.text("url"), is_url, "an http:// or https:// URL"),
        heartbeat_interval_s=s.number("heartbeat_interval_s", 5.0, lo=0.05, hi=3600),
        # A probe longer than this would starve the watchdog (WatchdogSec=30): a host that
        # takes 20 s to answer on the LAN is not answering.
        heartbeat_timeout_s=s.number("heartbeat_timeout_s", 2.0, lo=0.05, hi=20),
        fall=s.integer("fall", 3, lo=1, hi=100),
        rise=s.integer("rise", 2, lo=1, hi=100),
        boot_timeout_s=s.number("boot_timeout_s", 180.0, lo=1, hi=86400),
        going_offline_grace_s=s.number("going_offline_grace_s", 120.0, lo=1, hi=86400),
    )
    if (isinstance(host.heartbeat_timeout_s, float) and isinstance(host.heartbeat_interval_s, float)
            and host.heartbeat_timeout_s > host.heartbeat_interval_s):
        s.problems.add("host.heartbeat_timeout_s",
                       f"expected a value ≤ heartbeat_interval_s ({host.heartbeat_interval_s}), "
                       f"got {host.heartbeat_timeout_s}")
    s.done()

    s = root.sub("wol")
    wol = WolSection(
        target=s.check("target", s.text("target", "255.255.255.255"), is_ip, "an IP address"),
        port=s.integer("port", 9, lo=1, hi=65535),
        interface=s.check("interface", s.text("interface", None), is_ip,
                          "a local IP address to send from"),
    )
    s.done()

    s = root.sub("dns")
    hosts_file = s.text("hosts_file", None)
    pidfile = s.text("dnsmasq_pidfile", None)
    dns = DnsSection(
        backend=s.text("backend", "builtin", choices=DNS_BACKENDS),
        name=s.check("name", s.text("name", "nas.home.arpa"),
                     lambda v: bool(_NAME_RE.match(v)) and not v.endswith(".local"),
                     "a DNS name (not .local, which belongs to mDNS)"),
        ttl_s=s.integer("ttl_s", 5, lo=0, hi=86400),
        listen=_hostport(s, "listen", "127.0.0.1:5335"),
        reconcile_s=s.number("reconcile_s", 30.0, lo=0.05, hi=86400),
        pihole_url=s.check("pihole_url", s.text("pihole_url", "http://127.0.0.1"), is_url,
                           "an http:// or https:// URL"),
        hosts_file=resolve(path, hosts_file) if isinstance(hosts_file, str) else None,
        dnsmasq_pidfile=resolve(path, pidfile) if isinstance(pidfile, str) else None,
    )
    if dns.backend == "hostsfile" and dns.hosts_file is None:
        s.problems.add("dns.hosts_file", "required when backend = \"hostsfile\"")
    s.done()

    schedule = _schedule(root.sub("schedule"))
    extra = parse_sections(root, path, SECTION_PARSERS)
    return PiConfig(file=path, pi=pi, host=host, api=api, wol=wol, dns=dns, schedule=schedule,
                    extra=extra)


def _hostport(s: Section, key: str, default: str) -> tuple[str, int]:
    value = s.text(key, default)
    parsed = parse_hostport(value) if isinstance(value, str) else None
    if parsed is None:
        s.problems.add(s.key(key), f"expected HOST:PORT like {default!r}, got {value!r}")
        return parse_hostport(default) or ("127.0.0.1", 0)
    return parsed


def _schedule(s: Section) -> ScheduleSection:
    wakes = []
    for entry in s.table_list("wake"):
        at = entry.check("at", entry.text("at"), lambda v: bool(_TIME_RE.match(v)),
                         "a local time HH:MM (24 h)")
        days_text = entry.text("days", "mon-sun")
        days = parse_days(days_text) if isinstance(days_text, str) else None
        if days is None:
            entry.problems.add(entry.key("days"),
                               f"expected days like \"mon-fri\" or \"sat,sun\", got {days_text!r}")
        entry.done()
        if isinstance(at, str):
            wakes.append(WakeTime(at=at, days=days or ()))
    tz = s.text("timezone", None)
    if isinstance(tz, str):
        try:
            from zoneinfo import ZoneInfo  # noqa: PLC0415 - only needed when configured
            ZoneInfo(tz)
        except Exception:
            s.problems.add(s.key("timezone"), f"expected an IANA time zone like "
                           f"\"Europe/Berlin\", got {tz!r}")
    s.done()
    return ScheduleSection(wake=tuple(wakes), timezone=tz)


def parse_days(text: str) -> tuple[int, ...] | None:
    """``"mon-fri"``, ``"sat,sun"``, ``"daily"`` → weekday numbers; None when malformed."""
    text = text.strip().lower()
    if text in ("daily", "*", "mon-sun"):
        return tuple(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
            return None
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if sep else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return tuple(sorted(days))
