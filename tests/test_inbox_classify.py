"""``outcome.classify``: one decision for every send path (a PUT, a batch, a file in it)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake import inboxwire
from handshake.errors import PeerUnavailable, RequestError
from pi.inbox import batch, sender, upload
from pi.inbox.outcome import (
    OK,
    FileChanged,
    Kind,
    Outcome,
    Result,
    StillOpen,
    classify,
)
from pi.inbox.status import Report
from pi.inbox.tracker import Identity, Tracker

OURS = "a" * 64
hashes = st.one_of(st.none(), st.just(OURS), st.text(max_size=70))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                   max_size=3),
    max_leaves=8)
answers = st.one_of(json_values, st.fixed_dictionaries(
    {}, optional={"sha256": hashes, "stored_as": json_values, "duplicate": json_values,
                  "status": json_values, "error": json_values}))
statuses = st.one_of(st.integers(-1, 1000), st.sampled_from([200, 201, 401, 403, 422, 507]),
                     json_values)
http_errors = st.integers(100, 999).map(lambda s: RequestError(s, "code", "message"))
errors = st.one_of(
    st.none(), http_errors,
    st.sampled_from([PeerUnavailable("down"), PeerUnavailable(""), TimeoutError(),
                     FileChanged("x: changed"), StillOpen("x: open"),
                     FileNotFoundError(errno.ENOENT, "gone"), PermissionError(errno.EACCES, "no"),
                     OSError("odd"), ValueError("bug"), KeyError("k"), RuntimeError()]))
results = st.builds(Result, rel=st.text(max_size=20), sha256=hashes, status=statuses,
                    answer=answers, error=errors, batch=st.booleans())


def _paths(status: int) -> list[Result]:
    """The same status on each path: a PUT's error, a batch's entry for a file."""
    entry = {"status": status, "error": {"code": "code", "message": "message"}}
    return [Result("f", OURS, error=RequestError(status, "code", "message")),
            Result("f", OURS, status, entry)]


@given(results)
def test_classification_is_total(result: Result) -> None:
    verdict = classify(result)
    assert isinstance(verdict, Outcome)
    assert isinstance(verdict.kind, Kind)
    assert isinstance(verdict.reason, str)


@given(results)
def test_only_a_success_with_our_hash_deletes(result: Result) -> None:
    verdict = classify(result)
    confirmed = (result.error is None and result.status in (200, 201)
                 and result.sha256 is not None and isinstance(result.answer, dict)
                 and result.answer.get("sha256") == result.sha256)
    assert verdict.deletes is confirmed
    assert verdict.deletes is (verdict.kind is Kind.DELIVERED)


@given(st.integers(500, 599).filter(lambda s: s != 507) | st.just(429))
def test_every_5xx_is_temporary_on_every_path(status: int) -> None:
    batch_error = Result(error=RequestError(status, "c", "m"), batch=True)
    for result in [*_paths(status), batch_error]:
        assert classify(result).kind is Kind.TEMPORARY


@given(st.sampled_from([PeerUnavailable("refused"), PeerUnavailable(""), TimeoutError()]),
       st.booleans())
def test_every_transport_error_is_temporary(exc: Exception, whole_batch: bool) -> None:
    verdict = classify(Result("f", OURS, error=exc, batch=whole_batch))
    assert verdict.kind is Kind.TEMPORARY
    assert verdict.reason


@given(st.sampled_from([401, 403]), st.booleans(), hashes, answers)
def test_401_and_403_never_delete(status: int, whole_batch: bool, sha256: str | None,
                                  answer: Any) -> None:
    for result in (Result("f", sha256, status, answer, batch=whole_batch),
                   Result("f", sha256, error=RequestError(status, "c", "m"), batch=whole_batch)):
        assert not classify(result).deletes


@given(st.integers(300, 999))
def test_a_status_means_the_same_for_a_put_and_a_file_in_a_batch(status: int) -> None:
    kinds = {classify(r).kind for r in _paths(status)}
    assert len(kinds) == 1, (status, kinds)


@given(st.integers(300, 999).filter(lambda s: s not in (404, 405, 413, 422)))
def test_a_whole_batch_refused_is_each_file_refused(status: int) -> None:
    whole = classify(Result(error=RequestError(status, "c", "m"), batch=True))
    assert whole.kind is classify(_paths(status)[0]).kind


def test_the_cases_the_sender_acts_on() -> None:
    good = {"sha256": OURS, "stored_as": "a (2).txt", "duplicate": True}
    assert classify(Result("a.txt", OURS, OK, good)) == Outcome(
        Kind.DELIVERED, stored_as="a (2).txt", duplicate=True)
    assert classify(Result("a.txt", OURS, 201, {"sha256": OURS})).stored_as == "a.txt"
    other = classify(Result("a.txt", OURS, OK, {"sha256": "b" * 64}))
    assert (other.kind, other.status, other.code) == (Kind.TEMPORARY, 502, "bad_answer")
    assert classify(Result("a.txt", None, OK, {"sha256": None})).kind is Kind.TEMPORARY
    for status in (404, 405, 413):
        assert classify(Result(error=RequestError(status, "c", "m"), batch=True)).kind \
            is Kind.NO_BATCHES
        assert classify(_paths(status)[0]).kind is Kind.REJECTED
    assert classify(_paths(401)[0]).kind is Kind.HOST_PROBLEM
    assert classify(_paths(400)[1]).kind is Kind.REJECTED
    refused = classify(Result("big", OURS, 413, {"status": 413, "error": {
        "code": "file_too_large", "message": "too big"}}))
    assert (refused.status, refused.code, refused.reason) == (
        413, "file_too_large", "HTTP 413 file_too_large: too big")
    assert classify(Result("f", OURS, "201", {"sha256": OURS})).kind is Kind.TEMPORARY
    assert classify(Result("f", error=StillOpen("f: open"))).kind is Kind.STILL_OPEN
    assert classify(Result("f", error=FileChanged("f: changed"))).kind is Kind.CHANGED
    assert classify(Result("f", error=FileNotFoundError())).kind is Kind.VANISHED
    unreadable = classify(Result("f", error=PermissionError(errno.EACCES, "Permission denied")))
    assert unreadable == Outcome(Kind.UNREADABLE, "cannot read f: Permission denied")
    assert classify(Result("f", error=ValueError("x"))).kind is Kind.BUG


# -- the two inconsistencies the classifier removed ---------------------------------------


def test_a_full_disk_is_a_host_problem_on_every_path() -> None:
    """Before: 507 for a large file's PUT backed off 1-60 s like a hiccup; for a small one
    in a batch it waited HOST_PROBLEM_RETRY_S (what that constant's comment says)."""
    for result in [*_paths(507), Result(error=RequestError(507, "c", "m"), batch=True)]:
        assert classify(result).kind is Kind.HOST_PROBLEM


def test_a_content_mismatch_means_changed_on_every_path() -> None:
    """Before: 422 for a PUT meant "changed, settle and send again"; for a file in a batch
    it listed the file as refused by the host for an hour."""
    for result in _paths(422):
        assert classify(result).kind is Kind.CHANGED


def _sender(root: Path, rel: str, size: int) -> sender.Sender:
    tracker = Tracker(settle_s=0, small_bytes=inboxwire.SMALL_FILE_BYTES)
    identity = Identity.of((root / rel).stat())
    assert identity.size == size
    tracker.closed(rel, identity, now=0)
    s = sender.Sender(root, tracker, Report(), 1, 1, on_done=lambda: None,
                      on_deleted=lambda rel: None, clock=lambda: 1000.0, wall=lambda: 0.0)
    s.client = object()  # type: ignore[assignment]  # the sends below are faked
    return s


async def _flush(s: sender.Sender) -> None:
    s.start(1000.0)
    await asyncio.gather(*[task for task, _ in s.tasks.values()])


async def test_a_large_file_on_a_full_host_disk_waits_like_a_small_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (inboxwire.SMALL_FILE_BYTES + 1))

    async def full(*args: Any, **kwargs: Any) -> upload.Sent:
        raise RequestError(507, "insufficient_storage", "the host's inbox disk is full")

    monkeypatch.setattr(upload, "send", full)
    s = _sender(tmp_path, "big.bin", inboxwire.SMALL_FILE_BYTES + 1)
    await _flush(s)
    assert s.retry_at == 1000.0 + sender.HOST_PROBLEM_RETRY_S
    assert s.failures == 0, "not a backoff step"
    assert (tmp_path / "big.bin").exists()
    assert "disk is full" in (s.report.last_error or {})["message"]


async def test_a_content_mismatch_in_a_batch_resettles_instead_of_being_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_bytes(b"alpha")

    async def mismatch(client: Any, reads: list[batch.Read]) -> list[dict[str, Any]]:
        return [{"status": 422, "error": {"code": "content_mismatch", "message": "no"}}
                for _ in reads]

    monkeypatch.setattr(batch, "send", mismatch)
    s = _sender(tmp_path, "a.txt", 5)
    await _flush(s)
    assert s.report.rejected == {}
    assert s.tracker.take(1000.0) == "a.txt", "once settled (0 s here) it goes again, not in an hour"
    assert (tmp_path / "a.txt").exists()
