#!/usr/bin/env python3
"""Screenshots of the dashboard from a demo-like setup, for the README (run scripts/screenshot).

The real Pi api daemon serves ``frontend-dist`` with the fixture files of
``tests/fixtures/dashboard`` (the host asleep, three plugs, an inbox, Pi-hole, energy
control); Debian's Chromium, headless via Playwright, renders it at 1280 px and at 360 px.
The host agent then serves the full (host-mode) page: its Plan and History cards are
photographed on their own (the browser in UTC, the fixtures' time zone).
With ``--url`` it photographs a dashboard that is already running instead (e.g. the one
``scripts/demo`` serves at http://127.0.0.1:8770/) into ``dashboard-demo.png``.

    .venv/bin/python scripts/bench/dashboard_screenshot.py [--out DIR] [--dark] [--url URL]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import aiohttp
from _common import ROOT, Children, run, wait_for, wait_http
from dashboard_site import CHROMIUM, CHROMIUM_ARGS, DashboardSite

OUT = ROOT / "scripts" / "screenshots"
# Viewport width → file name; each shot is the full page.
SHOTS = {1280: "dashboard.png", 360: "dashboard-360.png"}
URL_SHOTS = {1280: "dashboard-demo.png"}
# Host mode (the host agent serves the page): the Plan and History cards on their own.
CARD_SHOTS = {1280: {"plan": "dashboard-host-plan.png", "history": "dashboard-host-history.png"},
              360: {"plan": "dashboard-host-plan-360.png"}}
# Long enough for the page to be complete and the fonts settled.
RENDER_TIMEOUT_MS = 15_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"directory (default {OUT})")
    parser.add_argument("--dark", action="store_true", help="the dark colour scheme")
    parser.add_argument("--url", default=None,
                        help="photograph this running dashboard (loopback only) instead")
    args = parser.parse_args(argv)
    scheme = "dark" if args.dark else "light"
    if args.url is not None:
        if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            parser.error("--url must be a loopback address")
        return run(lambda: photograph(args.url, URL_SHOTS, args.out, scheme))
    return run(lambda: shoot(args.out, scheme))


async def shoot(out: Path, scheme: str) -> int:
    children = Children()
    site = DashboardSite()
    try:
        proc = site.start(children)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/data/pi.json", procs=(proc,), log=site.log)

            async def heartbeat_published() -> bool:
                async with session.get(site.api + "/data/host.json") as response:
                    return (await response.json()).get("last_heartbeat") is not None

            await wait_for("a heartbeat in host.json", heartbeat_published, procs=(proc,),
                           log=site.log)
        await photograph(site.api + "/", SHOTS, out, scheme)
        host = site.start_host(children)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.host + "/api/v1/health", procs=(host,), log=site.host_log)
        await photograph(site.host + "/", {}, out, scheme, cards=CARD_SHOTS)
    finally:
        children.stop_all()
        site.remove()
    return 0


async def photograph(url: str, shots: dict[int, str], out: Path, scheme: str,
                     cards: dict[int, dict[str, str]] | None = None) -> int:
    """Full-page screenshots of ``url`` once it has rendered completely, one per width;
    ``cards``: width → {card: file}, those cards alone."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - a test extra

    out.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            for width in sorted({*shots, *(cards or {})}, reverse=True):
                context = await browser.new_context(
                    viewport={"width": width, "height": 800}, color_scheme=scheme,
                    locale="en-GB", timezone_id="UTC")
                page = await context.new_page()
                await page.goto(url)
                await page.wait_for_selector("html[data-rendered=complete]",
                                             timeout=RENDER_TIMEOUT_MS)
                await page.wait_for_timeout(300)
                files = [(out / shots[width], page.screenshot(full_page=True))] \
                    if width in shots else []
                files += [(out / name, page.locator(f"#card-{card}").screenshot())
                          for card, name in (cards or {}).get(width, {}).items()]
                for path, taking in files:
                    path.write_bytes(await taking)
                    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
                await context.close()
        finally:
            await browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
