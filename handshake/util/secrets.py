"""The secrets file: a TOML file only its owner may read; each side extends the type."""


import stat
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec

from handshake.errors import ConfigError
from handshake.util.configfile import load_toml
from handshake.util.schema import Parse, Section, decode

MIN_KEY_BYTES = 32
S = TypeVar("S", bound="Secrets")


def _key(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError(value)
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise ValueError("expected hex digits (from `edgepair keygen`)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"expected at least {MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex "
                         f"digits), got {len(key)} bytes")
    return key


class Secrets(Section, frozen=True, kw_only=True):
    """What both sides need: the shared handshake key."""

    handshake_key: Annotated[bytes, Parse(
        _key, f"at least {MIN_KEY_BYTES} bytes as {2 * MIN_KEY_BYTES} hex digits "
        "(from `edgepair keygen`)", "hex key"),
        msgspec.Meta(description="the HMAC key shared by host and Pi (`edgepair keygen`)")]


def load_secrets(path: Path, cls: type[S]) -> S:
    """Load the secrets TOML as ``cls``; refuse one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError([f"{path}: secrets file not found (create it with `edgepair keygen`)"]) from None
    problems: list[str] = []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Refused, but read on: check-config says everything that is wrong at once.
        problems.append(
            f"{path}: secrets file is readable by group or others (mode {stat.S_IMODE(mode):o}); "
            f"expected 600: run `chmod 600 {path}`")
    try:
        secrets = decode(cls, load_toml(path), path)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return secrets
