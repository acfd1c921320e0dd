"""host notify against a fake Pi that checks signatures for real; shutdown_reason; the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from handshake import client as handshake_client
from handshake.auth import Verifier, keygen
from handshake.client import HandshakeClient
from handshake.errors import AuthError, FatalError, PeerUnavailable, RequestError
from host import cli, notify
from host.config import HostConfig, load
from host.snapshot import read_boot_id
from tests.helpers import KEY, free_port, write_secrets

Answer = tuple[int, Any]


@dataclass
class FakePi:
    """Answers the host's messages from a script; records what arrived, verified for real."""

    script: list[Answer | Callable[[], Awaitable[Answer]]] = field(
        default_factory=lambda: [(200, {"ack": True, "inbox_pending": 0})])
    verifier: Verifier = field(default_factory=lambda: Verifier(KEY))
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        raw = await request.read()
        try:
            # The signature must cover exactly the bytes that arrived.
            self.verifier.verify(request.headers.get("Authorization"), request.method,
                                 request.rel_url.raw_path_qs, raw)
        except AuthError as exc:
            return web.json_response({"error": {"code": "unauthorized", "message": str(exc)}},
                                     status=401)
        self.bodies.append((request.path, raw))
        step = self.script[min(len(self.bodies) - 1, len(self.script) - 1)]
        status, answer = step if isinstance(step, tuple) else await step()
        return web.json_response(answer, status=status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/host/going-offline", self.handle)
        app.router.add_post("/api/v1/host/coming-online", self.handle)
        return app


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handshake_client, "BACKOFF_BASE_S", 0.01)
    monkeypatch.setattr(handshake_client, "BACKOFF_MAX_S", 0.02)


@pytest.fixture
async def pi() -> AsyncIterator[FakePi]:
    fake = FakePi()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


def write_config(tmp_path: Path, pi_url: str, *, deadline: float = 2.0, mode: int = 0o600,
                 key_hex: str | None = None) -> Path:
    secrets = write_secrets(tmp_path / "secrets.toml", mode=mode,
                            **({"key_hex": key_hex} if key_hex else {}))
    marker = tmp_path / "last-success"
    marker.touch()
    path = tmp_path / "host.toml"
    path.write_text(f"""
[host]
listen = "127.0.0.1:{free_port()}"
state_dir = "{tmp_path / 'state'}"
secrets_file = "{secrets}"

[pi]
url = "{pi_url}"
notify_deadline_s = {deadline}

[snapshot]
volumes = ["{tmp_path}"]
units = []
backup_marker = "{marker}"
""")
    return path


def config(tmp_path: Path, pi_url: str, **kwargs: Any) -> HostConfig:
    return load(write_config(tmp_path, pi_url, **kwargs))


async def test_going_offline_is_signed_acked_and_carries_the_snapshot(
        tmp_path: Path, pi: FakePi) -> None:
    wake_at = datetime(2026, 1, 2, 7, 0, tzinfo=UTC)
    answer = await notify.notify(config(tmp_path, pi.url), "going-offline", reason="suspend",
                                 wake_at=wake_at)
    assert answer == {"ack": True, "inbox_pending": 0}
    [(path, raw)] = pi.bodies
    assert path == "/api/v1/host/going-offline"
    body = json.loads(raw)
    assert body["reason"] == "suspend"
    assert body["wake_at"] == "2026-01-02T07:00:00.000Z"
    assert body["snapshot"]["volumes"][0]["path"] == str(tmp_path)
    assert body["snapshot"]["backup"]["marker"] == str(tmp_path / "last-success")
    assert body["snapshot"]["health"]


async def test_coming_online_sends_the_boot_id(tmp_path: Path, pi: FakePi) -> None:
    answer = await notify.notify(config(tmp_path, pi.url), "coming-online")
    assert answer["ack"] is True
    [(path, raw)] = pi.bodies
    assert path == "/api/v1/host/coming-online"
    assert json.loads(raw) == {"boot_id": read_boot_id()}


async def test_an_injected_client_is_used_and_left_open(tmp_path: Path, pi: FakePi) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:9")  # ignored: the client knows where to go
    async with HandshakeClient(pi.url, KEY) as hc:
        await notify.notify(cfg, "coming-online", client=hc)
        await notify.notify(cfg, "coming-online", client=hc)
    assert pi.attempts == 2


async def test_answer_without_ack_is_fatal(tmp_path: Path, pi: FakePi) -> None:
    pi.script = [(200, {"ok": True})]
    url = f"{pi.url}/api/v1/host/going-offline"
    with pytest.raises(FatalError, match=f"no acknowledgement from the Pi at {url}") as err:
        await notify.notify(config(tmp_path, pi.url), "going-offline")
    assert '"ack": true' in str(err.value)
    assert pi.attempts == 1


async def test_server_errors_are_retried_until_acked(tmp_path: Path, pi: FakePi) -> None:
    pi.script = [(500, {"error": {"code": "error", "message": "busy"}}),
                 (503, {"error": {"code": "error", "message": "busy"}}),
                 (200, {"ack": True})]
    assert await notify.notify(config(tmp_path, pi.url), "coming-online") == {"ack": True}
    assert pi.attempts == 3
    assert len({raw for _, raw in pi.bodies}) == 1, "every retry sends the same message"


async def test_deadline_exceeded_names_the_url(tmp_path: Path, pi: FakePi) -> None:
    pi.script = [(503, {"error": {"code": "error", "message": "busy"}})]
    start_t = time.monotonic()
    with pytest.raises(PeerUnavailable) as err:
        await notify.notify(config(tmp_path, pi.url, deadline=0.2), "coming-online")
    assert time.monotonic() - start_t < 1.5
    assert f"no acknowledgement from the Pi at {pi.url}/api/v1/host/coming-online within " \
           f"0.2 s: HTTP 503" in str(err.value)
    assert pi.attempts >= 2


async def test_a_hanging_pi_is_cut_off_at_the_deadline(tmp_path: Path, pi: FakePi) -> None:
    async def hang() -> Answer:
        await asyncio.sleep(30)
        return 200, {"ack": True}

    pi.script = [hang]
    start_t = time.monotonic()
    with pytest.raises(PeerUnavailable, match=pi.url):
        await notify.notify(config(tmp_path, pi.url, deadline=0.2), "coming-online")
    assert time.monotonic() - start_t < 1.5


async def test_nobody_listening(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PeerUnavailable, match=f"at {url}/api/v1/host/coming-online within 0.2 s"):
        await notify.notify(config(tmp_path, url, deadline=0.2), "coming-online")


async def test_wrong_key_is_fatal_without_retry(tmp_path: Path, pi: FakePi) -> None:
    with pytest.raises(FatalError, match="HTTP 401 unauthorized: bad signature") as err:
        await notify.notify(config(tmp_path, pi.url, key_hex=keygen()), "coming-online")
    assert isinstance(err.value.__cause__, RequestError)
    assert err.value.__cause__.status == 401
    assert pi.attempts == 1
    assert pi.bodies == []


# --- shutdown_reason ---------------------------------------------------------------------

def fake_systemctl(jobs: str | None, state: str | None) -> Callable[..., Any]:
    """``list-jobs`` prints ``jobs``; ``is-system-running`` prints ``state``; None: missing."""

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert kwargs["timeout"] > 0
        out = jobs if argv[1] == "list-jobs" else state
        if out is None:
            raise FileNotFoundError(2, "No such file or directory", "systemctl")
        return subprocess.CompletedProcess(argv, 0 if out == "running" else 1, out, "")

    return run


REBOOT_JOBS = """\
 812 reboot.target             start waiting
 813 systemd-reboot.service    start waiting
 790 shutdown.target           start waiting
"""
POWEROFF_JOBS = REBOOT_JOBS.replace("reboot", "poweroff")


@pytest.mark.parametrize(("jobs", "state", "expected"), [
    (REBOOT_JOBS, "stopping\n", "reboot"),
    (REBOOT_JOBS.replace("reboot", "kexec"), "stopping\n", "reboot"),
    (POWEROFF_JOBS, "stopping\n", "shutdown"),
    (POWEROFF_JOBS.replace("poweroff", "halt"), "running\n", "shutdown"),
    ("", "stopping\n", "shutdown"),
    ("", "running\n", None),
    ("", "degraded\n", None),
    (" 55 edgepair-host.service restart running\n", "running\n", None),
    (None, None, None),
    ("", "offline\n", None),
], ids=["reboot", "kexec", "poweroff", "halt", "stopping", "running", "degraded",
        "service-restart", "no-systemctl", "no-systemd"])
def test_shutdown_reason(jobs: str | None, state: str | None, expected: str | None) -> None:
    assert notify.shutdown_reason(fake_systemctl(jobs, state)) == expected


# --- the CLI -----------------------------------------------------------------------------

async def test_cli_notify_acked(tmp_path: Path, pi: FakePi) -> None:
    path = write_config(tmp_path, pi.url)
    rc = await asyncio.to_thread(cli.main, ["notify", "going-offline", "--reason", "reboot",
                                            "--wake-at", "2026-01-02T07:00:00+01:00",
                                            "--config", str(path)])
    assert rc == 0
    body = json.loads(pi.bodies[0][1])
    assert body["reason"] == "reboot"
    assert body["wake_at"] == "2026-01-02T06:00:00.000Z"


async def test_cli_no_ack_exits_1_with_one_line(tmp_path: Path, pi: FakePi,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pi.script = [(503, {"error": {"code": "error", "message": "busy"}})]
    path = write_config(tmp_path, pi.url, deadline=30)
    rc = await asyncio.to_thread(cli.main, ["notify", "coming-online", "--deadline", "0.2",
                                            "--config", str(path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith(f"edgepair: no acknowledgement from the Pi at {pi.url}"
                          f"/api/v1/host/coming-online within 0.2 s: HTTP 503")
    assert "Traceback" not in err


def test_cli_refuses_a_readable_secrets_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", mode=0o644)
    assert cli.main(["notify", "coming-online", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "readable by group or others" in err
    assert f"chmod 600 {tmp_path / 'secrets.toml'}" in err
    assert "Traceback" not in err


def test_cli_prints_every_config_problem(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "host.toml"
    path.write_text('[pi]\nurl = "ftp://x"\nnotify_deadline_s = -1\n[host]\nlisten = "nope"\n')
    assert cli.main(["run", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"edgepair: {path}: ") for line in lines)


def test_cli_auto_reason_outside_a_shutdown_sends_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cli, "shutdown_reason", lambda: None)
    path = write_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    caplog.set_level("INFO")
    assert cli.main(["notify", "going-offline", "--reason", "auto", "--config", str(path)]) == 0
    assert "not shutting down; nothing sent" in caplog.text


async def test_cli_auto_reason_during_a_reboot(tmp_path: Path, pi: FakePi,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "shutdown_reason", lambda: "reboot")
    path = write_config(tmp_path, pi.url)
    rc = await asyncio.to_thread(cli.main, ["notify", "going-offline", "--reason", "auto",
                                            "--config", str(path)])
    assert rc == 0
    assert json.loads(pi.bodies[0][1])["reason"] == "reboot"


@pytest.mark.parametrize("args", [["--wake-at", "2026-01-02T07:00:00"], ["--deadline", "0"],
                                  ["--reason", "nap"]])
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["notify", "going-offline", *args, "--config", str(path)])
    assert exit_.value.code == 2
    assert "edgepair host notify: error:" in capsys.readouterr().err

