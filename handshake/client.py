"""Async handshake client used by the host agent and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from handshake.auth import sign
from handshake.errors import PeerUnavailable, RequestError

log = logging.getLogger(__name__)

# One request on a LAN answers in milliseconds; 10 s covers a busy Pi writing to its SD card.
REQUEST_TIMEOUT_S = 10.0
# Retry backoff: 0.5, 1, 2, 4 … capped so a notify still fits in its overall deadline.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 5.0


class HandshakeClient:
    """Signs each request over the exact bytes it sends and parses JSON answers."""

    def __init__(self, base_url: str, key: bytes | None,
                 session: aiohttp.ClientSession | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._prefix = urlsplit(self.base_url).path
        self.key = key
        self.timeout_s = timeout_s
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> HandshakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(self, method: str, path: str, body: Any = None, *,
                      raw: bytes | None = None, headers: dict[str, str] | None = None,
                      signed: bool = True) -> Any:
        """Send one request; RequestError for an error answer, PeerUnavailable if unreachable.

        ``path`` must already be percent-encoded: it is signed and sent byte for byte.
        """
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = dict(headers or {})
        if data and raw is None:
            hdrs["Content-Type"] = "application/json"
        if signed:
            if self.key is None:
                raise ValueError("a signed request needs the handshake key")
            hdrs["Authorization"] = sign(self.key, method, self._prefix + path, data, hdrs)
        return await self._send(method, path, data, hdrs,
                                aiohttp.ClientTimeout(total=self.timeout_s))

    async def stream(self, method: str, path: str, body: AsyncIterable[bytes] | bytes, *,
                     content_sha256: str, content_length: int,
                     read_timeout_s: float | None = None) -> Any:
        """Send a streamed body under a signature that covers its ``X-Content-SHA256``.

        The body itself is not signed (``sha256(b"")`` stands in for its hash, see
        ``handshake.http.verify_headers_only``): the receiver checks the signature before
        reading and the body against ``content_sha256`` after. No total timeout (a large
        body takes what it takes); ``read_timeout_s`` (default: this client's timeout)
        bounds the wait for the answer once the body is sent.
        """
        if self.key is None:
            raise ValueError("a signed request needs the handshake key")
        hdrs = {"X-Content-SHA256": content_sha256, "Content-Length": str(content_length),
                "Content-Type": "application/octet-stream"}
        hdrs["Authorization"] = sign(self.key, method, self._prefix + path, b"",
                                     {"x-content-sha256": content_sha256})
        return await self._send(method, path, body, hdrs, aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout_s, sock_read=read_timeout_s or self.timeout_s))

    async def _send(self, method: str, path: str, data: Any, hdrs: dict[str, str],
                    client_timeout: aiohttp.ClientTimeout) -> Any:
        try:
            async with self._get_session().request(method, URL(self.base_url + path, encoded=True),
                                                   data=data,
                                                   headers=hdrs,
                                                   timeout=client_timeout) as resp:
                text = await resp.read()
                try:
                    answer = json.loads(text) if text else None
                except ValueError:
                    answer = None
                if resp.status >= 400:
                    err = answer.get("error", {}) if isinstance(answer, dict) else {}
                    raise RequestError(resp.status, str(err.get("code", resp.reason)),
                                       str(err.get("message", text[:200].decode(errors="replace"))))
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerUnavailable(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc

    async def request_with_retry(self, method: str, path: str, body: Any = None, *,
                                 deadline_s: float,
                                 sleep: Callable[[float], Any] = asyncio.sleep) -> Any:
        """Retry temporary failures with capped backoff until ``deadline_s`` has passed."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        attempt = 0
        while True:
            try:
                return await self.request(method, path, body)
            except (PeerUnavailable, RequestError) as exc:
                if isinstance(exc, RequestError) and not exc.temporary:
                    raise
                delay = min(BACKOFF_BASE_S * 2 ** attempt, BACKOFF_MAX_S)
                attempt += 1
                if loop.time() + delay >= end:
                    raise
                log.log(logging.WARNING if attempt == 1 else logging.DEBUG,
                        "%s %s failed (%s); retrying in %.1f s", method, path, exc, delay)
                await sleep(delay)
