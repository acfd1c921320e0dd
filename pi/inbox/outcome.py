"""What a send's result means for its file: the inbox's one decision on the host's answers.

Every send path (a large file's PUT, a batch's POST and each file in it) hands what it got,
the host's status and confirmed hash or what was raised, to ``classify``; the sender only
carries out the ``Outcome``. The same status means the same on every path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from handshake.errors import PeerUnavailable, RequestError, TemporaryError

# A single PUT's answer came with a success status (the client does not say which).
OK = 200
# Statuses of a whole batch that mean "no batches here": an older host (no POST), or a body
# limit smaller than a batch. Small files then go one by one.
NO_BATCH_STATUSES = frozenset({404, 405, 413})
# Not the file's fault and not a passing one: the host's disk is full, or it refuses our key.
HOST_PROBLEM_STATUSES = frozenset({401, 507})
# The host stored bytes that do not match their hash: the file changed on the way.
CONTENT_MISMATCH = 422


class FileChanged(TemporaryError):
    """The file changed while it was being sent: it settles again and goes later."""


class StillOpen(FileChanged):
    """Someone still has the file open for writing (a read lease was refused)."""


class Refused(Exception):
    """The Pi itself will not send this file (a hard link): it stays, listed with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Kind(enum.Enum):
    """What happens to the file (and to the flush)."""

    DELIVERED = "delivered"  # the host has it with our hash: the Pi's copy may go
    CHANGED = "changed"  # changed on the way: it settles again, then goes
    STILL_OPEN = "still_open"  # a writer still has it open: ask again after settling
    VANISHED = "vanished"  # no longer on the Pi: forget it
    UNREADABLE = "unreadable"  # this Pi cannot read it: try again now and then
    BUG = "bug"  # an unexpected error: logged, the file tried again now and then
    TEMPORARY = "temporary"  # the host, or the way to it, failed: back off, try again
    HOST_PROBLEM = "host_problem"  # disk full or our key refused: an admin acts first
    REJECTED = "rejected"  # the host (or the Pi) refuses this one file: it stays, listed
    NO_BATCHES = "no_batches"  # the host takes no batches: small files go one by one


@dataclass(frozen=True, slots=True)
class Result:
    """What one send came back with: the host's answer for a file, or what was raised."""

    rel: str = ""
    sha256: str | None = None  # ours (None: not known yet)
    status: object = None  # the host's HTTP status for the file (a batch: its entry's)
    answer: object = None  # the host's JSON for the file
    error: BaseException | None = None  # raised instead of an answer
    batch: bool = False  # the result is the whole batch request's, not one file's


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision: its kind, a reason for the log and inbox.json, where the host put it."""

    kind: Kind
    reason: str = ""
    status: int | None = None
    code: str = ""
    stored_as: str = ""
    duplicate: bool = False

    @property
    def deletes(self) -> bool:
        """Only a file the host confirmed with our hash may leave the Pi."""
        return self.kind is Kind.DELIVERED


def classify(result: Result) -> Outcome:
    """The outcome of one send's result (total: any input gives an outcome)."""
    if result.error is not None:
        return _raised(result, result.error)
    answer = result.answer if isinstance(result.answer, dict) else {}
    if result.status in (200, 201):
        if result.sha256 is not None and answer.get("sha256") == result.sha256:
            return Outcome(Kind.DELIVERED, stored_as=str(answer.get("stored_as", result.rel)),
                           duplicate=bool(answer.get("duplicate")))
        return _status(result, 502, "bad_answer", f"{result.rel}: the host confirmed another "
                       f"hash ({result.answer!r:.200}); the file stays on the Pi")
    error = answer.get("error")
    error = error if isinstance(error, dict) else {}
    status = result.status if type(result.status) is int else 502
    return _status(result, status, str(error.get("code", "error")),
                   str(error.get("message", result.answer)))


def _raised(result: Result, exc: BaseException) -> Outcome:
    if isinstance(exc, RequestError):
        return _status(result, exc.status, exc.code, str(exc), reason=str(exc))
    if isinstance(exc, (PeerUnavailable, TimeoutError)):  # before OSError: TimeoutError is one
        return Outcome(Kind.TEMPORARY, str(exc) or (
            "the host did not answer in time" if result.batch
            else "no progress for too long (the host stalled)"))
    if isinstance(exc, Refused):
        return Outcome(Kind.REJECTED, str(exc), code=exc.code)
    if isinstance(exc, StillOpen):
        return Outcome(Kind.STILL_OPEN, str(exc))
    if isinstance(exc, FileChanged):
        return Outcome(Kind.CHANGED, str(exc))
    if isinstance(exc, FileNotFoundError):
        return Outcome(Kind.VANISHED, str(exc))
    if isinstance(exc, OSError):
        return Outcome(Kind.UNREADABLE, f"cannot read {result.rel}: {exc.strerror or exc}")
    return Outcome(Kind.BUG, f"unexpected error: {exc}")


def _status(result: Result, status: int, code: str, message: str,
            reason: str | None = None) -> Outcome:
    """An error status, of a file or of a whole batch."""
    reason = reason if reason is not None else f"HTTP {status} {code}: {message}"
    if result.batch and status in NO_BATCH_STATUSES:
        kind = Kind.NO_BATCHES
    elif status == CONTENT_MISMATCH and not result.batch:
        kind = Kind.CHANGED
        reason = f"{result.rel}: changed while being sent ({reason})"
    elif status in HOST_PROBLEM_STATUSES:
        kind = Kind.HOST_PROBLEM
    elif status >= 500 or status == 429:
        kind = Kind.TEMPORARY
    else:
        kind = Kind.REJECTED
    return Outcome(kind, reason, status, code)
