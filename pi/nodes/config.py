"""``[nodes]`` and ``[[nodes.jobs]]`` in pi.toml: where the node daemon listens, how often
nodes poll, and the jobs it schedules.

Light on purpose (check-config imports it): Structs only.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from handshake.errors import ValidationError
from handshake.util.schema import Check, Decoder, Derived, HostPort, Listen, Section

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")
CAPABILITIES = ("relay", "motor", "input", "temperature", "analog")
Param = bool | int | float | str


def is_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def is_time(value: str) -> bool:
    return bool(_TIME_RE.match(value))


_JOB_ID = Check(is_id, "a short id of lower-case letters, digits, '-', '_' or '.' (≤ 48)")


class JobConfig(Section, frozen=True, kw_only=True):
    """One job: a trigger, an action on one node's capability, and maybe a follow-up."""

    id: Annotated[str, _JOB_ID, Meta(description="names the job (and its executions)")]
    node: Annotated[str, Meta(description="the node's name (edgepair node approve --name)")]
    capability: Annotated[str, Check(lambda v: v in CAPABILITIES, "one of " + ", ".join(CAPABILITIES)),
                          Meta(description="what it drives")]
    params: Annotated[dict[str, Param], Meta(
        description="motor: direction up|down, duration_s; relay: on")] = msgspec.field(default_factory=dict)
    at: Annotated[str | None, Check(is_time, "a local time HH:MM or HH:MM:SS (24 h)"), Meta(
        description="daily at this local time; for a follow-up: the next such time after "
                    "its leader is done")] = None
    delay_s: Annotated[float | None, Meta(ge=0, le=7 * 86400, description="a follow-up: this "
                                          "long after its leader is done")] = None
    after: Annotated[str | None, _JOB_ID, Meta(
        description="makes this the follow-up of that job (same as its then)")] = None
    then: Annotated[str | None, _JOB_ID, Meta(description="the follow-up job's id")] = None
    reading: Annotated[str | None, Meta(description="fires when this reading crosses above/below")] = None
    source: Annotated[str | None, Meta(description="the node whose reading it is (default: node)")] = None
    above: Annotated[float | None, Meta(description="threshold: rises above")] = None
    below: Annotated[float | None, Meta(description="threshold: falls below")] = None

    def problems(self) -> Iterator[tuple[str, str]]:
        follow = self.after is not None
        timed = self.at is not None or self.delay_s is not None
        if self.reading is not None:
            if (self.above is None) == (self.below is None):
                yield ("reading", "expected exactly one of above or below with reading")
            if timed or follow:
                yield ("reading", "a reading trigger takes no at, delay_s or after")
        elif self.above is not None or self.below is not None:
            yield ("above", "above/below need reading")
        elif not timed and not follow:
            yield ("at", "expected a trigger: at, reading, or after (a follow-up)")
        if self.delay_s is not None and self.at is not None:
            yield ("delay_s", "expected at or delay_s, not both")
        if self.then is not None and self.then == self.id:
            yield ("then", "a job cannot follow itself")


def decode_job(data: dict[str, Any]) -> JobConfig:
    """A job from the CLI, by the config's own schema; ValidationError lists its problems."""
    decoder = Decoder(Path("job"))
    try:
        return decoder.struct(JobConfig, data, "")
    except Exception:  # the decoder's marker (private): its problems say what failed
        raise ValidationError("; ".join(p.removeprefix("job: ") for p in decoder.problems)
                              or "not a job") from None


def _offline_after(section: "NodesConfig") -> float:
    return max(10.0, 3 * section.poll_s)


def links(jobs: tuple[JobConfig, ...]) -> dict[str, str]:
    """follow-up id → its leader's id, from both ``then`` and ``after``."""
    out: dict[str, str] = {}
    for job in jobs:
        if job.then is not None:
            out.setdefault(job.then, job.id)
        if job.after is not None:
            out.setdefault(job.id, job.after)
    return out


def job_problems(jobs: tuple[JobConfig, ...]) -> Iterator[tuple[str, str]]:
    """Rules across jobs: unique ids, follow-ups that exist, no loops, one leader each."""
    ids = [j.id for j in jobs]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        yield ("jobs", f"job id {dup!r} is used more than once")
    by_id = {j.id: j for j in jobs}
    leaders: dict[str, set[str]] = {}
    for job in jobs:
        if job.then is not None:
            if job.then not in by_id:
                yield ("jobs", f"{job.id}: then names no job {job.then!r}")
            leaders.setdefault(job.then, set()).add(job.id)
        if job.after is not None:
            if job.after not in by_id:
                yield ("jobs", f"{job.id}: after names no job {job.after!r}")
            leaders.setdefault(job.id, set()).add(job.after)
    for follow, names in sorted(leaders.items()):
        if len(names) > 1:
            yield ("jobs", f"{follow}: follows more than one job ({', '.join(sorted(names))})")
        found = by_id.get(follow)
        if found is not None and found.reading is not None:
            yield ("jobs", f"{follow}: a follow-up cannot have a reading trigger")
    chain = links(jobs)
    for start in chain:
        seen, at = {start}, chain[start]
        while at in chain:
            if at in seen:
                yield ("jobs", f"{start}: its follow-ups loop back to it")
                break
            seen.add(at)
            at = chain[at]
    for job in jobs:
        if job.delay_s is not None and job.id not in chain:
            yield ("jobs", f"{job.id}: delay_s needs a leader (after, or another job's then)")


class NodesConfig(Section, frozen=True, kw_only=True):
    listen: Annotated[Listen, Meta(description="the node daemon's HTTP server (nodes and the CLI)")] = \
        HostPort("0.0.0.0", 8772)
    url: Annotated[str | None, Meta(description="the Pi as nodes reach it (flash writes it); "
                                                "default http://<pi.address>:<listen port>")] = None
    poll_s: Annotated[float, Meta(ge=0.2, le=600, description="how often a node polls for jobs")] = 5.0
    offline_after_s: Annotated[float, Meta(ge=1, le=86400,
                                           description="no poll for this long: offline")] = 15.0
    grace_s: Annotated[float, Meta(ge=1, le=86400, description="a job not delivered this long "
                                                               "after it was due is missed")] = 300.0
    lost_after_s: Annotated[float, Meta(ge=1, le=3600, description="flashed into nodes: no answer "
                                        "from the Pi this long → actuators safe")] = 15.0
    hello_per_min: Annotated[int, Meta(ge=1, le=600, description="hellos a minute per client "
                                                                 "address (open endpoint)")] = 12
    publish_interval_s: Annotated[float, Meta(ge=0.2, le=3600,
                                              description="nodes.json refresh period")] = 30.0
    max_pending: Annotated[int, Meta(ge=1, le=1000, description="unapproved nodes remembered")] = 32
    jobs: Annotated[tuple[JobConfig, ...], Meta(description="the scheduled jobs")] = ()

    DERIVED: ClassVar[dict[str, Derived]] = {"offline_after_s": Derived(
        _offline_after, "max(10, 3 × poll_s)")}

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.offline_after_s <= self.poll_s:
            yield ("offline_after_s", f"expected more than poll_s ({self.poll_s}), "
                   f"got {self.offline_after_s}")
        if self.lost_after_s <= self.poll_s:
            yield ("lost_after_s", f"expected more than poll_s ({self.poll_s}), "
                   f"got {self.lost_after_s}")
        yield from job_problems(self.jobs)
