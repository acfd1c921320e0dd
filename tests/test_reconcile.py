"""Reconcile through the real daemon: a Pi-hole record changed behind its back comes back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.e2e import Site, status, stop, wait_http
from tests.fakes.pihole import FakePihole
from tests.helpers import write_secrets

PASSWORD = "app-password"
RECONCILE_S = 0.5


async def test_pihole_record_is_restored_within_one_period(tmp_path: Path,
                                                           aiohttp_server: Any) -> None:
    fake = FakePihole(password=PASSWORD)
    server = await aiohttp_server(fake.app())
    site = Site(tmp_path, dns_backend="pihole")
    write_secrets(tmp_path / "secrets.toml", extra=f'pihole_password = "{PASSWORD}"\n')
    text = site.pi_config.read_text().replace("reconcile_s = 1", f"reconcile_s = {RECONCILE_S}")
    # [dns] is the last table in the file, so pihole_url lands in it.
    site.pi_config.write_text(text + f'pihole_url = "http://127.0.0.1:{server.port}"\n')
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        wanted = f"{site.PI_ADDRESS} nas.home.arpa"
        assert wanted in fake.hosts
        assert "192.168.1.5 printer.lan" in fake.hosts
        patches = fake.patches
        assert patches == 1

        fake.hosts = [h for h in fake.hosts if "nas.home.arpa" not in h] + ["10.1.2.3 nas.home.arpa"]
        changed = time.monotonic()
        while wanted not in fake.hosts:
            assert time.monotonic() - changed < RECONCILE_S + 1.0, fake.hosts
            await asyncio.sleep(0.02)
        assert time.monotonic() - changed <= RECONCILE_S + 0.5
        assert "10.1.2.3 nas.home.arpa" not in fake.hosts
        assert "192.168.1.5 printer.lan" in fake.hosts
        assert fake.patches == patches + 1
        assert (await status(site.api))["dns"]["applied"] is True
        await asyncio.sleep(3 * RECONCILE_S)
        assert fake.patches == patches + 1  # nothing to correct: no further PATCH
    finally:
        # In a thread: the fake Pi-hole runs on this loop and must answer the logout.
        code = await asyncio.to_thread(stop, pi)
    assert code == 0
    assert fake.logouts >= 1  # DELETE /api/auth at shutdown frees the seat
    assert "restoring" in (tmp_path / "pi.log").read_text()
