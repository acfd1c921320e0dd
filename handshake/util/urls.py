"""URLs from listen addresses: one place that knows IPv6 literals need brackets."""

from __future__ import annotations

# A daemon listening on a wildcard is reached, from the same machine, over loopback.
_LOOPBACK_FOR = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def http_url(host: str, port: int) -> str:
    """``http://host:port`` (``http://[::1]:8770`` for an IPv6 literal)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def local_url(listen: tuple[str, int]) -> str:
    """The URL a client on the same machine uses for a daemon listening on ``listen``."""
    host, port = listen
    return http_url(_LOOPBACK_FOR.get(host, host), port)
