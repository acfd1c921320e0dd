#!/usr/bin/env python3
"""Benchmark the dashboard's first load: bytes transferred, time to the first complete render.

The real Pi api daemon serves ``frontend-dist`` (the embedded default) with demo-like
fixture files (three plugs with 24 h series and 30 days, inbox, Pi-hole, energy control,
a snapshot). Debian's Chromium, headless and driven by Playwright, opens the page in a
fresh browser context each time (empty cache; api daemon and nginx loads interleaved) and
waits for ``<html data-rendered="complete">``: every card shows its data, or why it has
none. The page records ``performance.now()`` then (milliseconds since navigation start).

Bytes are Resource Timing's ``transferSize`` (headers + body as sent) of the document and
every resource up to that moment: straight from the api daemon, which does not compress,
and through the shipped nginx config (gzip on), when Debian's nginx is installed.

    .venv/bin/python scripts/bench/dashboard_load.py [--loads 20] [--quick] [--json]

Host mode (``--host``, and in the default run): the host agent serves the page and the
Pi's files come across origins from the api daemon; the page has the Plan and History
views too. Neither server compresses there, so its gzip figure is each response's body
as fetched, gzip-compressed at level 6 (what nginx's ``gzip on`` would send, ±headers).

Everything runs on 127.0.0.1; the daemon, nginx and Chromium are stopped on exit.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
from typing import Any

import aiohttp
from _common import Children, emit_json, machine, machine_line, run, summary, wait_http
from dashboard_site import CHROMIUM, CHROMIUM_ARGS, NGINX, DashboardSite, Nginx

TARGET_BYTES = 150_000  # uncompressed first load (1 KB = 1000 bytes)
TARGET_GZIP_BYTES = 60_000  # the same through nginx with gzip
TARGET_RENDER_MS = 300.0  # median time to the first complete render, api daemon, loopback
TARGET_HOST_GZIP_BYTES = 60_000  # host mode's first load, every response gzip-compressed
TARGET_HOST_RENDER_MS = 300.0  # host mode: median time to the first complete render
GZIP_LEVEL = 6
# A load that has not rendered by then is broken, not slow.
RENDER_TIMEOUT_MS = 15_000
QUICK_LOADS = 5

_COLLECT = """() => {
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {
    rendered_ms: window.edgepairRenderedMs,
    resources: entries.map((e) => ({
      name: new URL(e.name).pathname, url: e.name, transfer: e.transferSize,
      encoded: e.encodedBodySize, decoded: e.decodedBodySize})),
  };
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20,
                        help="page loads per server, each in a fresh context (default 20)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_LOADS} loads per server")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    loads = QUICK_LOADS if args.quick else max(1, args.loads)
    return run(lambda: bench(loads, args.json))


async def bench(loads: int, as_json: bool) -> int:
    from playwright.async_api import async_playwright  # noqa: PLC0415 - a test extra

    children = Children()
    site = DashboardSite()
    nginx = Nginx(site) if os.path.exists(NGINX) else None
    start_load = machine()
    try:
        proc = site.start(children)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.api + "/data/pi.json", procs=(proc,), log=site.log)
        host = site.start_host(children)
        async with aiohttp.ClientSession() as session:
            await wait_http(session, site.host + "/api/v1/health", procs=(host,), log=site.host_log)
        if nginx is not None:
            nginx.start()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS)
            try:
                await _load(browser, site.api)  # warm up the daemon and Chromium once
                direct: list[dict[str, Any]] = []
                proxied: list[dict[str, Any]] = []
                hosted: list[dict[str, Any]] = []
                await _load(browser, site.host)
                for _ in range(loads):  # interleaved: all see the same machine load
                    direct.append(await _load(browser, site.api))
                    if nginx is not None:
                        proxied.append(await _load(browser, nginx.url))
                    hosted.append(await _load(browser, site.host))
            finally:
                await browser.close()
        host_gzip = await _gzip_bytes(hosted[0])
    finally:
        if nginx is not None:
            nginx.stop()
        children.stop_all()
        site.remove()
    result = _figures(direct, proxied, loads, start_load)
    _host_figures(result, hosted, host_gzip)
    if as_json:
        emit_json(result["figures"], result["targets"])
    else:
        _print(result)
    return 0 if all(t.passed for t in result["targets"]) else 1


async def _load(browser: Any, url: str) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        await page.goto(url + "/")
        await page.wait_for_selector("html[data-rendered=complete]", timeout=RENDER_TIMEOUT_MS)
        got: dict[str, Any] = await page.evaluate(_COLLECT)
        return got
    finally:
        await context.close()


async def _gzip_bytes(load: dict[str, Any]) -> dict[str, int]:
    """The host-mode first load's responses again, each body gzip-compressed (level 6)."""
    out = {"requests": 0, "decoded": 0, "gzip": 0}
    async with aiohttp.ClientSession() as session:
        for r in load["resources"]:
            async with session.get(r["url"]) as answer:
                body = await answer.read()
            out["requests"] += 1
            out["decoded"] += len(body)
            out["gzip"] += len(gzip.compress(body, compresslevel=GZIP_LEVEL))
    return out


def _host_figures(result: dict[str, Any], hosted: list[dict[str, Any]],
                  gz: dict[str, int]) -> None:
    from _common import Target  # noqa: PLC0415

    render = [h["rendered_ms"] for h in hosted]
    result["figures"]["host_mode"] = {**_totals(hosted[0]), "gzip": gz["gzip"],
                                      "render_ms": summary(render, digits=1)}
    result["targets"] += [
        Target("host mode first load bytes (every response gzip -6)", gz["gzip"],
               TARGET_HOST_GZIP_BYTES, "B"),
        Target("host mode median time to complete render (host agent)",
               round(statistics.median(render), 1), TARGET_HOST_RENDER_MS, "ms", strict=True)]


def _totals(load: dict[str, Any]) -> dict[str, int]:
    resources = load["resources"]
    static = [r for r in resources if not r["name"].startswith(("/data/", "/api/"))]
    return {"transfer": sum(r["transfer"] for r in resources),
            "decoded": sum(r["decoded"] for r in resources),
            "static_decoded": sum(r["decoded"] for r in static),
            "requests": len(resources)}


def _figures(direct: list[dict[str, Any]], proxied: list[dict[str, Any]], loads: int,
             start_load: dict[str, Any]) -> dict[str, Any]:
    from _common import Target  # noqa: PLC0415

    first = _totals(direct[0])
    render = [d["rendered_ms"] for d in direct]
    figures: dict[str, Any] = {
        "loads": loads,
        "machine": start_load,
        "direct": {**first, "render_ms": summary(render, digits=1),
                   "resources": [(r["name"], r["transfer"]) for r in direct[0]["resources"]]},
    }
    targets = [Target("first load bytes (api daemon, uncompressed)", first["transfer"],
                      TARGET_BYTES, "B"),
               Target("median time to complete render (api daemon)",
                      round(statistics.median(render), 1), TARGET_RENDER_MS, "ms", strict=True)]
    if proxied:
        via = _totals(proxied[0])
        figures["nginx"] = {**via, "render_ms": summary([p["rendered_ms"] for p in proxied],
                                                        digits=1)}
        targets.insert(1, Target("first load bytes (nginx, gzip)", via["transfer"],
                                 TARGET_GZIP_BYTES, "B"))
    return {"figures": figures, "targets": targets}


def _print(result: dict[str, Any]) -> None:
    f = result["figures"]
    d = f["direct"]
    print(f"dashboard first load, {f['loads']} loads per server, fresh browser context each "
          "(Chromium headless, loopback)")
    print(machine_line(f["machine"]))
    print(f"  api daemon {d['requests']} requests, {d['transfer']:,} B transferred "
          f"(content {d['decoded']:,} B, of which page {d['static_decoded']:,} B)")
    if "nginx" in f:
        n = f["nginx"]
        print(f"  nginx gzip {n['requests']} requests, {n['transfer']:,} B transferred")
    r = d["render_ms"]
    print(f"  render     api daemon: median {r['median']} ms, p95 {r['p95']} ms, "
          f"min {r['min']} ms, max {r['max']} ms")
    if "nginx" in f:
        r = f["nginx"]["render_ms"]
        print(f"             nginx:      median {r['median']} ms, p95 {r['p95']} ms, "
              f"min {r['min']} ms, max {r['max']} ms")
    if "host_mode" in f:
        m = f["host_mode"]
        r = m["render_ms"]
        print(f"  host mode  {m['requests']} requests, {m['transfer']:,} B transferred, "
              f"{m['gzip']:,} B gzip -6 (content {m['decoded']:,} B)")
        print(f"             render median {r['median']} ms, p95 {r['p95']} ms, "
              f"min {r['min']} ms, max {r['max']} ms")
    for target in result["targets"]:
        print(f"  target     {target.line()}")


if __name__ == "__main__":
    sys.exit(main())
