"""The node daemon's decisions without sockets: pairing, results, offline, bounds."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from handshake.errors import AuthError, ValidationError
from pi.nodes import wire
from pi.nodes.config import NodesConfig
from pi.nodes.joblog import JobLog
from pi.nodes.registry import Registry
from pi.nodes.service import NodeService, NotFound

UTC = ZoneInfo("UTC")


def service(tmp_path: Path, **config: object) -> NodeService:
    nodes = msgspec.structs.replace(NodesConfig(), **config)  # type: ignore[arg-type]
    return NodeService(nodes, Registry(tmp_path / "r.json"),
                       JobLog(tmp_path / "j.sqlite", clock=lambda: 0.0), UTC)


def hello(hwid: str, code: str = "CODE2345", caps: tuple[str, ...] = ("relay",)) -> wire.Hello:
    return wire.Hello(hwid=hwid, firmware="f/1", capabilities=list(caps),
                      proof=wire.proof(code, hwid))


def test_pairing_needs_the_code_and_hands_out_a_wrapped_key(tmp_path: Path) -> None:
    s = service(tmp_path)
    assert s.hello(hello("n-1"), "10.0.0.5", 100.0)["state"] == "pending"
    with pytest.raises(ValidationError, match="wrong pairing code"):
        s.approve("n-1", "WRONG234", "lamp", None, 101.0)
    with pytest.raises(NotFound):
        s.approve("n-2", "CODE2345", "lamp", None, 101.0)
    node = s.approve("n-1", "CODE2345", "lamp", "light", 101.0)
    answer = s.hello(hello("n-1"), "10.0.0.5", 102.0)
    assert answer["state"] == "approved"
    assert answer["key"] != node.key  # never in clear
    assert wire.wrap(bytes.fromhex(answer["key"]), "CODE2345", "n-1") == node.key
    # Someone else claiming n-1 without its code gets nothing, and changes nothing.
    assert s.hello(hello("n-1", code="OTHER234"), "10.0.0.66", 103.0)["state"] == "pending"
    assert s.key_of("n-1") == bytes.fromhex(node.key)
    s.remove("lamp")
    with pytest.raises(AuthError):
        s.key_of("n-1")


def test_a_node_cannot_close_another_nodes_job_and_offline_is_noticed(tmp_path: Path) -> None:
    s = service(tmp_path, poll_s=1.0, offline_after_s=5.0)
    for hwid, name in (("n-1", "a"), ("n-2", "b")):
        s.hello(hello(hwid), "10.0.0.5", 0.0)
        s.approve(hwid, "CODE2345", name, None, 0.0)
    s.add_job({"id": "on", "node": "a", "capability": "relay", "params": {"on": True},
               "at": "00:00:10"}, now=0.0)
    assert s.poll("n-1", 5.0)["jobs"] == []
    [job] = s.poll("n-1", 10.5)["jobs"]
    assert job["id"] == "on@19700101T000010Z"
    report = wire.Report(results=[wire.Result(id=job["id"], status="done", result={})])
    assert s.report("n-2", report, 11.0)["ack"] == [job["id"]]  # acknowledged, not taken
    assert s.joblog.get(job["id"]).status == "sent"  # type: ignore[union-attr]
    s.report("n-1", report, 11.5)
    assert s.joblog.get(job["id"]).status == "done"  # type: ignore[union-attr]
    assert s.poll("n-1", 12.0)["jobs"] == []  # done: never again
    s.document(12.0)
    s.tick(17.6)
    assert s.changed
    states = {e.name: e.state for e in s.document(17.6).nodes}
    assert states == {"a": "offline", "b": "offline"}


def test_jobs_are_checked_against_the_node(tmp_path: Path) -> None:
    s = service(tmp_path)
    s.hello(hello("n-1", caps=("motor",)), "10.0.0.5", 0.0)
    s.approve("n-1", "CODE2345", "blinds", None, 0.0)
    for job, expected in (
            ({"capability": "relay", "params": {"on": True}}, "has no relay"),
            ({"capability": "motor", "params": {"direction": "up", "duration_s": 500}},
             "duration_s ≤ 120"),
            ({"capability": "motor", "params": {"direction": "left", "duration_s": 5}},
             "direction up or down"),
            ({"capability": "motor", "params": {"direction": "up", "duration_s": 5}, "at": "7"},
             "HH:MM"),
            ({"capability": "motor", "params": {"direction": "up", "duration_s": 5},
              "at": "07:00", "then": "nope"}, "then names no job")):
        with pytest.raises(ValidationError, match=expected):
            s.add_job({"id": "j", "node": "blinds", "at": "07:00", **job}, now=0.0)
    assert s.registry.jobs() == []


def test_pending_nodes_are_bounded_and_never_stored(tmp_path: Path) -> None:
    s = service(tmp_path, max_pending=3)
    for i in range(10):
        s.hello(hello(f"n-{i}"), "10.0.0.5", float(i))
    assert sorted(s.pending) == ["n-7", "n-8", "n-9"]
    assert s.registry.nodes() == []
    assert "n-" not in (tmp_path / "r.json").read_text()
