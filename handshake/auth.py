"""HMAC-SHA256 request signing: the signer signs the exact bytes it sends."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from handshake.errors import AuthError

SCHEME = "EdgePair"
# Clocks of the two sides may drift; NTP keeps them far closer than this.
WINDOW_S = 30
# Bounded memory for the replay cache: far above any honest request rate over the window.
NONCE_CACHE_MAX = 10_000
# Headers covered by the signature besides the canonical string (lower case).
SIGNED_HEADERS = ("x-content-sha256",)

_HEADER_RE = re.compile(
    r"^EdgePair ts=(?P<ts>\d{1,12}), nonce=(?P<nonce>[0-9a-f]{16,64}), sig=(?P<sig>[0-9a-f]{64})$"
)


def canonical(method: str, path_qs: str, ts: int, nonce: str, body: bytes,
              headers: Mapping[str, str] | None = None) -> bytes:
    """METHOD \\n PATH?QUERY \\n ts \\n nonce \\n sha256hex(body) [\\n name:value ...]."""
    lines = [method.upper(), path_qs, str(ts), nonce, hashlib.sha256(body).hexdigest()]
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    lines.extend(f"{name}:{headers[name].strip()}" for name in SIGNED_HEADERS if name in headers)
    return "\n".join(lines).encode()


def sign(key: bytes, method: str, path_qs: str, body: bytes,
         headers: Mapping[str, str] | None = None,
         now: Callable[[], float] = time.time) -> str:
    """Return the Authorization header value for a request."""
    ts = int(now())
    nonce = secrets.token_hex(16)
    mac = hmac.new(key, canonical(method, path_qs, ts, nonce, body, headers), hashlib.sha256)
    return f"{SCHEME} ts={ts}, nonce={nonce}, sig={mac.hexdigest()}"


class NonceCache:
    """Remembers nonces for the window so a captured request cannot be replayed."""

    def __init__(self, window_s: float = WINDOW_S, max_size: int = NONCE_CACHE_MAX) -> None:
        self.window_s = window_s
        self.max_size = max_size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False when it was seen within the window."""
        horizon = now - 2 * self.window_s
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self.max_size:
            self._seen.popitem(last=False)
        self._seen[nonce] = now
        return True

    def to_json(self) -> dict[str, float]:
        """The nonces still inside the replay horizon (kept across a restart)."""
        return dict(self._seen)

    @classmethod
    def from_json(cls, data: object, now: float, window_s: float = WINDOW_S) -> NonceCache:
        """A cache from ``to_json``; ValueError when ``data`` is not one."""
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) for k, v in data.items()):
            raise ValueError("expected an object of nonce → time")
        cache = cls(window_s)
        for nonce, seen in sorted(data.items(), key=lambda item: item[1]):
            if seen >= now - 2 * window_s:
                cache._seen[nonce] = float(seen)
        return cache


class Verifier:
    """Checks signed requests; raises AuthError with a reason that is safe to show."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time,
                 window_s: float = WINDOW_S, *, nonces: NonceCache | None = None,
                 not_before: float | None = None) -> None:
        """``nonces``: the replay cache kept over a clean restart. ``not_before``: without
        it (a crash), requests signed before this start might be replays: refused."""
        self.key = key
        self.clock = clock
        self.window_s = window_s
        self.nonces = nonces or NonceCache(window_s)
        self.not_before = not_before

    def verify(self, header: str | None, method: str, path_qs: str, body: bytes,
               headers: Mapping[str, str] | None = None) -> None:
        if not header:
            raise AuthError("missing Authorization header (expected 'EdgePair ts=…, nonce=…, sig=…')")
        match = _HEADER_RE.match(header.strip())
        if match is None:
            raise AuthError("malformed Authorization header (expected 'EdgePair ts=…, nonce=…, sig=…')")
        ts, nonce, sig = int(match["ts"]), match["nonce"], match["sig"]
        now = self.clock()
        if abs(now - ts) > self.window_s:
            raise AuthError(f"timestamp outside the ±{self.window_s:.0f} s window "
                            f"(off by {now - ts:+.0f} s): check both clocks")
        expected = hmac.new(self.key, canonical(method, path_qs, ts, nonce, body, headers),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            raise AuthError("bad signature (wrong key, or the request was altered)")
        if self.not_before is not None and ts < self.not_before:
            raise AuthError("signed before this server started (its replay cache was lost "
                            "in a crash): send it again")
        if not self.nonces.add(nonce, now):
            raise AuthError("replayed request (nonce already used)")


def keygen() -> str:
    """A new handshake key: 32 random bytes as hex."""
    return secrets.token_hex(32)
