"""handshake.documents: every public document round-trips, one staleness rule, a safe reader."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec
import pytest

from handshake import documents, inboxwire
from handshake import plan as contract
from handshake.documents import (
    ControlDocument,
    Document,
    DocumentError,
    HostDocument,
    InboxDocument,
    InboxPending,
    InboxReceivedDocument,
    PiDocument,
    PiholeDocument,
    PlanSummary,
    PowerDocument,
    PowerPlug,
    Readback,
    SnapshotDocument,
    SnapshotSentDocument,
)
from handshake.errors import ValidationError
from handshake.util.timeutil import iso
from pi.control.config import Limits

NOW = 1_900_000_000.0
AT = iso(NOW) or ""

EXAMPLES: list[Document] = [
    HostDocument(generated_at=AT, interval_s=5, state="online", since=AT,
                 dns={"target": "host"}, power={"plug": "nas", "state": "drawing"}),
    SnapshotDocument(generated_at=AT, received_at=AT, reason="suspend", snapshot={"a": [1, 2]}),
    PiDocument(generated_at=AT, interval_s=60, hostname="pi", load=[0.1, 0.2, 0.3],
               daemons={"api": {"running": True}}, pihole_configured=True),
    PiholeDocument(generated_at=AT, interval_s=60, ok=False, error="unreachable"),
    PowerDocument(generated_at=AT, interval_s=5, plugs=[
        PowerPlug(name="nas", role="host", health="ok", live_w=38.5, last_seen=AT,
                  series_24h={"start": AT, "step_s": 60, "w": [1.0, None]})]),
    InboxDocument(generated_at=AT, interval_s=10, pending=InboxPending(files=3, bytes=42),
                  host_state="offline"),
    ControlDocument(generated_at=AT, interval_s=30, mode="following",
                    plan=PlanSummary(id="p-1", seq=17), readback=Readback(soc_pct=54.0)),
    SnapshotSentDocument(generated_at=AT, sent_at=AT, reason="shutdown"),
    InboxReceivedDocument(generated_at=AT, total_files=1, total_bytes=9, files=[{"path": "a"}]),
]


@pytest.mark.parametrize("document", EXAMPLES, ids=lambda d: type(d).__name__)
def test_every_document_round_trips_through_the_publisher_and_the_reader(
        tmp_path: Path, document: Document) -> None:
    path = tmp_path / documents.FILES[type(document)]
    documents.publish(path, document)
    raw = json.loads(path.read_text())
    assert list(raw)[:4] == ["schema", "generated_at", "interval_s", "stale_after_s"]
    assert raw["schema"] == documents.schema_of(type(document))
    assert raw["schema"].startswith("edgepair.")
    assert raw["schema"].endswith("/1")
    assert raw["generated_at"] == AT
    assert AT.endswith("Z")
    expected = documents.stale_after(document.interval_s)
    assert raw["stale_after_s"] == expected
    assert documents.read(path, type(document)) == msgspec.structs.replace(
        document, stale_after_s=expected)


def test_compact_output_is_the_same_document(tmp_path: Path) -> None:
    path = tmp_path / "power.json"
    documents.publish(path, EXAMPLES[4], compact=True)
    assert path.read_bytes().count(b"\n") == 1
    assert documents.read(path, PowerDocument) == documents.decode(
        documents.encode(EXAMPLES[4]), PowerDocument)


def test_staleness_is_three_intervals_and_the_boundary_is_fresh() -> None:
    assert documents.stale_after(5) == 15.0
    assert documents.stale_after(None) is None  # written on events: never stale
    assert not documents.is_stale(NOW - 15, 15.0, NOW)
    assert documents.is_stale(NOW - 15.001, 15.0, NOW)
    assert not documents.is_stale(NOW - 86400 * 365, None, NOW)
    host = HostDocument(generated_at=iso(NOW - 15) or "", interval_s=5, state="online")
    assert not host.stale(NOW)  # derived from interval_s when not yet published
    assert host.stale(NOW + 0.01)


def test_the_reader_on_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    assert documents.read(path, HostDocument) is None
    path.write_text("{broken")
    with pytest.raises(DocumentError, match="not a public document"):
        documents.read(path, HostDocument)
    assert documents.read_or_none(path, HostDocument) is None
    documents.publish(path, EXAMPLES[5])  # inbox.json under the wrong name
    with pytest.raises(DocumentError, match=r"schema: expected 'edgepair\.host/1', got "
                                            r"'edgepair\.inbox/1'") as error:
        documents.read(path, HostDocument)
    assert error.value.field == "schema"
    assert isinstance(error.value, ValidationError)
    path.write_text(json.dumps({"generated_at": AT, "state": "online"}))
    with pytest.raises(DocumentError, match="schema: expected"):
        documents.read(path, HostDocument)  # no schema at all
    path.write_text(json.dumps({"schema": "edgepair.host/1", "generated_at": "yesterday",
                                "state": "online"}))
    with pytest.raises(DocumentError, match="generated_at"):
        documents.read(path, HostDocument)
    path.write_text(json.dumps({"schema": "edgepair.host/1", "generated_at": AT, "state": 3}))
    with pytest.raises(DocumentError, match=r"state"):
        documents.read(path, HostDocument)
    path.write_text(json.dumps({"schema": "edgepair.host/1", "generated_at": AT,
                                "state": "online", "added_later": 1}))
    assert documents.read(path, HostDocument) is not None  # newer fields: ignored
    assert documents.header(tmp_path / "none.json") is None
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(DocumentError, match="cannot read"):
        documents.read(tmp_path / "dir.json", HostDocument)


def test_the_plan_contract_is_the_pis_and_the_hosts() -> None:
    assert tuple(f.name for f in dataclasses.fields(Limits)) == contract.LIMIT_KEYS
    assert contract.SLOT_S == 900
    assert documents.schema_of(PiDocument) == "edgepair.pi/1"


def test_the_inbox_wire_format_round_trips() -> None:
    files = [("a/b c.txt", b"hello", "0" * 64), ("é/x", b"", "f" * 64)]
    decoded = inboxwire.decode_batch(inboxwire.encode_batch(files))
    assert [(f.path, f.data, f.sha256) for f in decoded] == [
        ("a/b%20c.txt", b"hello", "0" * 64), ("%C3%A9/x", b"", "f" * 64)]
    with pytest.raises(ValidationError, match="file 1: body ends before its 5 bytes"):
        inboxwire.decode_batch(inboxwire.encode_batch(files[:1])[:-1])
