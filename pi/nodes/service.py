"""The node daemon's state and decisions: pairing, polls, reports, jobs, nodes.json.

No sockets here: the HTTP layer (daemon.py) parses and verifies, then calls these methods
with the time; they return what to answer. One task owns the object, so the registry and
the job log have one writer.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import msgspec

from handshake.documents import NodeEntry, NodeNextJob, NodeReading, NodesDocument
from handshake.errors import AuthError, ValidationError
from handshake.util.quietlog import RateLimitedLog
from handshake.util.timeutil import iso
from pi.nodes import jobs as schedule
from pi.nodes import wire
from pi.nodes.config import JobConfig, NodesConfig, decode_job, is_id, job_problems
from pi.nodes.joblog import JobLog
from pi.nodes.registry import Node, Registry

log = logging.getLogger(__name__)
# Anyone on the LAN can say hello as any node: a line a minute per node, not one a hello.
_spoof_log = RateLimitedLog(log, interval_s=60.0)


def action_words(capability: str, params: dict[str, Any]) -> str:
    """What a job does, as nodes.json and the dashboard say it: "motor down 5 s"."""
    if capability == "motor":
        return f"motor {params.get('direction', '?')} {params.get('duration_s', '?')} s"
    if capability == "relay":
        return f"relay {'on' if params.get('on') else 'off'}"
    return f"read {capability}"


class NotFound(ValidationError):
    """The CLI named a node or job that does not exist (404)."""


@dataclass
class Pending:
    hello: wire.Hello
    remote: str
    first_seen: float
    last_seen: float


@dataclass
class Live:
    """What the daemon knows of a node between restarts only (never written to the card)."""

    last_seen: float | None = None
    online: bool = False
    readings: dict[str, tuple[Any, str | None, float]] = field(default_factory=dict)


class NodeService:
    def __init__(self, config: NodesConfig, registry: Registry, joblog: JobLog, tz: tzinfo) -> None:
        self.config = config
        self.registry = registry
        self.joblog = joblog
        self.tz = tz
        self.pending: dict[str, Pending] = {}
        self.live: dict[str, Live] = {}
        self.changed = True  # nodes.json is out of date
        # Only numeric readings moved: nodes.json waits for its period (SD card writes).
        self.readings_changed = False
        self.jobs: tuple[JobConfig, ...] = ()
        self.invalid: dict[str, str] = {}
        self.known_ids: set[str] = set()  # executions in the log (saves a query a tick)
        self.since_cache: dict[str, float] = {}
        self.reload_jobs()

    # -- jobs ---------------------------------------------------------------------------------

    def reload_jobs(self) -> None:
        """Config jobs and CLI jobs; one its node cannot do is left out, with its reason."""
        everything = (*self.config.jobs, *self.registry.jobs())
        self.invalid = {}
        valid = []
        for job in everything:
            problem = self._job_problem(job)
            if problem is None:
                valid.append(job)
            else:
                if self.invalid.get(job.id) != problem:
                    log.error("job %s is not scheduled: %s", job.id, problem)
                self.invalid[job.id] = problem
        self.jobs = tuple(valid)
        self.changed = True

    def _job_problem(self, job: JobConfig) -> str | None:
        node = self.registry.by_name(job.node)
        if node is None:
            return f"no approved node named {job.node!r}"
        try:
            wire.check_action(job.node, node.capabilities, node.limits, job.capability,
                              dict(job.params))
        except ValidationError as exc:
            return str(exc)
        return None

    def since(self, job_id: str) -> float:
        """When the job was added (CLI) or first seen (config): earlier occurrences are not owed."""
        if job_id not in self.since_cache:
            added = self.registry.since(job_id)
            self.since_cache[job_id] = added if added is not None else self.joblog.since(job_id)
        return self.since_cache[job_id]

    def _known(self, execution_id: str) -> bool:
        if execution_id in self.known_ids:
            return True
        if self.joblog.known(execution_id):
            self.known_ids.add(execution_id)
            return True
        return False

    def _schedule(self, jobs: tuple[JobConfig, ...], now: float) -> None:
        for execution in schedule.scheduled(jobs, self.since, self._known, now, self.tz,
                                            self.config.grace_s):
            if self.joblog.add(execution):
                level = logging.INFO if execution.status == "pending" else logging.WARNING
                log.log(level, "job %s on %s: %s", execution.id, execution.node, execution.status)
                self.changed = True
            self.known_ids.add(execution.id)

    def tick(self, now: float) -> None:
        """Create what is due, expire what can no longer happen, notice offline nodes."""
        self._schedule(self.jobs, now)
        for execution in schedule.expired(list(self.joblog.open.values()), now,
                                          self.config.grace_s):
            self.joblog.update(execution)
            log.warning("job %s on %s: %s (%s)", execution.id, execution.node,
                        execution.status, execution.result["error"])
            self.changed = True
        for hwid, pending in list(self.pending.items()):
            if now - pending.last_seen > max(self.config.offline_after_s, 600):
                del self.pending[hwid]
                self.changed = True
        for hwid, live in self.live.items():
            if live.online and self.state_of(hwid, now) == "offline":
                live.online = False
                self.changed = True
                log.warning("node %s offline: no poll for %g s", self._name(hwid),
                            self.config.offline_after_s)

    # -- the node endpoints ---------------------------------------------------------------------

    def hello(self, hello: wire.Hello, remote: str, now: float) -> dict[str, Any]:
        node = self.registry.get(hello.hwid)
        # Pending nodes say hello no faster than the rate limit lets them.
        answer: dict[str, Any] = {"now": now, "poll_s": max(self.config.poll_s,
                                                             60 / self.config.hello_per_min)}
        if node is not None and secrets.compare_digest(node.proof, hello.proof):
            self._update_declared(node, hello)
            return {**answer, "state": "approved", "key": node.wrapped}
        if node is not None:
            _spoof_log.warning(hello.hwid, "hello from %s claiming approved node %s with "
                               "another pairing code: ignored", remote, hello.hwid)
            return {**answer, "state": "pending"}
        known = self.pending.get(hello.hwid)
        if known is None:
            if len(self.pending) >= self.config.max_pending:
                oldest = min(self.pending, key=lambda h: self.pending[h].last_seen)
                del self.pending[oldest]
            log.info("node %s (%s, %s) says hello from %s: pending until approved",
                     hello.hwid, hello.firmware, ", ".join(hello.capabilities), remote)
            self.pending[hello.hwid] = Pending(hello, remote, now, now)
            self.changed = True
        else:
            known.hello, known.remote, known.last_seen = hello, remote, now
        return {**answer, "state": "pending"}

    def _update_declared(self, node: Node, hello: wire.Hello) -> None:
        if (node.firmware, node.capabilities, node.limits) != \
                (hello.firmware, hello.capabilities, hello.limits):
            node.firmware, node.capabilities, node.limits = \
                hello.firmware, list(hello.capabilities), hello.limits
            self.registry.save(node)
            self.reload_jobs()

    def key_of(self, hwid: str) -> bytes:
        node = self.registry.get(hwid)
        if node is None:
            raise AuthError("unknown or removed node (pair it again)")
        return bytes.fromhex(node.key)

    def _seen(self, hwid: str, now: float) -> Live:
        live = self.live.setdefault(hwid, Live())
        if not live.online:
            live.online = True
            self.changed = True
            log.info("node %s online", self._name(hwid))
        live.last_seen = now
        return live

    def _approved(self, hwid: str) -> Node:
        node = self.registry.get(hwid)
        if node is None:  # removed while its request was on its way
            raise AuthError("unknown or removed node (pair it again)")
        return node

    def poll(self, hwid: str, now: float) -> dict[str, Any]:
        node = self._approved(hwid)
        self._seen(hwid, now)
        # A job due now goes out in this very poll, not after the next tick.
        self._schedule(tuple(j for j in self.jobs if j.node == node.name), now)
        out = []
        mine = [e for e in self.joblog.open.values() if e.node == node.name]
        for execution in schedule.deliverable(mine, now, self.config.grace_s):
            sent = self.joblog.sent(execution, now)
            if execution.status != "sent":
                log.info("job %s sent to %s", sent.id, node.name)
                self.changed = True
            out.append({"id": sent.id, "capability": sent.capability, "params": sent.params})
        return {"now": now, "poll_s": self.config.poll_s, "jobs": out}

    def report(self, hwid: str, report: wire.Report, now: float) -> dict[str, Any]:
        node = self._approved(hwid)
        live = self._seen(hwid, now)
        ack = []
        for result in report.results:
            ack.append(result.id)
            final = self.joblog.finish(result.id, result.status, result.result, now,
                                       node=node.name)
            if final is None:
                continue  # already final (a re-report) or not ours: acknowledged, no change
            self.changed = True
            (log.info if final.status == "done" else log.warning)(
                "job %s on %s: %s %s", final.id, node.name, final.status, final.result)
            follow = schedule.follow_up(self.jobs, final, self.tz)
            if follow is not None and self.joblog.add(follow):
                log.info("follow-up %s due %s", follow.id, iso(follow.due))
        for name, reading in report.readings.items():
            before = live.readings.get(name)
            if before is None or (isinstance(reading.value, bool) and before[0] != reading.value):
                self.changed = True  # a first reading, a door opening: at once
            elif before[0] != reading.value:
                self.readings_changed = True  # a number that moves: with the next publish
            live.readings[name] = (reading.value, reading.unit, now)
            if isinstance(reading.value, bool) or before is None \
                    or isinstance(before[0], bool):
                continue
            for execution in schedule.fired(self.jobs, node.name, name, before[0],
                                            float(reading.value), now):
                if self.joblog.add(execution):
                    log.info("reading %s.%s = %s fired job %s", node.name, name,
                             reading.value, execution.id)
        return {"now": now, "ack": ack}

    # -- the CLI (admin endpoints) -----------------------------------------------------------------

    def approve(self, hwid: str, code: str, name: str, role: str | None, now: float) -> Node:
        pending = self.pending.get(hwid)
        if pending is None:
            if self.registry.get(hwid) is not None:
                raise ValidationError(f"{hwid} is already approved (remove it first to pair "
                                      "it again)", "hwid")
            raise NotFound(f"no pending node {hwid!r}: power it on and let it say hello "
                           "(edgepair node list shows pending nodes)", "hwid")
        if not secrets.compare_digest(wire.proof(code, hwid), pending.hello.proof):
            raise ValidationError("wrong pairing code: it is the one `edgepair node flash` "
                                  "printed for this board", "code")
        self._check_name(name, hwid)
        key = secrets.token_bytes(wire.KEY_BYTES)
        hello = pending.hello
        node = Node(hwid=hwid, name=name, role=role, key=key.hex(), wrapped=wire.wrap(key, code, hwid),
                    proof=hello.proof, firmware=hello.firmware,
                    capabilities=list(hello.capabilities), limits=hello.limits, approved_at=now)
        self.registry.save(node)
        del self.pending[hwid]
        self.reload_jobs()
        log.info("node %s approved as %s (role %s)", hwid, name, role)
        return node

    def _check_name(self, name: str, hwid: str) -> None:
        if not is_id(name):
            raise ValidationError("expected a short name of lower-case letters, digits, '-', "
                                  "'_' or '.'", "name")
        other = self.registry.by_name(name)
        if other is not None and other.hwid != hwid:
            raise ValidationError(f"name {name!r} is taken by {other.hwid}", "name")

    def _node(self, ref: str) -> Node:
        node = self.registry.find(ref)
        if node is None:
            raise NotFound(f"no approved node {ref!r}", "node")
        return node

    def remove(self, ref: str) -> Node:
        if ref in self.pending:
            del self.pending[ref]
            self.changed = True
            raise NotFound(f"{ref} was pending, not approved: forgotten", "node")
        node = self._node(ref)
        self.registry.remove(node.hwid)
        self.live.pop(node.hwid, None)
        self.reload_jobs()
        log.info("node %s (%s) removed: its requests now get 401", node.name, node.hwid)
        return node

    def rename(self, ref: str, name: str) -> Node:
        node = self._node(ref)
        self._check_name(name, node.hwid)
        old = node.name
        node.name = name
        self.registry.save(node)
        self.reload_jobs()
        log.info("node %s renamed %s → %s", node.hwid, old, name)
        return node

    def add_job(self, data: dict[str, Any], now: float) -> JobConfig:
        job = decode_job(data)
        problems = [p for _, p in job_problems((*self.config.jobs, *self.registry.jobs(), job))]
        if problems:
            raise ValidationError(problems[0], "job")
        problem = self._job_problem(job)
        if problem is not None:
            raise ValidationError(problem, "job")
        self.registry.add_job(job, now)
        self.reload_jobs()
        log.info("job %s added for %s", job.id, job.node)
        return job

    def remove_job(self, job_id: str) -> None:
        if any(j.id == job_id for j in self.config.jobs):
            raise ValidationError(f"job {job_id!r} is in the config file: remove it there", "id")
        if not self.registry.remove_job(job_id):
            raise NotFound(f"no job {job_id!r}", "id")
        self.since_cache.pop(job_id, None)
        self.reload_jobs()

    def job_list(self) -> list[dict[str, Any]]:
        cli = {j.id for j in self.registry.jobs()}
        out = []
        for job in (*self.config.jobs, *self.registry.jobs()):
            last = self.joblog.recent(1, job.id)
            out.append({**msgspec.to_builtins(job), "from": "cli" if job.id in cli else "config",
                        "invalid": self.invalid.get(job.id),
                        "last": None if not last else {"id": last[0].id, "status": last[0].status,
                                                       "due": iso(last[0].due),
                                                       "result": last[0].result}})
        return out

    # -- nodes.json ---------------------------------------------------------------------------------

    def state_of(self, hwid: str, now: float) -> str:
        live = self.live.get(hwid)
        if live is None or live.last_seen is None:
            return "offline"
        return "online" if now - live.last_seen <= self.config.offline_after_s else "offline"

    def _name(self, hwid: str) -> str:
        node = self.registry.get(hwid)
        return node.name if node else hwid

    def entries(self, now: float) -> Iterator[NodeEntry]:
        for node in self.registry.nodes():
            live = self.live.get(node.hwid, Live())
            nxt = schedule.next_job([j for j in self.jobs if j.node == node.name], node.name,
                                    self.joblog.open.values(), now, self.tz)
            yield NodeEntry(
                hwid=node.hwid, name=node.name, role=node.role, state=self.state_of(node.hwid, now),  # type: ignore[arg-type]
                last_seen=iso(live.last_seen), firmware=node.firmware,
                capabilities=list(node.capabilities),
                readings={k: NodeReading(value=v, unit=u, at=iso(at) or "")
                          for k, (v, u, at) in sorted(live.readings.items())},
                next_job=None if nxt is None else NodeNextJob(
                    id=nxt[0], due=iso(nxt[1]) or "", action=self._action(nxt[0], nxt[2])))
        for hwid, pending in sorted(self.pending.items()):
            yield NodeEntry(hwid=hwid, state="pending", last_seen=iso(pending.last_seen),
                            firmware=pending.hello.firmware,
                            capabilities=list(pending.hello.capabilities))

    def _action(self, execution_id: str, capability: str) -> str:
        job_id = execution_id.split("@", 1)[0]
        job = next((j for j in self.jobs if j.id == job_id), None)
        return action_words(capability, dict(job.params) if job else {})

    def document(self, now: float | None = None) -> NodesDocument:
        now = time.time() if now is None else now
        self.changed = self.readings_changed = False
        return NodesDocument(generated_at=iso(now) or "", interval_s=self.config.publish_interval_s,
                             nodes=list(self.entries(now)))
