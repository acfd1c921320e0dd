"""Tell the Pi the host is going offline or has come online, and tell a shutdown from a restart."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from datetime import datetime
from typing import Any, Literal

from handshake import documents
from handshake.client import REQUEST_TIMEOUT_S, HandshakeClient
from handshake.documents import SnapshotSentDocument
from handshake.errors import FatalError, PeerUnavailable, RequestError
from handshake.messages import ComingOnline, GoingOffline, Reason
from handshake.util import strictjson
from handshake.util.timeutil import iso
from host import activity
from host.config import HostConfig
from host.snapshot import SYSTEMCTL_TIMEOUT_S, Runner, build_snapshot, read_boot_id

log = logging.getLogger(__name__)

Kind = Literal["going-offline", "coming-online"]
PATHS: dict[Kind, str] = {
    "going-offline": "/api/v1/host/going-offline",
    "coming-online": "/api/v1/host/coming-online",
}
# Jobs systemd queues when the machine is going down, by the reason the Pi is told.
# The retry loop stops itself at the deadline and reports its last error; the hard cut
# (a Pi that accepts but never answers) comes this much later so it doesn't race it.
HARD_CUT_GRACE_S = 0.5
_REBOOT_TARGETS = {"reboot.target", "kexec.target", "soft-reboot.target"}
_SHUTDOWN_TARGETS = {"poweroff.target", "halt.target"}


async def notify(config: HostConfig, kind: Kind, *, reason: Reason = "shutdown",
                 wake_at: datetime | None = None,
                 client: HandshakeClient | None = None) -> dict[str, Any]:
    """Send one signed message and return the Pi's answer, which must carry ``"ack": true``.

    Temporary failures are retried until ``config.pi.notify_deadline_s``; then
    PeerUnavailable. A refusal (4xx) or an answer without ack is a FatalError. Both name
    the URL, the deadline and the cause.
    """
    with activity.busy(f"notify {kind}"):
        if client is None:
            key = (await asyncio.to_thread(config.secrets)).handshake_key
            timeout_s = min(REQUEST_TIMEOUT_S, config.pi.notify_deadline_s)
            async with HandshakeClient(config.pi.url, key, timeout_s=timeout_s) as own:
                return await _send(config, kind, reason, wake_at, own)
        return await _send(config, kind, reason, wake_at, client)


def shutdown_reason(run: Runner = subprocess.run) -> Reason | None:
    """Why systemd is taking the system down ("reboot" or "shutdown"); None when it is not."""
    jobs = _systemctl(["list-jobs", "--no-legend", "--full"], run)
    units = {word for line in (jobs or "").splitlines() for word in line.split()}
    if units & _REBOOT_TARGETS:
        return "reboot"
    if units & _SHUTDOWN_TARGETS:
        return "shutdown"
    state = (_systemctl(["is-system-running"], run) or "").strip()
    if state == "stopping":
        return "shutdown"
    if jobs is None and not state:
        log.warning("cannot ask systemd whether the system is going down; assuming it is not")
    return None


async def _send(config: HostConfig, kind: Kind, reason: Reason, wake_at: datetime | None,
                client: HandshakeClient) -> dict[str, Any]:
    deadline = config.pi.notify_deadline_s
    body = await _message(config, kind, reason, wake_at)
    path = PATHS[kind]
    url = client.base_url + path

    def failed(cause: object) -> str:
        text = str(cause).removeprefix(f"{url}: ")
        return f"no acknowledgement from the Pi at {url} within {deadline:g} s: {text}"

    try:
        async with asyncio.timeout(deadline + HARD_CUT_GRACE_S):
            answer = await client.request_with_retry("POST", path, body, deadline_s=deadline)
    except TimeoutError as exc:
        raise PeerUnavailable(failed("timed out waiting for an answer")) from exc
    except RequestError as exc:
        raise (PeerUnavailable if exc.temporary else FatalError)(failed(exc)) from exc
    except PeerUnavailable as exc:
        raise PeerUnavailable(failed(exc)) from exc
    if not isinstance(answer, dict) or answer.get("ack") is not True:
        raise FatalError(failed(f"the answer has no \"ack\": true: {str(answer)[:200]}"))
    log.info("%s acknowledged by the Pi at %s", kind, client.base_url)
    if kind == "going-offline":
        await asyncio.to_thread(_record_sent, config, body)
    return answer


def _record_sent(config: HostConfig, body: dict[str, Any]) -> None:
    """Keep what the Pi acknowledged, for the host's dashboard; never fails the notify."""
    now = time.time()
    # A lone surrogate (an undecodable file name in a volume path) went out escaped in
    # the JSON, but UTF-8 cannot hold it: store it replaced, as the Pi does.
    snapshot, _ = strictjson.storable(body.get("snapshot"))
    try:
        documents.publish(config.public_dir / documents.FILES[SnapshotSentDocument],
                          SnapshotSentDocument(generated_at=iso(now) or "", sent_at=iso(now),
                                               reason=body.get("reason"),
                                               wake_at=body.get("wake_at"),
                                               snapshot=snapshot))
    except OSError as exc:
        log.warning("could not keep the sent snapshot in %s: %s", config.public_dir, exc)


async def _message(config: HostConfig, kind: Kind, reason: Reason,
                   wake_at: datetime | None) -> dict[str, Any]:
    if kind == "coming-online":
        return ComingOnline(boot_id=await asyncio.to_thread(read_boot_id)).to_json()
    try:
        snapshot = await asyncio.to_thread(build_snapshot, config.snapshot)
    except Exception as exc:
        # The Pi must still hear that the host goes away, snapshot or not.
        log.exception("snapshot failed; sending going-offline without it")
        snapshot = {"error": f"{type(exc).__name__}: {exc}"}
    return GoingOffline(reason=reason, wake_at=wake_at, snapshot=snapshot).to_json()


def _systemctl(args: list[str], run: Runner) -> str | None:
    """systemctl's stdout, also on a non-zero exit (is-system-running uses it); None if absent."""
    try:
        result = run(["systemctl", *args], capture_output=True, text=True,
                     timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("systemctl %s: %s", " ".join(args), exc)
        return None
    out: str = result.stdout or ""
    return out
