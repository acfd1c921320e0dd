"""The dashboard's files as both daemons serve them: real files only, JSON errors, 405s."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from handshake.http import add_frontend, make_app


async def _serve(tmp_path: Path, aiohttp_server: Any) -> tuple[str, Path]:
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>edgepair</title>")
    (site / "js" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", site / "link.txt")
    (site / ".hidden").write_text("dot file")
    app = make_app(1024, None)

    async def wake(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_post("/api/v1/wake", wake)
    add_frontend(app, site)
    server = await aiohttp_server(app)
    return str(server.make_url("")), site


async def test_real_files_are_served_and_nothing_else(tmp_path: Path, aiohttp_server: Any) -> None:
    base, _ = await _serve(tmp_path, aiohttp_server)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/") as r:
            assert r.status == 200
            assert "<title>edgepair</title>" in await r.text()
            assert r.headers["Cache-Control"] == "no-cache"
        async with s.get(f"{base}/js/app.js") as r:
            assert r.status == 200
            assert await r.text() == "console.log(1)"
        for path in ("/nope.js", "/link.txt", "/.hidden", "/js/../../secret.txt",
                     "/js/%2e%2e/%2e%2e/secret.txt", "/js/"):
            async with s.get(f"{base}{path}") as r:
                assert r.status == 404, path
                body = await r.json()  # a JSON error, not an empty body
                assert body["error"]["code"] == "not_found", path


async def test_a_wrong_method_on_the_api_is_405_not_a_missing_file(
        tmp_path: Path, aiohttp_server: Any) -> None:
    base, _ = await _serve(tmp_path, aiohttp_server)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/api/v1/wake") as r:
            assert r.status == 405
            assert r.headers["Allow"] == "POST"
            assert (await r.json())["error"]["code"] == "method_not_allowed"
        async with s.get(f"{base}/api/v1/nothing") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
