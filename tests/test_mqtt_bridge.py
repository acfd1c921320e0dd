"""The shipped fleet bridge (scripts/mosquitto/bridge.conf) between two real Mosquitto brokers
on loopback: a site's topics arrive centrally, confined by the central ACL, and survive the
central broker restarting (without persistence: it loses everything, the bridge resends)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.mosquitto import Broker, subscriber, until

SHIPPED = Path(__file__).resolve().parent.parent / "scripts" / "mosquitto"
SITE = "lakeside"


def bridge_conf(central: Broker, password: str, *, site: str = SITE) -> str:
    """The shipped file with the CHANGE values filled in for loopback (no TLS here)."""
    text = (SHIPPED / "bridge.conf").read_text()
    assert "address central.example.net:8883\n" in text
    text = text.replace("address central.example.net:8883", f"address 127.0.0.1:{central.port}")
    text = text.replace("remote_password CHANGE-ME", f"remote_password {password}")
    text = re.sub(r"^bridge_cafile .*\n|^bridge_insecure .*\n", "", text, flags=re.MULTILINE)
    # A test may not wait the production backoff: restart_timeout is the only other change.
    assert "restart_timeout 5 60\n" in text
    text = text.replace("restart_timeout 5 60", "restart_timeout 1 1")
    return text.replace("SITE", site)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, name="central", acl=(SHIPPED / "central.acl").read_text(),
               users={SITE: "site-secret", "elsewhere": "other-secret", "fleet": "fleet-secret"})
    yield b.start()
    b.stop()


@pytest.fixture
def site(tmp_path: Path, central: Broker) -> Iterator[Broker]:
    b = Broker(tmp_path, name="site", extra=bridge_conf(central, "site-secret"))
    yield b.start()
    b.stop()


async def publish(broker: Broker, topic: str, payload: bytes, *, user: str = "edgepair",
                  retain: bool = True) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, username=user,
                              password=broker.users[user]) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


async def test_a_sites_topics_arrive_centrally_and_survive_a_central_restart(
        central: Broker, site: Broker) -> None:
    remote = f"sites/{SITE}/edgepair/pi/plug/nas/power_w"
    async with subscriber(central, "sites/#", user="fleet") as got:
        await until(lambda: got.latest().get(f"sites/{SITE}/bridge/state") == b"1", timeout=10,
                    what="the bridge's notification")
        await publish(site, "edgepair/pi/plug/nas/power_w", b"3.8")
        await publish(site, "homeassistant/sensor/x/y/config", b"{}")  # not bridged
        await until(lambda: got.latest().get(remote) == b"3.8", timeout=5)
    assert not any(t.startswith(f"sites/{SITE}/homeassistant") for t in got.latest())

    central.stop()  # persistence false: every retained message is gone
    await publish(site, "edgepair/pi/plug/nas/power_w", b"41.5")  # while the centre is down
    await publish(site, "edgepair/pi/host/state", b"waking")
    central.start()
    async with subscriber(central, "sites/#", user="fleet") as later:
        await until(lambda: later.latest().get(remote) == b"41.5", timeout=15,
                    what=later.latest)
        await until(lambda: later.latest().get(f"sites/{SITE}/edgepair/pi/host/state") == b"waking",
                    timeout=5)
        assert later.latest()[f"sites/{SITE}/bridge/state"] == b"1"


async def test_the_central_acl_keeps_a_site_to_its_own_topics(
        tmp_path: Path, central: Broker) -> None:
    # A site that names another's prefix: its bridge logs in as itself, its messages are dropped.
    impostor = Broker(tmp_path, name="impostor",
                      extra=bridge_conf(central, "other-secret", site="elsewhere").replace(
                          "topic # out 1 edgepair/ sites/elsewhere/edgepair/",
                          f"topic # out 1 edgepair/ sites/{SITE}/edgepair/")).start()
    try:
        async with subscriber(central, "sites/#", user="fleet") as got:
            await until(lambda: got.latest().get("sites/elsewhere/bridge/state") == b"1",
                        timeout=10)
            await publish(impostor, "edgepair/pi/host/state", b"online")
            await publish(impostor, "edgepair/pi/probe", b"x")
            # What the ACL allows does arrive (its own bridge state); the rest does not.
            await publish(central, "sites/elsewhere/edgepair/pi/probe", b"own", user="elsewhere")
            await until(lambda: "sites/elsewhere/edgepair/pi/probe" in got.latest(), timeout=5)
            assert not any(t.startswith(f"sites/{SITE}/") for t in got.latest())
    finally:
        impostor.stop()
