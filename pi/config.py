"""The Pi's configuration: one declarative schema (msgspec Structs), parsed once."""


import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from handshake import connlimits
from handshake.util.configfile import is_ip, load_toml
from handshake.util.schema import (
    Check,
    Derived,
    HostPort,
    IpAddress,
    Listen,
    Section,
    TimeZone,
    Url,
    decode,
)
from handshake.util.secrets import Secrets, load_secrets
from handshake.util.weekly import WakeTime as WakeTime  # noqa: PLC0414 (re-exported: it lived here)
from handshake.util.weekly import parse_days as parse_days  # noqa: PLC0414
from pi.backup.config import BackupConfig
from pi.control.config import ControlConfig
from pi.demand.config import DemandConfig
from pi.inbox.config import InboxConfig
from pi.mqtt.config import MqttConfig
from pi.nodes.config import NodesConfig
from pi.notify.config import NotifyCredentials, NotifyOptions, NotifyTarget
from pi.pihole_stats import PiholeStatsConfig
from pi.power.config import PowerConfig
from pi.usage.config import UsageConfig

DAEMONS = ("api", "power", "inbox", "control", "node", "mqtt")
# The section that configures a daemon, where its name differs.
_SECTION_OF = {"node": "nodes"}
_MAC_RE = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_NAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# A probe longer than this would starve the watchdog (WatchdogSec=30): a host that takes
# 20 s to answer on the LAN is not answering.
MAX_HEARTBEAT_TIMEOUT_S = 20.0
DEFAULT_HEARTBEAT_TIMEOUT_S = 2.0


class PiSecrets(Secrets, frozen=True, kw_only=True):
    """The Pi's secrets file: the handshake key, and what the plugs and Pi-hole need."""

    tapo_username: Annotated[str | None, Meta(description="the Tapo app account ([power])")] = None
    tapo_password: Annotated[str | None, Meta(description="its password")] = None
    pihole_password: Annotated[str | None, Meta(
        description="Pi-hole's app password (dns backend pihole, [pihole])")] = None
    mqtt_password: Annotated[str | None, Meta(description="the MQTT broker's password ([mqtt])")] = None
    notify: Annotated[dict[str, NotifyCredentials], Meta(
        description="[notify.NAME] token, username, password, headers: the credentials of the "
                    "[[notify]] target NAME")] = msgspec.field(default_factory=dict)


class PiSection(Section, frozen=True, kw_only=True):
    address: Annotated[IpAddress, Meta(description="the Pi's address: the DNS answer while the "
                                                   "host is not online")]
    state_dir: Annotated[Path, Meta(description="public/ and private/ state")] = \
        Path("/var/lib/edgepair")
    secrets_file: Annotated[Path, Meta(description="handshake_key, tapo_username, tapo_password, "
                                                   "pihole_password, mqtt_password")] = \
        Path("/etc/edgepair/secrets.toml")


class ApiSection(Section, frozen=True, kw_only=True):
    listen: Annotated[Listen, Meta(description="the handshake API and the dashboard")] = \
        HostPort("0.0.0.0", 8770)
    frontend_dir: Annotated[Path | None, Meta(
        description="serve this dashboard instead of the embedded one")] = None
    allow_anonymous_wake: Annotated[bool, Meta(
        description="POST /api/v1/wake without a signature (rate-limited)")] = False
    anonymous_wake_per_min: Annotated[int, Meta(ge=1, le=600, description="that rate limit")] = 3
    max_body_bytes: Annotated[int, Meta(ge=1024, le=256 * 1024 * 1024,
                                        description="larger request bodies get 413")] = 4 * 1024 * 1024
    publish_interval_s: Annotated[float, Meta(
        ge=1, le=3600, description="host.json is rewritten at least this often")] = 30.0
    max_connections: connlimits.MaxConnections = connlimits.DEFAULT_MAX_CONNECTIONS
    max_client_connections: connlimits.MaxClientConnections = connlimits.DEFAULT_MAX_CLIENT_CONNECTIONS

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.max_client_connections > self.max_connections:
            yield ("max_client_connections", f"expected a value ≤ max_connections "
                   f"({self.max_connections}), got {self.max_client_connections}")


def _derived_timeout(host: "HostSection") -> float:
    return min(DEFAULT_HEARTBEAT_TIMEOUT_S, host.heartbeat_interval_s / 2)


class HostSection(Section, frozen=True, kw_only=True):
    address: Annotated[IpAddress, Meta(description="the host's address: the DNS answer while online")]
    mac: Annotated[str, Check(lambda v: bool(_MAC_RE.match(v)), "a MAC address like AA:BB:CC:DD:EE:FF"),
                   Meta(description="for Wake-on-LAN")]
    url: Annotated[Url, Meta(description="the host agent (/api/v1/health, /api/v1/inbox)")]
    heartbeat_interval_s: Annotated[float, Meta(ge=0.05, le=3600, description="health poll period")] = 5.0
    heartbeat_timeout_s: Annotated[float, Meta(ge=0.05, le=MAX_HEARTBEAT_TIMEOUT_S,
                                               description="one health poll's deadline")] = \
        DEFAULT_HEARTBEAT_TIMEOUT_S
    fall: Annotated[int, Meta(ge=1, le=100, description="failed polls in a row: host lost")] = 3
    rise: Annotated[int, Meta(ge=1, le=100, description="good polls in a row: host online")] = 2
    boot_timeout_s: Annotated[float, Meta(ge=1, le=86400,
                                          description="waking → unreachable after this")] = 180.0
    going_offline_grace_s: Annotated[float, Meta(
        ge=1, le=86400, description="announced but still answering: back online after this")] = 120.0

    DERIVED: ClassVar[dict[str, Derived]] = {"heartbeat_timeout_s": Derived(
        _derived_timeout, f"min({DEFAULT_HEARTBEAT_TIMEOUT_S:g}, heartbeat_interval_s / 2)")}

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.heartbeat_timeout_s > self.heartbeat_interval_s:
            yield ("heartbeat_timeout_s", f"expected a value ≤ heartbeat_interval_s "
                   f"({self.heartbeat_interval_s}), got {self.heartbeat_timeout_s}")


class WolSection(Section, frozen=True, kw_only=True):
    target: Annotated[IpAddress, Meta(description="broadcast or unicast address")] = "255.255.255.255"
    port: Annotated[int, Meta(ge=1, le=65535, description="UDP port of the magic packet")] = 9
    interface: Annotated[str | None, Check(is_ip, "a local IP address to send from"),
                         Meta(description="send from this local address")] = None


class DnsSection(Section, frozen=True, kw_only=True):
    backend: Annotated[Literal["builtin", "pihole", "hostsfile"], Meta(
        description="who answers for the name")] = "builtin"
    name: Annotated[str, Check(lambda v: bool(_NAME_RE.match(v)) and not v.endswith(".local"),
                               "a DNS name (not .local, which belongs to mDNS)"),
                    Meta(description="the failover name")] = "nas.home.arpa"
    ttl_s: Annotated[int, Meta(ge=0, le=86400, description="TTL of the answer")] = 5
    listen: Annotated[Listen, Meta(description="builtin: UDP and TCP address")] = \
        HostPort("127.0.0.1", 5335)
    reconcile_s: Annotated[float, Meta(ge=0.05, le=86400,
                                       description="the record is read back and corrected this often")] = 30.0
    pihole_url: Annotated[Url, Meta(description="pihole: its web server")] = "http://127.0.0.1"
    hosts_file: Annotated[Path | None, Meta(description="hostsfile: the addn-hosts file")] = None
    dnsmasq_pidfile: Annotated[Path | None, Meta(description="hostsfile: dnsmasq to SIGHUP")] = None

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.backend == "hostsfile" and self.hosts_file is None:
            yield ("hosts_file", "required when backend = \"hostsfile\"")


class ScheduleSection(Section, frozen=True, kw_only=True):
    wake: Annotated[tuple[WakeTime, ...], Meta(description="scheduled wakes")] = ()
    timezone: Annotated[TimeZone | None, Meta(description="default: the Pi's local zone")] = None


class ShareSection(Section, frozen=True, kw_only=True):
    """The standalone SMB share (scripts/samba/edgepair-share.conf): always there, on the Pi
    itself, whether the host sleeps or not. No daemon owns it; pi.json shows its free space."""

    dir: Annotated[Path, Meta(description="the shared folder")] = Path("/smb/share")


class PiConfig(Section, frozen=True, kw_only=True):
    """The whole Pi file; the optional sections configure the daemons that own them."""

    pi: PiSection
    host: HostSection
    api: ApiSection = ApiSection()
    wol: WolSection = WolSection()
    dns: DnsSection = DnsSection()
    schedule: ScheduleSection = ScheduleSection()
    wake_on_demand: DemandConfig = DemandConfig()
    power: PowerConfig | None = None
    inbox: InboxConfig | None = None
    control: ControlConfig | None = None
    pihole: PiholeStatsConfig | None = None
    mqtt: MqttConfig | None = None
    nodes: NodesConfig | None = None
    usage: UsageConfig = UsageConfig()
    share: ShareSection | None = None
    backup: BackupConfig | None = None
    notify: Annotated[tuple[NotifyTarget, ...], Meta(
        description="where alarms are sent ([[notify]], one table per target)")] = ()
    notify_options: NotifyOptions = NotifyOptions()
    file: Path = msgspec.field(default=Path("pi.toml"), name="_file")  # set by load()

    @property
    def public_dir(self) -> Path:
        return self.pi.state_dir / "public"

    @property
    def private_dir(self) -> Path:
        return self.pi.state_dir / "private"

    def problems(self) -> Iterator[tuple[str, str]]:
        labels = [t.label for t in self.notify]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            yield ("notify", f"expected a distinct name for each target (name = \"…\"), got "
                             f"{labels.count(label)} targets named {label!r}")
        if self.wake_on_demand.dns and self.dns.backend != "builtin":
            yield ("wake_on_demand.dns", f"expected dns.backend = \"builtin\" (only the "
                   f"built-in responder sees the queries; Pi-hole forwards the zone to it), "
                   f"got dns.backend = \"{self.dns.backend}\"")
        if self.mqtt is not None and self.mqtt.allow_wake and not self.api.allow_anonymous_wake:
            yield ("mqtt.allow_wake", "expected api.allow_anonymous_wake = true (the button "
                   "goes through the anonymous wake and its rate limit), got false")

    def shares(self) -> dict[str, Path]:
        """The SMB folders on the Pi whose free space pi.json shows, by share name."""
        out = {}
        if self.inbox is not None:
            out["inbox"] = self.inbox.dir
        if self.share is not None:
            out["share"] = self.share.dir
        return out

    def daemons(self) -> tuple[str, ...]:
        """The daemons this file configures: api always, the others when their section exists."""
        return ("api", *(d for d in DAEMONS[1:]
                         if getattr(self, _SECTION_OF.get(d, d)) is not None))

    def secrets(self) -> PiSecrets:
        return load_secrets(self.pi.secrets_file, PiSecrets)


def load(path: Path) -> PiConfig:
    """Parse and validate a Pi config file; ConfigError lists every problem."""
    return decode(PiConfig, load_toml(path), path)
