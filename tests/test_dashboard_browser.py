"""The dashboard in real headless Chromium, served by the real api daemon (and host agent).

One browser for the module; the Pi's api daemon runs as a process with ``[api] frontend_dir``
= the repository's ``frontend-dist`` and fixture files in its public directory (host.json
and pi.json are the daemon's own). Screenshots land in ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from handshake.client import HandshakeClient
from tests.e2e import ROOT, spawn, stop
from tests.fixtures import dashboard as fixtures
from tests.helpers import KEY, free_port, write_secrets
from tests.test_dashboard_nginx import NGINX, TEMPLATE, main_conf, render

CHROMIUM = "/usr/bin/chromium"
# Headless Chromium that stays on loopback (LIBRARIES.md: without these it calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
MAC = "02:ED:6E:9A:17:02"
MAGIC = bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
# Page loads on a busy 2-core machine: generous, a passing run takes a fraction of it.
WAIT_MS = 10_000


@dataclass
class PiSite:
    root: Path
    url: str
    public: Path
    wol: socket.socket
    host_url: str


def _wait_http(url: str, proc: Any, log: Path, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pi_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PiSite]:
    root = tmp_path_factory.mktemp("dashboard")
    wol = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wol.bind(("127.0.0.1", 0))
    wol.settimeout(5)
    port = free_port()
    secrets = write_secrets(root / "secrets.toml")
    config = root / "pi.toml"
    config.write_text(f"""
[pi]
address = "127.0.0.2"
state_dir = "{root / 'state'}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{port}"
frontend_dir = "{ROOT / 'frontend-dist'}"
allow_anonymous_wake = true
publish_interval_s = 2
[host]
address = "127.0.0.3"
mac = "{MAC}"
url = "http://127.0.0.1:{free_port()}"
heartbeat_interval_s = 1
heartbeat_timeout_s = 0.5
fall = 60
rise = 2
boot_timeout_s = 120
[wol]
target = "127.0.0.1"
port = {wol.getsockname()[1]}
[dns]
name = "nas.home.arpa"
listen = "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
[[schedule.wake]]
at = "07:00"
[usage]
publish_interval_s = 3600
[share]
dir = "{root / 'share'}"
""")
    (root / "share").mkdir()
    site = PiSite(root=root, url=f"http://127.0.0.1:{port}", public=root / "state" / "public",
                  wol=wol, host_url=f"http://127.0.0.1:{free_port()}")
    # The host agent, for host mode, serves the full dashboard; the Pi does not poll it.
    host_config = root / "host.toml"
    host_config.write_text(f"""
[host]
listen = "{site.host_url.removeprefix('http://')}"
state_dir = "{root / 'host-state'}"
secrets_file = "{secrets}"
frontend_dir = "{ROOT / 'frontend-dist'}"
[pi]
url = "{site.url}"
""")
    fixtures.write(site.public, fixtures.PI_FILES)
    fixtures.write(root / "host-state" / "public", fixtures.HOST_FILES)
    pi = spawn("pi", "run", "api", "--config", str(config), log=root / "pi.log")
    host = spawn("host", "run", "--config", str(host_config), log=root / "host.log")
    try:
        _wait_http(site.url + "/data/pi.json", pi, root / "pi.log")
        _wait_http(site.host_url + "/api/v1/health", host, root / "host.log")
        yield site
    finally:
        stop(pi)
        stop(host)
        wol.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    page: Page
    problems: list[str]

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("html[data-rendered=complete]", timeout=WAIT_MS)

    def text(self, selector: str) -> str:
        return (self.page.text_content(selector, timeout=WAIT_MS) or "").strip()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # Written here: with path= Playwright writes from an executor thread that outlives the test.
        (ARTIFACTS / name).write_bytes(self.page.screenshot(full_page=True))

    def assert_clean(self, expected_404: tuple[str, ...] = ()) -> None:
        """No console error or warning and no uncaught exception, but 404s asked for."""
        unexpected = [p for p in self.problems
                      if not any(p.startswith(f"404 {name}") for name in expected_404)]
        assert not unexpected, unexpected


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB",
                                  timezone_id="UTC")
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            url = message.location.get("url", "")
            status = "404 " if "404" in message.text else ""
            problems.append(f"{status}{url.rsplit('/', 1)[-1]}: {message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    try:
        yield Tab(page, problems)
    finally:
        context.close()


def card(tab: Tab, name: str) -> str:
    return tab.page.get_attribute(f"#card-{name}", "data-status") or ""


def test_values_from_the_files_appear_in_their_cards(tab: Tab, pi_site: PiSite) -> None:
    tab.open(pi_site.url + "/")
    t = tab.text
    assert t("#mode") == "Pi · view-only"
    for name in ("host", "inbox", "power", "control", "pihole", "pi"):
        assert card(tab, name) == "ok", (name, t(f"#card-{name}"))
        assert t(f"#card-{name} .card-head .age").startswith("updated"), name
    # host: the daemon's own host.json (a host it has never heard from), the fixture snapshot
    assert t("[data-field=host-state]") == "unknown"
    assert t("[data-field=host-detail]") in ("— no heartbeat yet", "— no answer to heartbeats yet")
    assert tab.page.locator("[data-field=since]").count() == 0  # not "asleep since <start>"
    assert t("[data-fact=dns] dd") == "nas.home.arpa → 127.0.0.2 (the Pi)"
    assert "(schedule)" in t("[data-fact=next-wake] dd")
    assert t("[data-part=snapshot] [data-fact=storage] dd").startswith("2.7 TB of 4.3 TB used (62 %)")
    assert t("[data-part=snapshot] [data-field=health]") == "ok"
    assert "(9 h 30 min ago)" in t("[data-part=snapshot] [data-fact=backup] dd")
    assert not tab.page.is_disabled("#wake")
    assert t("#wake") == "Wake host"
    # power: live W, today and month kWh per plug, 24 h chart, 30-day bars
    assert t("[data-plug=nas] [data-field=live]") == "3.8 W"
    assert t("[data-plug=nas] [data-field=today]") == "0.41 kWh"
    assert t("[data-plug=nas] [data-field=month]") == "6.87 kWh"
    assert t("[data-plug=router] [data-field=live]") == "7.3 W"
    assert t("[data-plug=printer] [data-field=health]") == "unreachable"
    assert t("[data-plug=printer] [data-field=live]") == "—"
    label = tab.page.get_attribute("#card-power svg.line", "aria-label") or ""
    assert label.startswith("Power of nas: last 24 h, peak"), label
    assert "15 min without a reading" in label
    assert tab.page.locator("#card-power svg.bars rect.bar").count() == 30
    assert tab.page.locator("#card-power svg.bars rect.missing").count() == 1
    # inbox, Pi-hole, energy control, Pi health
    assert t("#card-inbox [data-field=pending]") == "3 files, 48.2 MB (oldest 41 min ago)"
    assert t("#card-inbox .headline") == "3 files, 48.2 MB (oldest 41 min ago) waiting for the host"
    assert t("#card-pihole [data-field=blocked]") == "10.5 %"
    assert t("#card-pihole [data-fact=clients] dd") == "9 active of 14"
    assert t("#card-pihole [data-fact=queries] dd") == "29,476 (3,081 blocked)"
    assert t("#card-control [data-field=mode]") == "following the plan"
    assert t("#card-control .headline") == "following the plan"  # its slot is shown below
    assert t("#card-control [data-fact=writes] dd") == "14 of 200"
    assert t("#card-control [data-fact=saving] dd") == "0.42 EUR"
    assert t("#card-control [data-fact=override] dd").startswith("battery charge at 2.50 kW to 80 % until ")
    assert t("#card-control [data-fact=override] dd").endswith(" (by host)")
    assert card(tab, "energy") == "ok", t("#card-energy")
    assert t("#card-energy [data-field=saving]") == "saved 0.37 EUR today"
    assert t("#card-energy [data-fact=baseline] dd") == "1.20 EUR"
    assert t("#card-energy [data-fact=plan] dd") == "forecast 0.42 EUR, realised 0.37 EUR (24 of 64 slots)"
    assert t("#card-energy [data-fact=self] dd") == "30 %"
    assert t("#card-control [data-fact=slot] dd").endswith(
        "battery charge at 2.50 kW to 80 %, feed-in ≤ 0.0 W")
    assert t("#card-control [data-fact=readback] dd") == "battery 54 % · charging 2.48 kW · exporting 320.0 W"
    assert t("#card-pi [data-fact=hostname] dd") == os.uname().nodename
    assert t("#card-pi [data-fact=daemons] dd").startswith("api ")
    assert re.fullmatch(r"[\d.]+ [KMGT]?B free of [\d.]+ [KMGT]?B",
                        t("#card-pi [data-fact=share-share] dd")), t("#card-pi [data-fact=share-share] dd")
    tab.shot("dashboard-1280.png")
    tab.assert_clean()


def test_a_stale_file_is_stale_and_a_broken_file_breaks_only_its_card(
        tab: Tab, pi_site: PiSite) -> None:
    public = pi_site.public
    now = time.time()
    pihole = fixtures.load("pihole", now - 600)  # interval 60 s: 10 min old is stale
    (public / "pihole.json").write_text(json.dumps(pihole))
    power = fixtures.load("power", now)
    power["interval_s"], power["stale_after_s"] = 1.5, 4.5  # stale 4.5 s from now, the page open
    (public / "power.json").write_text(json.dumps(power))
    (public / "control.json").write_text('{"schema": "edgepair.control/1", "mode": ')
    snapshot = fixtures.load("snapshot", now)
    snapshot["schema"] = "edgepair.snapshot/2"
    (public / "snapshot.json").write_text(json.dumps(snapshot))
    (public / "inbox.json").unlink()
    try:
        tab.open(pi_site.url + "/")
        assert card(tab, "power") == "ok"
        assert card(tab, "pihole") == "stale"
        assert "Stale: the api daemon refreshes this every 1 min" in tab.text("#card-pihole .banner")
        assert tab.text("#card-pihole [data-field=blocked]") == "10.5 %"  # shown, flagged stale
        assert card(tab, "control") == "unreadable"
        assert "control.json is not valid JSON" in tab.text("#card-control .banner")
        assert card(tab, "inbox") == "absent"
        assert tab.page.get_attribute("#card-inbox", "data-detail") == "not-configured"
        assert tab.text("#card-inbox .body") == "not configured"
        snap = "[data-part=snapshot]"
        assert tab.page.get_attribute(snap, "data-status") == "unreadable"
        assert "written by a newer edgepair (edgepair.snapshot/2)" in tab.text(snap)
        # the rest is untouched
        assert card(tab, "host") == "ok"
        assert tab.text("[data-field=host-state]") == "unknown"
        assert card(tab, "pi") == "ok"
        # power.json is not refreshed while the page is open: live → stale by itself
        tab.page.wait_for_selector("#card-power[data-status=stale]", timeout=WAIT_MS)
        assert "These are not live values." in tab.text("#card-power .banner")
        assert tab.text("[data-plug=nas] [data-field=live]") == "3.8 W"
        tab.shot("dashboard-stale-broken.png")
        tab.assert_clean(expected_404=("inbox.json",))
    finally:
        fixtures.write(public, fixtures.PI_FILES)


def test_surprises_inside_a_valid_file_break_nothing(tab: Tab, pi_site: PiSite) -> None:
    """null among the volumes, units and plugs, a very long plug name on a phone: the rest
    shows, no uncaught error, no warning every second; modules are always revalidated."""
    public = pi_site.public
    now = time.time()
    snapshot = fixtures.load("snapshot", now)
    snapshot["snapshot"]["volumes"].append(None)
    snapshot["snapshot"]["units"] = [None, *snapshot["snapshot"].get("units", [])]
    (public / "snapshot.json").write_text(json.dumps(snapshot))
    power = fixtures.load("power", now)
    power["plugs"][0]["name"] = "the-very-long-name-of-the-workshop-freezer-plug"
    power["plugs"].append(None)
    (public / "power.json").write_text(json.dumps(power))
    try:
        tab.page.set_viewport_size({"width": 360, "height": 740})
        tab.open(pi_site.url + "/")
        assert tab.page.get_attribute("[data-part=snapshot]", "data-status") == "ok"
        assert "used" in tab.text("[data-part=snapshot] [data-fact=storage] dd")
        assert card(tab, "power") == "ok"
        assert tab.page.locator("#card-power .plug").count() == len(power["plugs"]) - 1
        widths = tab.page.evaluate("[document.documentElement.scrollWidth, "
                                   "document.documentElement.clientWidth]")
        wide = tab.page.evaluate("[...document.querySelectorAll('main *')].filter(e => "
                                 "e.getBoundingClientRect().right > 361).map(e => e.tagName + '.' "
                                 "+ e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
                                 ".slice(0, 12)")
        assert widths == [360, 360], wide
        tab.page.wait_for_timeout(2500)  # a few ticks: nothing re-rendered and warned again
        tab.assert_clean()
        for asset in ("/js/main.js", "/style.css", "/data/host.json"):
            response = tab.page.request.get(pi_site.url + asset)
            assert response.headers.get("cache-control") == "no-cache", asset
    finally:
        fixtures.write(public, fixtures.PI_FILES)


def test_phone_width_keyboard_and_dark(tab: Tab, pi_site: PiSite) -> None:
    tab.page.set_viewport_size({"width": 360, "height": 740})
    tab.open(pi_site.url + "/")
    widths = tab.page.evaluate("[document.documentElement.scrollWidth, "
                               "document.documentElement.clientWidth]")
    assert widths == [360, 360]
    widest = tab.page.evaluate("Math.max(...[...document.querySelectorAll('main *')]"
                               ".map(e => e.getBoundingClientRect().right))")
    assert widest <= 360
    tab.shot("dashboard-360.png")
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.id") == "wake"
    outline = tab.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    light = tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
    tab.page.emulate_media(color_scheme="dark")
    dark = tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    tab.shot("dashboard-360-dark.png")
    tab.assert_clean()


def test_decisions_run_in_the_browser(tab: Tab, pi_site: PiSite) -> None:
    """The page's pure functions, imported as the page imports them."""
    tab.open(pi_site.url + "/")
    got = tab.page.evaluate("""async () => {
      const s = await import("./js/core.js");
      const cards = await import("./js/cards.js");
      const now = Date.parse("2026-01-15T12:00:00Z");
      const at = (secondsAgo) => new Date(now - secondsAgo * 1000).toISOString();
      const sent = {phase: "sent", sentAt: now - 200000, bootTimeoutS: 180};
      const body = document.createElement("div");
      cards.renderHost(body, {state: "online", since: at(60), dns: {}}, {now, stale: true});
      return {
        lastKnown: body.querySelector("[data-field=host-state]").textContent,
        hung: s.hostView({state: "unreachable", power: {state: "hung", watts: 38.5, stale: false}}),
        off: s.hostView({state: "unreachable", power: {state: "off", watts: 0.4, stale: false}}),
        unknown: s.hostView({state: "unreachable", power: null}),
        going: s.hostView({state: "going_offline", reason: "suspend"}),
        neverSeen: s.hostView({state: "offline", reason: "never_seen", last_heartbeat: null}),
        neverAnswered: s.hostView({state: "offline", reason: "never_seen",
                                   last_heartbeat: {ok: false, at: at(2)}}),
        asleep: s.hostView({state: "offline", reason: null}),
        timedOut: s.wakeView(sent, {state: "waking", since: at(200)}, false, now),
        gaveUp: s.wakeView({...sent, sentAt: now - 5000}, {state: "unreachable", since: at(1),
                           power: {state: "off", watts: 0.3, stale: false}}, false, now),
        waking: s.wakeView({...sent, sentAt: now - 5000}, {state: "waking"}, false, now),
        online: s.wakeView({...sent, sentAt: now - 41000}, {state: "online"}, false, now),
        staleOnline: s.wakeView({phase: "idle"}, {state: "online"}, true, now),
        errorThenOnline: s.wakeView({phase: "error", message: "Not answering: …"},
                                    {state: "online"}, false, now),
        noted: s.wakeView({...sent, sentAt: now - 5000, note: "(Pressed again: too many.)"},
                          {state: "waking"}, false, now),
        doneThenAsleep: s.wakeView({phase: "done", message: "The host is online."},
                                   {state: "offline"}, false, now),
        queued: s.wakeAnswer(202, {sent: false, state: "going_offline",
                                   message: "host is going down; it will be woken once down"}, null, now),
        queuedWaking: s.wakeView({phase: "queued", message: "x"}, {state: "waking", since: at(3)},
                                 false, now),
        refused: s.wakeAnswer(401, {error: {code: "unauthorized",
          message: "wake needs a signed request (allow_anonymous_wake is off)"}}, null, now),
        limited: s.wakeAnswer(429, {error: {code: "rate_limited", message: "too many"}}, "20", now),
        fresh: s.freshness({generated_at: at(14), interval_s: 5, stale_after_s: 15}, now).stale,
        stale: s.freshness({generated_at: at(16), interval_s: 5, stale_after_s: 15}, now).stale,
        events: s.freshness({generated_at: at(86400), interval_s: null, stale_after_s: null},
                            now).stale,
        notObject: s.problem("power", []),
        newer: s.problem("power", {schema: "edgepair.power/2", generated_at: at(1)}),
        other: s.problem("power", {schema: "edgepair.inbox/1", generated_at: at(1)}),
        noTime: s.problem("power", {schema: "edgepair.power/1", generated_at: "soon"}),
        absentPower: s.absentWords("power", {daemons: {api: {}, power: {}}}).key,
        absentControl: s.absentWords("control", {daemons: {api: {}}}).key,
        absentPihole: s.absentWords("pihole", {daemons: {api: {}}}).key,
        pendingPihole: s.absentWords("pihole", {daemons: {api: {}}, pihole_configured: true}),
        shares: cards.shareFacts({
          inbox: {path: "/srv/edgepair/inbox", total_bytes: 32e9, used_bytes: 31.5e9, free_bytes: 0.5e9},
          share: {path: "/smb/share", error: "not found"},
          usb: {path: "/mnt/usb", total_bytes: 1e12, used_bytes: 1e11, free_bytes: 9e11},
        }).map(([label, node, key]) => [label, node.textContent, node.className ?? "", key]),
        noShares: cards.shareFacts(undefined).length + cards.shareFacts([1]).length,
        backupOk: (() => { const f = cards.backupFacts({enabled: true, running: false,
            last_ok: {at: at(3600), bytes: 14.2e6}, last_error: null, next_due: at(-82800)}, now);
          return f[0][1].textContent; })(),
        backupFailing: cards.backupFacts({enabled: true, running: false, last_ok: null,
            last_error: {at: at(60), message: "host: 507 insufficient_storage"}, next_due: null},
          now)[0][1].textContent,
        backupRunning: cards.backupFacts({enabled: true, running: true}, now)[0][1].textContent,
        noBackup: cards.backupFacts(null, now).length,
      };
    }""")
    assert got["lastKnown"] == "last known: online"  # a stale host.json is not news
    assert got["hung"]["word"] == "not answering"
    assert got["hung"]["detail"] == "hung: its plug still draws working power (38.5 W)"
    assert got["off"]["detail"] == "off: its plug draws next to nothing (0.4 W)"
    assert got["unknown"]["detail"] == "hung or off: no plug measures the host"
    assert got["going"]["word"] == "going to sleep"
    assert (got["neverSeen"]["word"], got["neverSeen"]["detail"]) == ("unknown", "no heartbeat yet")
    assert got["neverAnswered"]["detail"] == "no answer to heartbeats yet"
    assert got["asleep"]["word"] == "asleep"
    assert got["timedOut"]["message"].startswith("Not answering: the host did not come up within 3 min")
    assert got["timedOut"]["disabled"] is False
    assert "(off: its plug draws next to nothing (0.3 W))" in got["gaveUp"]["message"]
    assert "the host is waking" in got["waking"]["message"]
    assert got["timedOut"]["next"] == {"phase": "error", "message": got["timedOut"]["message"]}
    assert got["online"] == {"label": "Host is online", "disabled": True, "tone": "good",
                             "message": "The host is online (woke in 41 s).",
                             "next": {"phase": "done", "message": "The host is online (woke in 41 s)."}}
    assert got["staleOnline"]["disabled"] is False  # a stale "online" is not believed
    # an old failure is over once the host is up: it must not come back with the next sleep
    assert (got["errorThenOnline"]["message"], got["errorThenOnline"]["next"]) == ("", {"phase": "idle"})
    assert got["noted"]["message"].endswith("to boot)… (Pressed again: too many.)")
    assert got["doneThenAsleep"]["message"] == ""  # yesterday's success is not news
    assert got["queued"] == {"phase": "queued",
                             "message": "Host is going down; it will be woken once down."}
    assert got["queuedWaking"]["next"]["phase"] == "sent"
    assert "the host is waking" in got["queuedWaking"]["message"]
    assert "allow_anonymous_wake is off" in got["refused"]["message"]
    assert got["limited"]["message"] == "Too many wake requests; try again in 20 s."
    assert (got["fresh"], got["stale"], got["events"]) == (False, True, False)
    assert got["notObject"] == "not a JSON object"
    assert "newer edgepair" in got["newer"]
    assert got["other"].startswith("unexpected schema")
    assert got["noTime"] == "no valid generated_at timestamp"
    assert (got["absentPower"], got["absentControl"]) == ("no-data", "not-configured")
    # Pi-hole: "not configured" only when pi.json says so, else it is just not there yet
    assert got["absentPihole"] == "not-configured"
    assert got["shares"] == [
        ["Inbox space", "500 MB free of 32.0 GB", "tone-text-bad", "share-inbox"],  # low: < 1 GB
        ["Share space", "/smb/share: not found", "tone-text-bad", "share-share"],
        ["usb space", "900 GB free of 1.0 TB", "", "share-usb"]]
    assert got["noShares"] == 0
    assert got["backupOk"] == "11:00 (1 h ago), 14.2 MB to the host; next Fri 16 Jan, 11:00"
    assert got["backupFailing"] == ("none yet; last try failed: host: 507 insufficient_storage"
                                    "; next when the host is online")
    assert got["backupRunning"] == "sending now"
    assert got["noBackup"] == 0
    assert got["pendingPihole"] == {"key": "no-data",
                                    "text": "no data yet (waiting for Pi-hole's first summary)"}
    tab.assert_clean()


def test_wake_sends_a_magic_packet_and_the_button_follows_the_host(
        tab: Tab, pi_site: PiSite) -> None:
    tab.open(pi_site.url + "/")
    assert tab.text("[data-field=host-state]") == "unknown"  # never seen since the Pi started
    assert tab.page.get_attribute("#wake-status", "aria-live") == "polite"
    tab.page.click("#wake")
    packet, sender = pi_site.wol.recvfrom(1024)
    assert packet == MAGIC
    assert sender[0] == "127.0.0.1"
    tab.page.wait_for_selector("[data-field=host-state][data-state=waking]", timeout=WAIT_MS)
    assert tab.text("#wake-status").startswith("Magic packet sent at ")
    assert "the host is waking" in tab.text("#wake-status")
    tab.shot("dashboard-waking.png")

    _run(_coming_online(pi_site.url))
    tab.page.wait_for_selector("#wake:disabled", timeout=WAIT_MS)
    assert tab.text("[data-field=host-state]") == "online"
    assert tab.text("#wake") == "Host is online"
    assert tab.text("#wake-status").startswith("The host is online (woke in ")
    assert tab.text("[data-fact=dns] dd") == "nas.home.arpa → 127.0.0.3 (the host)"
    tab.shot("dashboard-online.png")
    tab.assert_clean()


def test_host_mode_adds_the_host_files_and_reads_the_pi_across_origins(
        tab: Tab, pi_site: PiSite) -> None:
    tab.open(pi_site.host_url + "/")
    assert tab.text("#mode") == "host · full view"
    assert tab.page.is_hidden("#wake")
    for name in ("power", "pihole", "pi", "received", "sent"):  # the Pi's files via CORS
        assert card(tab, name) == "ok", (name, tab.text(f"#card-{name}"))
    assert tab.text("[data-plug=nas] [data-field=live]") == "3.8 W"
    assert tab.text("#card-received [data-field=total]") == "57 files"
    paths = tab.page.locator("#card-received .path").all_text_contents()
    assert paths[:3] == ["scans/2026-01-15 invoice.pdf", "photos/IMG_2041.jpg",
                         "photos/<b>not bold</b>.jpg"]  # a file name is text, never HTML
    assert tab.page.locator("#card-received b").count() == 0
    assert "kept as scans/receipt (2).pdf" in tab.text("#card-received")
    assert "suspend" in tab.text("#card-sent [data-fact=reason] dd")
    assert tab.text("#card-sent [data-field=health]") == "ok"
    tab.shot("dashboard-host-mode.png")
    tab.assert_clean()


def test_through_the_shipped_nginx_config_the_page_is_whole_and_clean(
        tab: Tab, pi_site: PiSite) -> None:
    """Production: gzip, the Content-Security-Policy, /data/ from disk, /api/ proxied."""
    prefix = pi_site.root / "nginx"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = prefix / "edgepair.conf"
    server.write_text(render(TEMPLATE.read_text(), port, pi_site.public,
                             int(pi_site.url.rsplit(":", 1)[1])))
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, server))
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", "stderr",
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, prefix / "error.log")
        tab.open(f"http://127.0.0.1:{port}/")
        assert tab.text("#mode") == "Pi · view-only"  # /api/v1/health came through the proxy
        for name in ("host", "inbox", "power", "control", "pihole", "pi"):
            assert card(tab, name) == "ok", (name, tab.text(f"#card-{name}"))
        assert tab.text("[data-plug=nas] [data-field=live]") == "3.8 W"
        tab.assert_clean()  # a CSP violation would be a console error
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _usage(public: Path, change: Any = None, now: float | None = None) -> dict[str, Any]:
    """The usage fixture written over the daemon's own usage.json (it rewrites it hourly)."""
    usage = fixtures.load("usage", now)
    if change is not None:
        change(usage)
    tmp = public / "usage.json.tmp"
    tmp.write_text(json.dumps(usage))
    tmp.replace(public / "usage.json")
    return usage


@pytest.mark.parametrize("width", [1280, 360])
def test_host_usage_card_draws_today_fourteen_days_and_the_month(
        tab: Tab, pi_site: PiSite, width: int) -> None:
    def unrecorded(usage: dict[str, Any]) -> None:
        usage["days"][-14]["hours_recorded"] = 0  # a day before the ledger began

    _usage(pi_site.public, unrecorded)
    try:
        tab.page.set_viewport_size({"width": width, "height": 900})
        tab.open(pi_site.url + "/")
        t = tab.text
        assert card(tab, "usage") == "ok", t("#card-usage")
        assert t("#card-usage [data-field=today-online]") == "2 h 28 min"
        assert t("#card-usage .headline") == "2 h 28 min online today · 2 wakes"
        # today: asleep, waking, up, going offline, asleep, waking, up (now)
        timeline = "#card-usage svg.timeline"
        states = tab.page.eval_on_selector_all(f"{timeline} rect.band",
                                               "els => els.map(e => e.dataset.state)")
        assert states == ["offline", "waking", "online", "going_offline", "offline", "waking",
                          "online"]
        assert tab.page.locator(f"{timeline} rect.band.up").count() == 2
        assert tab.page.locator(f"{timeline} rect.band.asleep").count() == 2
        label = tab.page.get_attribute(timeline, "aria-label") or ""
        assert label == "Today: up 2 h 28 min in 2 stretches"
        # the bands end at now: half the day (the fixture is written at noon)
        right = tab.page.eval_on_selector_all(
            f"{timeline} rect.band", "els => els.map(e => +e.getAttribute('x') + "
                                     "+e.getAttribute('width'))")
        track = tab.page.eval_on_selector(f"{timeline} rect.track",
                                          "e => [+e.getAttribute('x'), +e.getAttribute('width')]")
        assert abs(right[-1] - (track[0] + track[1] / 2)) < 1.5
        # 14 days of hours up: 13 drawn, one not recorded
        hours = "#card-usage svg.hours"
        assert tab.page.locator(f"{hours} rect.bar").count() == 14
        assert tab.page.locator(f"{hours} rect.bar.missing").count() == 1
        assert tab.page.locator(f"{hours} rect.bar.today").count() == 1
        heights = tab.page.eval_on_selector_all(f"{hours} rect.bar:not(.missing):not(.today)",
                                                "els => els.map(e => +e.getAttribute('height'))")
        assert len(heights) == 12
        assert max(heights) > 2 * min(heights)  # 7 h 45 min days beside 2 h days
        # the month: kWh and money saved, reasons, the noisiest demand clients
        assert t("#card-usage [data-field=month-kwh]") == "3.04 kWh this month"
        assert t("#card-usage [data-field=month-saved]") == \
            "10.4 kWh · 3.30 EUR against an always-on host"
        assert t("#card-usage [data-fact=reasons] dd") == (
            "schedule 15 · API 5 · DNS demand 5 · port demand 2 · Wake button 1 · energy plan 1")
        clients = tab.page.eval_on_selector_all("#card-usage .clients li",
                                                "els => els.map(e => e.dataset.client)")
        assert clients == ["192.168.1.61", "192.168.1.50", "192.168.1.72"]
        assert t("#card-usage .clients li:first-child").startswith("192.168.1.61 6 wakes, last ")
        assert t("#card-usage [data-fact=last-wake] dd").startswith("Wake button, ")
        svg_right = tab.page.eval_on_selector_all(
            "#card-usage svg", "els => els.map(e => e.getBoundingClientRect().right)")
        card_right = tab.page.eval_on_selector("#card-usage",
                                               "e => e.getBoundingClientRect().right")
        assert all(r <= card_right for r in svg_right)
        widths = tab.page.evaluate("[document.documentElement.scrollWidth, "
                                   "document.documentElement.clientWidth]")
        assert widths == [width, width]
        tab.shot(f"dashboard-usage-{width}.png")
        tab.assert_clean()
    finally:
        _usage(pi_site.public)


def test_host_usage_card_absent_stale_or_odd_breaks_nothing(tab: Tab, pi_site: PiSite) -> None:
    public = pi_site.public
    (public / "usage.json").unlink()
    try:
        tab.open(pi_site.url + "/")
        assert card(tab, "usage") == "absent"
        assert tab.text("#card-usage .body") == "no data yet"
        for name in ("host", "power", "inbox", "control", "pihole", "pi"):
            assert card(tab, name) == "ok", name
        tab.assert_clean(expected_404=("usage.json",))
        # an hour old with a one-minute refresh: stale, still drawn, flagged
        _usage(public, now=time.time() - 3600)
        tab.problems.clear()
        tab.open(pi_site.url + "/")
        assert card(tab, "usage") == "stale"
        assert "Stale: the api daemon refreshes this every 1 min" in tab.text("#card-usage .banner")
        assert tab.page.locator("#card-usage svg.hours rect.bar").count() == 14
        tab.assert_clean()

        def odd(usage: dict[str, Any]) -> None:  # a file from a future minor change
            usage["days"][-1] = None
            usage["today"] = [None, {"state": "online", "start": "soon", "end": None}]
            usage["month"] = None
            usage["demand_clients"] = [None]

        _usage(public, odd)
        tab.open(pi_site.url + "/")
        assert card(tab, "usage") == "ok"
        assert tab.page.locator("#card-usage svg.timeline rect.band").count() == 0
        assert tab.text("#card-usage [data-fact=month] dd") == "—"
        tab.assert_clean()
    finally:
        _usage(public)


async def _coming_online(url: str) -> Any:
    async with HandshakeClient(url, KEY) as client:
        return await client.request("POST", "/api/v1/host/coming-online", {"boot_id": "b-1"})


def _run(coroutine: Any) -> Any:
    """Run a coroutine to the end in a thread: Playwright's sync API holds this one's loop."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_nodes_card_shows_each_node_and_hides_without_nodes(tab: Tab, pi_site: PiSite) -> None:
    public = pi_site.public
    tab.open(pi_site.url + "/")
    assert card(tab, "nodes") == "ok"
    assert tab.page.is_visible("#card-nodes")
    blinds = "#card-nodes [data-node=node-3fa1c2d4]"
    assert tab.text(f"{blinds} [data-field=name]") == "living-blinds"
    assert tab.text(f"{blinds} [data-field=state]") == "online"
    assert tab.text(f"{blinds} [data-reading=temperature] strong") == "21.5 °C"
    # The fixture's 20:00 is eight hours after its generated_at; the fixtures move in time.
    assert re.fullmatch(r"Next: motor down 5 s at (\w{3} \d+ \w{3}, )?\d\d:\d\d",
                        tab.text(f"{blinds} [data-field=next-job]"))
    door = "#card-nodes [data-node=node-77b0e912]"
    assert tab.text(f"{door} [data-field=state]") == "offline"
    assert tab.text(f"{door} [data-reading=door] strong") == "off"
    pending = "#card-nodes [data-node=node-c0ffee01]"
    assert tab.text(f"{pending} [data-field=state]") == "waiting for approval"
    assert tab.text(f"{pending} [data-field=approve]").startswith(
        "edgepair node approve node-c0ffee01 --code")
    tab.shot("nodes.png")
    tab.assert_clean()
    try:
        empty = fixtures.load("nodes")
        empty["nodes"] = []
        (public / "nodes.json").write_text(json.dumps(empty))
        tab.open(pi_site.url + "/")
        assert tab.page.is_hidden("#card-nodes")
        (public / "nodes.json").unlink()
        tab.problems.clear()
        tab.open(pi_site.url + "/")
        assert tab.page.is_hidden("#card-nodes")
        assert card(tab, "power") == "ok"
        tab.assert_clean(expected_404=("nodes.json",))
    finally:
        fixtures.write(public, ("nodes",))


@pytest.mark.parametrize("width", [1280, 360])
def test_host_plan_and_history_views_draw_energy_json(
        tab: Tab, pi_site: PiSite, width: int) -> None:
    """Host mode: the Plan (today's slots, planned against actual) and the 30-day History."""
    energy = pi_site.public / "energy.json"
    tmp = energy.with_suffix(".tmp")
    tmp.write_text(json.dumps(fixtures.load_today("energy")))
    tmp.replace(energy)
    try:
        _plan_and_history(tab, pi_site, width)
    finally:
        fixtures.write(pi_site.public, ("energy",))


def _plan_and_history(tab: Tab, pi_site: PiSite, width: int) -> None:
    tab.page.set_viewport_size({"width": width, "height": 900})
    tab.open(pi_site.host_url + "/")
    t = tab.text
    assert card(tab, "plan") == "ok", t("#card-plan")
    assert card(tab, "history") == "ok", t("#card-history")
    assert t("#card-plan [data-field=plan-saving]") == \
        "expected 0.42 EUR · realised 0.37 EUR so far"
    assert t("#card-plan [data-fact=audited] dd") == \
        "24 of 64 slots of this plan; 48 slots today"
    assert t("#card-plan [data-fact=planner-run] dd").startswith("plan from 06:00 (")
    assert "energy.json" in t("#card-plan [data-fact=inputs] dd")
    # 49 slots today (00:00 to the running 12:00 one), each on the 96-slot grid
    power = "#card-plan [data-chart=power] svg"
    bars = tab.page.locator(f"{power} rect.battery")
    assert bars.count() == 16 + 12  # charge 02:00-06:00, discharge 06:00-09:00, else hold
    assert tab.page.locator(f"{power} rect.battery.down").count() == 12  # 06:00-09:00
    assert "02:00: planned battery 2.20 kW" in (bars.first.text_content() or "")
    soc = "#card-plan [data-chart=soc] svg"
    assert "actual" in (tab.page.get_attribute(soc, "aria-label") or "")
    # the actual SoC runs to the last complete slot (11:45), it ends just before the middle
    actual_end = tab.page.eval_on_selector(
        f"{soc} path.actual-soc", "e => +e.getAttribute('d').split('L').pop().split(',')[0]")
    grid = tab.page.eval_on_selector(
        f"{soc} line.grid", "e => [+e.getAttribute('x1'), +e.getAttribute('x2')]")
    middle = (grid[0] + grid[1]) / 2
    assert grid[0] < actual_end < middle, (actual_end, grid)
    assert middle - actual_end < (grid[1] - grid[0]) / 96 * 2
    day_s = time.time() % 86400  # the browser runs in UTC
    now = tab.page.eval_on_selector(f"{soc} line.now", "e => +e.getAttribute('x1')")
    assert abs(now - (grid[0] + (grid[1] - grid[0]) * day_s / 86400)) < 3
    assert tab.page.locator("#card-plan details.slot-table tbody tr").count() == 49
    # the override: shown, and its buttons are off with the reason beside them
    assert t("#card-plan [data-field=override]").startswith("charge at 2.50 kW to 80 % until")
    buttons = tab.page.locator("#card-plan .override button")
    assert buttons.count() == 6
    assert all(buttons.nth(i).is_disabled() for i in range(6))
    assert "edgepair host control override" in t("#override-note")
    # History: 30 days, one without figures, the sums of the fixture's days
    saving = "#card-history [data-chart=saving] svg"
    assert tab.page.locator(f"{saving} rect.bar").count() == 30
    assert tab.page.locator(f"{saving} rect.bar.missing").count() == 1
    assert tab.page.locator("#card-history [data-chart=import] svg rect.bar.today").count() == 1
    assert t("#card-history [data-field=history-saving]").startswith("saved ")
    assert "in 29 days" in t("#card-history [data-field=history-saving]")
    # no horizontal scroll at either width, the charts fit their card
    overflow = tab.page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, overflow
    chart_w = tab.page.eval_on_selector_all(
        "#card-plan svg.chart, #card-history svg.chart",
        "els => els.map(e => e.getBoundingClientRect().right)")
    assert max(chart_w) <= width, chart_w
    tab.shot(f"dashboard-host-plan-{width}.png")
    for name in ("plan", "history"):
        (ARTIFACTS / f"dashboard-host-{name}-card-{width}.png").write_bytes(
            tab.page.locator(f"#card-{name}").screenshot())
    tab.page.emulate_media(color_scheme="dark")
    tab.shot(f"dashboard-host-plan-{width}-dark.png")
    tab.assert_clean()


def test_the_pis_page_has_no_plan_or_history_view(tab: Tab, pi_site: PiSite) -> None:
    tab.open(pi_site.url + "/")
    assert tab.page.is_hidden("#card-plan")
    assert tab.page.is_hidden("#card-history")
    assert card(tab, "energy") == "ok"
    tab.assert_clean()
