"""The shipped nginx config, run by the real nginx on 127.0.0.1 against frontend-dist."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e import ROOT
from tests.fixtures import dashboard as fixtures
from tests.helpers import free_port

NGINX = "/usr/sbin/nginx"
TEMPLATE = ROOT / "scripts" / "nginx" / "edgepair.conf"
Serve = Callable[[web.Application], Awaitable[TestServer]]


def render(template: str, port: int, public: Path, api_port: int) -> str:
    """The shipped server block with this test's port, directories and api daemon."""
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("listen [::]:80;", ""),
        ("root /opt/edgepair/frontend-dist;", f"root {ROOT / 'frontend-dist'};"),
        ("alias /var/lib/edgepair/public/$1;", f"alias {public}/$1;"),
        ("proxy_pass http://127.0.0.1:8770;", f"proxy_pass http://127.0.0.1:{api_port};"),
    ]
    for old, new in replacements:
        assert template.count(old) == 1, f"the template no longer has {old!r}"
        template = template.replace(old, new)
    return template


def main_conf(prefix: Path, server: Path) -> str:
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the test's 0700 dirs
    temp = "\n".join(f"  {kind}_temp_path {prefix / 'tmp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
{user}
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
{temp}
  include {server};
}}
"""


async def test_nginx_serves_the_dashboard_the_files_and_proxies_the_api(
        tmp_path: Path, aiohttp_server: Serve) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": "stub", "path": request.path_qs})

    api = web.Application()
    api.router.add_get("/api/v1/health", health)
    api_server = await aiohttp_server(api)
    public = tmp_path / "public"
    fixtures.write(public, ("power", "pihole"))
    (tmp_path / "secret.json").write_text('{"secret": true}')
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / kind).mkdir(parents=True)
    port = free_port()
    server = tmp_path / "edgepair.conf"
    server.write_text(render(TEMPLATE.read_text(), port, public, api_server.port))
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_conf(tmp_path, server))
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr",
                             "-g", "daemon off;"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            await _wait(session, base + "/", proc)

            async def get(path: str) -> tuple[int, dict[str, str], bytes]:
                async with session.get(base + path, headers={"Accept-Encoding": "gzip"}) as r:
                    return r.status, dict(r.headers), await r.read()

            status, headers, body = await get("/")
            assert status == 200
            assert headers["Content-Type"].startswith("text/html")
            assert headers["Cache-Control"] == "no-cache"
            assert "default-src 'self'" in headers["Content-Security-Policy"]
            assert b'<script type="module" src="js/main.js">' in _plain(headers, body)

            status, headers, body = await get("/js/main.js")
            assert status == 200
            assert headers["Content-Encoding"] == "gzip"
            assert _plain(headers, body) == (ROOT / "frontend-dist/js/main.js").read_bytes()

            status, headers, body = await get("/data/power.json")
            assert status == 200
            assert headers["Content-Type"] == "application/json"
            assert headers["Content-Encoding"] == "gzip"
            assert headers["Access-Control-Allow-Origin"] == "*"
            assert headers["Access-Control-Expose-Headers"] == "Date"
            assert headers["Cache-Control"] == "no-cache"
            assert _plain(headers, body) == (public / "power.json").read_bytes()
            assert len(body) < len(_plain(headers, body)) / 4  # 1440 samples compress well

            status, headers, _ = await get("/data/control.json")
            assert status == 404
            assert headers["Access-Control-Allow-Origin"] == "*"  # a 404 the other origin can read
            for path in ("/data/../secret.json", "/data/%2e%2e/secret.json", "/data/sub/x.json",
                         "/data/Power.json", "/secret.json"):
                status, _, body = await get(path)
                assert status in (400, 404), path
                assert b"secret" not in body, path

            status, _, body = await get("/api/v1/health?x=1")
            assert status == 200
            assert b'"version": "stub"' in body
            assert b'"path": "/api/v1/health?x=1"' in body  # passed on unchanged (signatures)
            _, _, favicon = await get("/favicon.ico")
            assert favicon == (ROOT / "frontend-dist/favicon.ico").read_bytes()
    finally:
        proc.terminate()
        output = await asyncio.to_thread(proc.communicate, timeout=10)
    assert proc.returncode == 0, output[0].decode(errors="replace")


def _plain(headers: dict[str, str], body: bytes) -> bytes:
    return gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body


async def _wait(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 10
    while True:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            raise AssertionError(f"nginx did not come up: {out}")
        await asyncio.sleep(0.05)
