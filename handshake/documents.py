"""The public documents under ``state_dir/public/``: their types, one publisher, one reader.

Every document carries ``schema`` (``edgepair.<name>/1``), ``generated_at`` (UTC, ISO 8601,
Z), the writer's publish ``interval_s`` (null: written on events) and ``stale_after_s``, the
age past which a reader must not take it as live (``stale_after``). The publisher fills in
``stale_after_s``, so the Pi's daemons, the host and the dashboard judge staleness by one rule.

Large or variable parts (series, snapshots, registers) stay ``dict[str, Any]``: typed is
what other daemons read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from handshake.errors import ValidationError
from handshake.util import atomic, strictjson
from handshake.util.quietlog import QuietLogger
from handshake.util.timeutil import parse_iso

# A document older than this many of its writer's intervals is stale: its writer is not
# running (or hung). Three, not one: a busy SD card or a slow tick must not flap the status.
STALE_FACTOR = 3.0


class DocumentError(ValidationError):
    """A public file exists but is not a readable document of the expected type."""


class Document(msgspec.Struct, frozen=True, kw_only=True, tag_field="schema"):
    """What every public document carries (``schema`` is the subclass's tag)."""

    generated_at: str
    interval_s: float | None = None
    stale_after_s: float | None = None

    @property
    def generated(self) -> float:
        """``generated_at`` as a Unix time."""
        return parse_iso(self.generated_at).timestamp()

    def stale(self, now: float) -> bool:
        """Past ``stale_after_s`` (as written, else derived from ``interval_s``)."""
        limit = self.stale_after_s if self.stale_after_s is not None else stale_after(self.interval_s)
        return is_stale(self.generated, limit, now)


def stale_after(interval_s: float | None) -> float | None:
    """The staleness rule: older than STALE_FACTOR × the writer's interval; never on events."""
    return None if interval_s is None else STALE_FACTOR * interval_s


def is_stale(generated: float, stale_after_s: float | None, now: float) -> bool:
    """Whether a document generated at ``generated`` is stale at ``now`` (the boundary is fresh)."""
    return stale_after_s is not None and now - generated > stale_after_s


# -- the api daemon's documents ---------------------------------------------------------------


class HostDocument(Document, frozen=True, kw_only=True, tag="edgepair.host/1"):
    """host.json (api): the host state machine, heartbeat, DNS, wakes, the host plug."""

    state: str
    since: str | None = None
    reason: str | None = None
    last_heartbeat: dict[str, Any] | None = None
    heartbeat: dict[str, Any] = {}
    dns: dict[str, Any] = {}
    next_wake: dict[str, Any] | None = None
    last_wake: dict[str, Any] | None = None
    boot_timeout_s: float | None = None
    alarm: dict[str, Any] | None = None
    power: dict[str, Any] | None = None
    # Wake on demand: what triggers it, the ports held now, why demands were (not) served.
    demand: dict[str, Any] | None = None


class SnapshotDocument(Document, frozen=True, kw_only=True, tag="edgepair.snapshot/1"):
    """snapshot.json (api): the host's last metadata snapshot, as received."""

    received_at: str | None = None
    reason: str | None = None
    wake_at: str | None = None
    snapshot: dict[str, Any] = {}
    # Where the received snapshot held text UTF-8 cannot store (replaced by U+FFFD) or a
    # key that was dropped for it: JSON paths with what was done, [] when stored as received.
    sanitised: list[str] = []


class PiDocument(Document, frozen=True, kw_only=True, tag="edgepair.pi/1"):
    """pi.json (api): the Pi's load, memory, temperature, disk and its daemons."""

    hostname: str | None = None
    uptime_s: float | None = None
    load: list[float] = []
    cpus: int | None = None
    memory: dict[str, Any] | None = None
    temperature_c: float | None = None
    disk: dict[str, Any] | None = None
    daemons: dict[str, dict[str, Any]] = {}
    pihole_configured: bool = False
    # The SMB folders on the Pi (the inbox, the standalone share): path, total, used, free
    # bytes each, or an error when the folder cannot be measured.
    shares: dict[str, dict[str, Any]] = {}
    # The Pi's own backup to the host ([backup]): last good one, last error, next due.
    backup: dict[str, Any] | None = None


class PiholeDocument(Document, frozen=True, kw_only=True, tag="edgepair.pihole/1"):
    """pihole.json (api): Pi-hole's summary headline, or why it could not be read."""

    ok: bool
    error: str | None = None
    queries: dict[str, Any] | None = None
    clients: dict[str, Any] | None = None
    gravity: dict[str, Any] | None = None


class UsageWake(msgspec.Struct, frozen=True, kw_only=True):
    """One wake in usage.json: when, why (handshake.messages.WAKE_REASONS), for whom."""

    at: str
    reason: str
    client: str | None = None


class UsageBand(msgspec.Struct, frozen=True, kw_only=True):
    """One host state interval of today's timeline (clipped to the day)."""

    start: str
    end: str
    state: str


class UsageDay(msgspec.Struct, frozen=True, kw_only=True):
    """One local day in usage.json; the energy figures are null without host plug data."""

    date: str
    partial: bool = False
    hours_recorded: float = 0.0
    hours_online: float = 0.0
    wakes: dict[str, int] = {}
    host_kwh: float | None = None
    saved_kwh: float | None = None
    saved_money: float | None = None


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    """The sums over the current calendar month (the days with data)."""

    month: str
    hours_online: float = 0.0
    wakes: dict[str, int] = {}
    host_kwh: float | None = None
    saved_kwh: float | None = None
    saved_money: float | None = None


class DemandClient(msgspec.Struct, frozen=True, kw_only=True):
    """A client whose demand woke the host (last 30 days), with how often."""

    client: str
    wakes: int
    last: str


class UsageDocument(Document, frozen=True, kw_only=True, tag="edgepair.usage/1"):
    """usage.json (api): per day hours online, wakes by reason, host kWh, kWh/money saved."""

    timezone: str | None = None
    host_plug: str | None = None
    online_draw_w: float | None = None
    price_per_kwh: float | None = None
    currency: str = "EUR"
    recorded_since: str | None = None
    days: list[UsageDay] = []
    month: UsageTotals | None = None
    # Today in the Pi's zone: [today_start, today_end) and its state bands up to now.
    today_start: str | None = None
    today_end: str | None = None
    today: list[UsageBand] = []
    recent_wakes: list[UsageWake] = []
    demand_clients: list[DemandClient] = []


# -- the other Pi daemons' documents ---------------------------------------------------------


class PowerPlug(msgspec.Struct, frozen=True, kw_only=True):
    """One plug in power.json."""

    name: str
    role: str
    health: str
    last_seen: str | None = None
    live_w: float | None = None
    today_kwh: float | None = None
    month_kwh: float | None = None
    energy_source: str | None = None
    series_24h: dict[str, Any] = {}
    daily_kwh: list[dict[str, Any]] = []
    error: str | None = None
    interval_s: float | None = None


class PowerDocument(Document, frozen=True, kw_only=True, tag="edgepair.power/1"):
    """power.json (power): per plug live W, today/month kWh, 24 h series, health."""

    plugs: list[PowerPlug] = []

    def plug(self, name: str) -> PowerPlug | None:
        return next((p for p in self.plugs if p.name == name), None)


class InboxPending(msgspec.Struct, frozen=True, kw_only=True):
    """What waits in the Pi's inbox (in flight included) and what of it is ready."""

    files: int = 0
    bytes: int = 0
    oldest: str | None = None
    ready_files: int = 0
    ready_bytes: int = 0
    hashed_files: int = 0


class InboxDelivered(msgspec.Struct, frozen=True, kw_only=True):
    """What the inbox daemon delivered to the host since ``since`` (its start): counters."""

    files: int = 0
    bytes: int = 0
    since: str | None = None


class InboxDocument(Document, frozen=True, kw_only=True, tag="edgepair.inbox/1"):
    """inbox.json (inbox): pending files and bytes, in flight, last flush, errors."""

    pending: InboxPending = InboxPending()
    delivered: InboxDelivered = InboxDelivered()
    in_flight: list[dict[str, Any]] = []
    last_flush: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    rejected: list[dict[str, Any]] = []
    host_state: str | None = None
    wake: dict[str, Any] = {}


class PlanSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The plan in force, as control.json reports it."""

    id: str
    seq: int
    valid_until: str | None = None
    status: str | None = None
    optimizer: str | None = None
    savings_eur: float | None = None  # what the host expects the plan to save vs doing nothing
    reason: str | None = None  # why the host pushed self-consumption instead of its plan


class Readback(msgspec.Struct, frozen=True, kw_only=True):
    """What the control daemon last read back from the devices."""

    soc_pct: float | None = None
    battery_w: float | None = None
    grid_w: float | None = None
    registers: dict[str, Any] = {}


class ControlDocument(Document, frozen=True, kw_only=True, tag="edgepair.control/1"):
    """control.json (control): plan in force, current slot, read-back, safe state, alarms."""

    mode: str
    reason: str | None = None
    detail: str | None = None
    plan: PlanSummary | None = None
    slot: dict[str, Any] | None = None
    readback: Readback | None = None
    alarms: list[dict[str, Any]] = []
    writes_today: int | None = None
    write_budget: int | None = None
    profile: str | None = None
    override: dict[str, Any] | None = None  # a manual override in force, with its expiry


class EnergyDocument(Document, frozen=True, kw_only=True, tag="edgepair.energy/1"):
    """energy.json (control): today per 15-min slot (planned vs actual, cost, the no-plan
    baseline, the realised saving), 30 days of totals, the plan's forecast vs realised saving."""

    slot_s: int = 900
    today: dict[str, Any] = {}
    days: list[dict[str, Any]] = []
    plan: dict[str, Any] | None = None


class MqttDocument(Document, frozen=True, kw_only=True, tag="edgepair.mqtt/1"):
    """mqtt.json (mqtt): the broker link, what is published there, the last error."""

    broker: str
    connected: bool = False
    since: str | None = None  # connected or disconnected since
    topic_prefix: str | None = None
    entities: int = 0
    messages_published: int = 0  # since the daemon started
    connects: int = 0
    last_publish: str | None = None
    last_error: str | None = None


# -- the host's own public files (its dashboard) ----------------------------------------------


class NodeReading(msgspec.Struct, frozen=True, kw_only=True):
    value: float | int | bool
    unit: str | None = None
    at: str


class NodeNextJob(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    due: str
    action: str


class NodeEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ESP32 node as nodes.json shows it."""

    hwid: str
    name: str | None = None
    role: str | None = None
    state: Literal["pending", "online", "offline"]
    last_seen: str | None = None
    firmware: str = ""
    capabilities: list[str] = []
    readings: dict[str, NodeReading] = {}
    next_job: NodeNextJob | None = None


class NodesDocument(Document, frozen=True, kw_only=True, tag="edgepair.nodes/1"):
    """nodes.json (node): each ESP32 node's state, last seen, readings and next job."""

    nodes: list[NodeEntry] = []


class SnapshotSentDocument(Document, frozen=True, kw_only=True, tag="edgepair.snapshot/1"):
    """snapshot-sent.json (host notify): the snapshot the Pi acknowledged."""

    sent_at: str | None = None
    reason: str | None = None
    wake_at: str | None = None
    snapshot: dict[str, Any] | None = None


class InboxReceivedDocument(Document, frozen=True, kw_only=True,
                            tag="edgepair.inbox-received/1"):
    """inbox-received.json (host inbox receiver): totals and the newest files received."""

    total_files: int = 0
    total_bytes: int = 0
    files: list[dict[str, Any]] = []


D = TypeVar("D", bound=Document)

# The file name each Pi document is published under (state_dir/public/).
FILES: dict[type[Document], str] = {
    HostDocument: "host.json", SnapshotDocument: "snapshot.json", PiDocument: "pi.json",
    PiholeDocument: "pihole.json", UsageDocument: "usage.json", PowerDocument: "power.json",
    InboxDocument: "inbox.json", MqttDocument: "mqtt.json",
    ControlDocument: "control.json", EnergyDocument: "energy.json",
    SnapshotSentDocument: "snapshot-sent.json",
    InboxReceivedDocument: "inbox-received.json", NodesDocument: "nodes.json",
}


def schema_of(kind: type[Document]) -> str:
    """The ``schema`` id of a document type (``edgepair.<name>/1``)."""
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str), f"{kind.__name__} has no schema tag"
    return tag


# -- publisher and reader -----------------------------------------------------------------------


def encode(document: Document, *, compact: bool = False) -> bytes:
    """The document's JSON, ``stale_after_s`` filled in from its ``interval_s``."""
    if document.stale_after_s is None and document.interval_s is not None:
        document = msgspec.structs.replace(document, stale_after_s=stale_after(document.interval_s))
    data = msgspec.json.encode(document)
    return data if compact else msgspec.json.format(data, indent=1)


def publish(path: Path, document: Document, *, compact: bool = False) -> None:
    """Write a public document atomically (blocking: call it in a thread from a loop).

    ``compact`` for big documents (power series, snapshots): no indentation.
    """
    atomic.write_bytes(path, encode(document, compact=compact) + b"\n")


def try_publish(path: Path, document: Document, quiet: QuietLogger, *,
                compact: bool = False) -> bool:
    """``publish``, but a failed write (a full or read-only card, no descriptors left) is
    a WARNING (once, until it works again) and False: the daemon goes on without it."""
    try:
        publish(path, document, compact=compact)
    except OSError as exc:
        quiet.failure(f"publish:{path.name}", "cannot write %s: %s", path, exc.strerror or exc)
        return False
    quiet.success(f"publish:{path.name}", "%s written again", path)
    return True


def decode(data: bytes | str, kind: type[D]) -> D:
    """Parse a document of type ``kind``; DocumentError says what is wrong."""
    try:
        strictjson.depth_ok(data if isinstance(data, str) else data.decode("utf-8", "replace"))
        header = msgspec.json.decode(data, type=_Header)
    except strictjson.JsonError as exc:  # msgspec would raise RecursionError: not a 500
        raise DocumentError(f"not a public document: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DocumentError(f"not a public document: {exc}") from None
    expected = schema_of(kind)
    if header.schema != expected:
        raise DocumentError(f"expected {expected!r}, got {header.schema!r}", "schema")
    try:
        parse_iso(header.generated_at)
    except (ValueError, OverflowError) as exc:
        raise DocumentError(f"expected an ISO 8601 time with zone: {exc}", "generated_at") from None
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError as exc:
        raise DocumentError(f"not a valid {expected} document: {exc}") from None


def convert(document: dict[str, Any], kind: type[D]) -> D:
    """A document already parsed as JSON (a fetched ``/data/…`` file, a builder's dict)."""
    try:
        return decode(msgspec.json.encode(document), kind)
    except (TypeError, msgspec.EncodeError) as exc:
        raise DocumentError(f"not JSON: {exc}") from None


def read(path: Path, kind: type[D]) -> D | None:
    """The document in ``path``; None when there is none; DocumentError when it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return decode(data, kind)
    except DocumentError as exc:
        error = DocumentError(f"{path}: {exc}")
        error.field = exc.field  # the path goes in front, the field it names stays known
        raise error from None


def read_or_none(path: Path, kind: type[D]) -> D | None:
    """Like ``read``, for readers to whom an unusable file is as good as none."""
    try:
        return read(path, kind)
    except DocumentError:
        return None


def header(path: Path) -> Document | None:
    """Any public document's common part (schema, generated_at, interval_s); None if unusable."""
    try:
        data = path.read_bytes()
        strictjson.depth_ok(data.decode("utf-8", "replace"))
        found = msgspec.json.decode(data, type=_Header)
        parse_iso(found.generated_at)
    except (OSError, msgspec.DecodeError, ValueError, OverflowError):
        return None
    return found


class _Header(Document, frozen=True, kw_only=True, tag_field="_kind", tag=False):
    """The part of any document a reader checks first (``schema`` read as a field)."""

    schema: str | None = None
