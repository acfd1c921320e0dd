"""One error hierarchy for edgepair, split into temporary (retry) and fatal."""

from __future__ import annotations


class EdgepairError(Exception):
    """Base of every error edgepair raises on purpose."""


class TemporaryError(EdgepairError):
    """Worth retrying: a peer is down, slow or busy."""


class FatalError(EdgepairError):
    """Retrying will not help: bad config, bad credentials, a rejected request."""


class ConfigError(FatalError):
    """A configuration file is wrong; carries every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ValidationError(FatalError):
    """A message does not follow the handshake schema."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class AuthError(FatalError):
    """A request's signature is missing, wrong, stale or replayed."""


class RequestError(EdgepairError):
    """A peer answered a handshake request with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"HTTP {status} {code}: {message}")

    @property
    def temporary(self) -> bool:
        return self.status >= 500 or self.status == 429


class PeerUnavailable(TemporaryError):
    """A peer could not be reached in time."""
