"""Job scheduling as pure functions of the jobs, their log and the clock (injected).

An execution's id is the job's id and its due time (``blinds-down@20261207T200000Z``): the
same occurrence always gets the same id, so a restart cannot create it twice, and a node
that receives it again (a lost answer, a restarted Pi) only reports it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from pi.nodes.config import JobConfig, links

OPEN = ("pending", "sent")
FINAL = ("done", "failed", "missed")
# A sent execution without a result for grace_s plus this is failed: the longest a
# node's action runs (the firmware's motor maximum) and a margin for its report.
RESULT_MARGIN_S = 150.0


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a job: due, then sent to its node, then done/failed — or missed."""

    id: str
    job: str
    node: str
    capability: str
    params: dict[str, Any]
    due: float
    status: str = "pending"
    sent_at: float | None = None
    done_at: float | None = None
    result: Any = None
    leader: str | None = None  # the execution this one follows up
    meta: dict[str, Any] = field(default_factory=dict)


def stamp(ts: float) -> str:
    """A compact UTC time for ids: 20261207T200000Z (sub-second due times keep ms)."""
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y%m%dT%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def execution_id(job: str, due: float) -> str:
    return f"{job}@{stamp(due)}"


def _clock(at: str) -> time:
    parts = [int(p) for p in at.split(":")]
    return time(parts[0], parts[1], parts[2] if len(parts) > 2 else 0)


def latest_at(at: str, tz: tzinfo, now: float) -> float:
    """The latest local ``at`` (HH:MM[:SS]) at or before ``now``."""
    local = datetime.fromtimestamp(now, tz)
    day = local.date()
    for back in range(3):  # DST gaps: the previous day always has it
        moment = datetime.combine(day - timedelta(days=back), _clock(at), tz).timestamp()
        if moment <= now:
            return moment
    raise AssertionError("unreachable")


def next_at(at: str, tz: tzinfo, after: float) -> float:
    """The first local ``at`` strictly after ``after``."""
    local = datetime.fromtimestamp(after, tz)
    for ahead in range(3):
        moment = datetime.combine(local.date() + timedelta(days=ahead), _clock(at), tz).timestamp()
        if moment > after:
            return moment
    raise AssertionError("unreachable")


def _new(job: JobConfig, due: float, *, status: str = "pending",
         leader: str | None = None) -> Execution:
    return Execution(id=execution_id(job.id, due), job=job.id, node=job.node,
                     capability=job.capability, params=dict(job.params), due=due,
                     status=status, leader=leader)


def scheduled(jobs: Iterable[JobConfig], since: Callable[[str], float],
              known: Callable[[str], bool], now: float, tz: tzinfo,
              grace_s: float) -> list[Execution]:
    """The daily jobs' latest occurrences not yet in the log: pending, or missed when
    already more than ``grace_s`` old. Occurrences before a job existed are not owed."""
    jobs = tuple(jobs)
    follow = links(jobs)
    out = []
    for job in jobs:
        if job.at is None or job.id in follow or job.reading is not None:
            continue
        due = latest_at(job.at, tz, now)
        if known(execution_id(job.id, due)) or due < since(job.id):
            continue
        out.append(_new(job, due, status="pending" if now - due <= grace_s else "missed"))
    return out


def follow_up(jobs: Iterable[JobConfig], leader: Execution, tz: tzinfo) -> Execution | None:
    """The follow-up a done execution starts, due ``delay_s`` after it or at the next ``at``."""
    jobs = tuple(jobs)
    follow = links(jobs)
    if leader.status != "done" or leader.done_at is None:
        return None
    for job in jobs:
        if follow.get(job.id) != leader.job:
            continue
        if job.at is not None:
            due = next_at(job.at, tz, leader.done_at)
        else:
            due = leader.done_at + (job.delay_s or 0.0)
        return _new(job, due, leader=leader.id)
    return None


def crossed(job: JobConfig, before: float | None, value: float) -> bool:
    """A threshold fires on the crossing, not on every reading beyond it; nothing is known
    to have crossed before a first reading."""
    if before is None:
        return False
    if job.above is not None:
        return before <= job.above < value
    if job.below is not None:
        return before >= job.below > value
    return False


def fired(jobs: Iterable[JobConfig], node: str, name: str, before: float | None,
          value: float, now: float) -> list[Execution]:
    """Threshold jobs on reading ``node.name`` that this new value fires, due now."""
    return [_new(job, now) for job in jobs
            if job.reading == name and (job.source or job.node) == node
            and crossed(job, before, value)]


def deliverable(executions: Iterable[Execution], now: float, grace_s: float) -> list[Execution]:
    """What a node's poll takes: due, open, and (if never sent) not yet past grace."""
    return [e for e in executions if e.status in OPEN and e.due <= now
            and (e.status == "sent" or now - e.due <= grace_s)]


def expired(executions: Iterable[Execution], now: float, grace_s: float) -> list[Execution]:
    """Open executions that can no longer happen: missed (never delivered within grace) or
    failed (delivered, but no result long after)."""
    out = []
    for e in executions:
        if e.status == "pending" and now - e.due > grace_s:
            out.append(replace(e, status="missed", done_at=now,
                               result={"error": f"not delivered within grace_s ({grace_s:g} s)"}))
        elif e.status == "sent" and e.sent_at is not None \
                and now - e.sent_at > grace_s + RESULT_MARGIN_S:
            out.append(replace(e, status="failed", done_at=now,
                               result={"error": "no result from the node"}))
    return out


def next_job(jobs: Iterable[JobConfig], node: str, open_executions: Iterable[Execution],
             now: float, tz: tzinfo) -> tuple[str, float, str] | None:
    """The node's next execution: (id, due, action) from the open ones and the daily jobs."""
    jobs = tuple(jobs)
    follow = links(jobs)
    found = [(e.due, e.id, e.capability) for e in open_executions if e.node == node]
    for job in jobs:
        if job.node == node and job.at is not None and job.id not in follow \
                and job.reading is None:
            due = next_at(job.at, tz, now)
            found.append((due, execution_id(job.id, due), job.capability))
    if not found:
        return None
    due, id_, action = min(found)
    return id_, due, action
