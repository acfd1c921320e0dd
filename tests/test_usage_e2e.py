"""usage.json and the replan wake through the real api daemon (a process on loopback)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import wakeonlan

from handshake import documents
from handshake.client import HandshakeClient
from handshake.documents import ControlDocument, PlanSummary, UsageDocument
from handshake.util.timeutil import iso
from tests.e2e import Site, status, stop, wait_http, wait_state
from tests.helpers import KEY


async def wait_usage(path: Path, check: Any, timeout: float = 10.0) -> UsageDocument:
    end = time.monotonic() + timeout
    while True:
        document = documents.read_or_none(path, UsageDocument)
        if document is not None and check(document):
            return document
        if time.monotonic() > end:
            raise AssertionError(f"usage.json did not show it in {timeout} s: {document}")
        await asyncio.sleep(0.05)


def wol_listener(site: Site) -> socket.socket:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", site.wol_port))
    udp.setblocking(False)
    return udp


async def test_a_wake_through_the_api_lands_in_usage_json_and_the_ledger(tmp_path: Path) -> None:
    # No host agent: the Pi never hears from the host (unknown) until the wake.
    site = Site(tmp_path, interval=0.2, extra_pi="[usage]\nprice_per_kwh = 0.32\n")
    udp = wol_listener(site)
    pi = site.start_pi()
    usage_json = tmp_path / "pi-state/public/usage.json"
    try:
        await wait_http(site.api + "/api/v1/health")
        first = await wait_usage(usage_json, lambda d: d.days)
        assert first.recent_wakes == []
        assert first.price_per_kwh == 0.32
        assert first.today[-1].state == "unknown"  # never heard from: neither up nor asleep
        async with HandshakeClient(site.api, KEY) as client:
            answer = await client.request("POST", "/api/v1/wake", {"source": "api"})
        assert answer["sent"] is True
        packet = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(udp, 1024), 2)
        assert packet == wakeonlan.create_magic_packet(site.MAC)
        # Published at once on the wake (the refresh period is a minute).
        document = await wait_usage(usage_json, lambda d: d.recent_wakes, timeout=5)
        assert [(w.reason, w.client) for w in document.recent_wakes] == [("api", None)]
        assert document.days[-1].wakes["api"] == 1
        assert document.today[-1].state == "waking"
        assert document.month is not None
        assert document.month.wakes["api"] == 1
    finally:
        assert stop(pi, signal.SIGTERM) == 0
        udp.close()
    # The clean stop committed the ledger (the first commit was not due yet).
    with sqlite3.connect(tmp_path / "pi-state/private/usage.sqlite3") as db:
        assert db.execute("SELECT reason, client FROM wakes").fetchall() == [("api", None)]
        states = [s for (s,) in db.execute("SELECT state FROM intervals ORDER BY start_ms")]
    assert states == ["unknown", "waking"]


async def test_a_plan_about_to_expire_wakes_the_host_with_reason_plan(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2, extra_pi="""
[control]
profile = "deye-sg-lp1"
address = "127.0.0.1"
replan_before_s = 7200
""")
    udp = wol_listener(site)
    public = tmp_path / "pi-state/public"
    now = time.time()
    # The plan in force (as the control daemon reports it) expires in an hour.
    documents.publish(public / "control.json", ControlDocument(
        generated_at=iso(now) or "", interval_s=30, mode="plan",
        plan=PlanSummary(id="p-1", seq=3, valid_until=iso(now + 3600))))
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        packet = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(udp, 1024), 10)
        assert packet == wakeonlan.create_magic_packet(site.MAC)
        await wait_state(site.api, "waking")
        # host.json is written once the magic packets (three, 0.1 s apart) are out
        end = time.monotonic() + 5
        while (host := json.loads((public / "host.json").read_text()))["last_wake"] is None:
            assert time.monotonic() < end, host
            await asyncio.sleep(0.05)
        assert (host["state"], host["reason"]) == ("waking", "plan")
        assert host["last_wake"]["source"] == "plan"
        document = await wait_usage(public / "usage.json", lambda d: d.recent_wakes)
        assert [w.reason for w in document.recent_wakes] == ["plan"]
        assert document.days[-1].wakes["plan"] == 1
    finally:
        assert stop(pi, signal.SIGTERM) == 0
        udp.close()


async def test_a_plan_far_from_expiry_wakes_nobody(tmp_path: Path) -> None:
    site = Site(tmp_path, interval=0.2, extra_pi="""
[control]
profile = "deye-sg-lp1"
address = "127.0.0.1"
""")
    udp = wol_listener(site)
    public = tmp_path / "pi-state/public"
    now = time.time()
    documents.publish(public / "control.json", ControlDocument(
        generated_at=iso(now) or "", interval_s=30, mode="plan",
        plan=PlanSummary(id="p-1", seq=3, valid_until=iso(now + 4 * 3600))))  # > 3 h away
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        await wait_usage(public / "usage.json", lambda d: d.days)
        await asyncio.sleep(1.0)  # the check runs at start
        assert (await status(site.api))["state"] == "offline"
        loop = asyncio.get_running_loop()
        try:
            packet: bytes | None = await asyncio.wait_for(loop.sock_recv(udp, 1024), 0.2)
        except TimeoutError:
            packet = None
        assert packet is None
    finally:
        assert stop(pi, signal.SIGTERM) == 0
        udp.close()
