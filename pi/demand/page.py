"""The "waking <name>…" page a demand HTTP port answers, and its tiny HTTP/1.1 framing."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

# The page asks this (same origin: no CORS) once a second until the host is up.
STATUS_PATH = "/.well-known/edgepair/waking"
# A request line and headers beyond this are not a browser's: the connection is closed.
MAX_REQUEST_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # the path and query as sent ("/" when it is not a path)


def parse_request(head: bytes) -> Request | None:
    """The request line of an HTTP/1.x request head; None when it is not one."""
    line = head.split(b"\r\n", 1)[0]
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if not version.startswith("HTTP/1.") or not method.isalpha():
        return None
    return Request(method.upper(), target if target.startswith("/") else "/")


def host_url(host_address: str, port: int, target: str) -> str:
    """Where the browser goes once the host is up: the host's address, same port and path."""
    netloc = f"[{host_address}]" if ":" in host_address else host_address
    default = 80
    return f"http://{netloc}{'' if port == default else f':{port}'}{target}"


def response(status: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    """One complete HTTP/1.1 response; the connection closes after it."""
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            f"Connection: close\r\n{extra}\r\n")
    return head.encode("ascii") + body


def status_json(state: str, url: str | None) -> bytes:
    body = json.dumps({"state": state, "url": url}).encode()
    return response("200 OK", body, "application/json")


def redirect(url: str) -> bytes:
    return response("307 Temporary Redirect", b"", "text/plain", f"Location: {url}\r\n")


def waking_page(name: str, state: str, boot_timeout_s: float) -> bytes:
    """503 with Retry-After: the name is on its way; the script follows it and moves on."""
    shown = html.escape(name)
    body = _PAGE.format(name=shown, state=html.escape(state), status=STATUS_PATH,
                        timeout=int(boot_timeout_s)).encode()
    return response("503 Service Unavailable", body, "text/html; charset=utf-8",
                    "Retry-After: 5\r\n")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Waking {name}…</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:15vh auto;max-width:32em;
padding:0 1em;color:#222}}h1{{font-size:1.4em}}#state{{color:#666}}</style>
</head><body>
<h1 id="title">Waking {name}…</h1>
<p>It was asleep to save energy. This page follows it and takes you on once it is up
(usually within {timeout} s).</p>
<p id="state">state: {state}</p>
<script>
"use strict";
const started = Date.now();
async function poll() {{
  try {{
    const r = await fetch("{status}", {{cache: "no-store"}});
    const s = await r.json();
    document.getElementById("state").textContent = "state: " + s.state;
    if (s.state === "online" && s.url) {{ location.replace(s.url); return; }}
  }} catch (e) {{
    document.getElementById("state").textContent = "state: unknown (" + e + ")";
  }}
  if ((Date.now() - started) / 1000 > {timeout} * 2) {{
    document.getElementById("title").textContent = "{name} did not wake up";
    return;
  }}
  setTimeout(poll, 1000);
}}
poll();
</script>
</body></html>
"""
