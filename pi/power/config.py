"""The ``[power]`` section: Tapo plugs reached by address, history retention, diagnosis thresholds.

Kept light (no python-kasa import): ``edgepair check-config`` and the api daemon import it.
"""


import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from handshake.errors import ConfigError
from handshake.util.configfile import is_ip
from handshake.util.schema import Check, Section

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _is_name(value: str) -> bool:
    return bool(_NAME_RE.match(value))


def _is_address(value: str) -> bool:
    return is_ip(value) or bool(_HOSTNAME_RE.match(value))


class PlugConfig(Section, frozen=True, kw_only=True):
    name: Annotated[str, Check(_is_name, "a short name of letters, digits, '-', '_' or '.' "
                                         "(≤ 32 characters)"), Meta(description="shown on the dashboard")]
    address: Annotated[str, Check(_is_address, "an IP address or host name"),
                       Meta(description="reached by address: no discovery broadcast")]
    port: Annotated[int | None, Meta(ge=1, le=65535, description="emulated plugs only")] = None
    encryption: Annotated[Literal["klap", "aes"], Meta(
        description="klap, or aes for older P110 firmware")] = "klap"
    role: Annotated[Literal["host", "other"], Meta(
        description="host: feeds the host's hung/off diagnosis")] = "other"
    interval_s: Annotated[float, Meta(ge=0.05, le=3600, description="poll period")] = 5.0


class PowerConfig(Section, frozen=True, kw_only=True):
    plugs: Annotated[tuple[PlugConfig, ...], Meta(description="the plugs, at least one")] = ()
    commit_interval_s: Annotated[float, Meta(
        ge=0.05, le=3600, description="samples reach sqlite at most this often (SD wear)")] = 60.0
    raw_retention_days: Annotated[int, Meta(ge=1, le=3650, description="raw samples kept")] = 14
    minute_retention_days: Annotated[int, Meta(
        ge=1, le=36500, description="1-minute aggregates kept")] = 400
    publish_interval_s: Annotated[float, Meta(ge=0.05, le=3600,
                                              description="power.json refresh period")] = 10.0
    update_timeout_s: Annotated[float, Meta(ge=0.05, le=600,
                                            description="one plug update's deadline")] = 10.0
    max_backoff_s: Annotated[float, Meta(ge=0.05, le=86400,
                                         description="a failing plug is retried at least this often")] = 60.0
    hung_min_w: Annotated[float, Meta(ge=0, le=100_000,
                                      description="host plug above this while lost: hung")] = 15.0
    off_max_w: Annotated[float, Meta(ge=0, le=100_000,
                                     description="host plug below this: off")] = 5.0
    database: Annotated[Path | None, Meta(description="default: private/power.sqlite")] = None

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.plugs:
            yield ("plugs", "expected at least one [[power.plugs]] table")
        names = [p.name for p in self.plugs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            yield ("plugs", f"plug name {name!r} is used more than once")
        if sum(p.role == "host" for p in self.plugs) > 1:
            yield ("plugs", "at most one plug may have role = \"host\"")
        if self.off_max_w > self.hung_min_w:
            yield ("off_max_w", f"expected a value ≤ hung_min_w ({self.hung_min_w}), "
                   f"got {self.off_max_w}")
        if self.minute_retention_days <= self.raw_retention_days:
            # a day's total is summed from its minutes while its raw samples may still arrive
            yield ("minute_retention_days", f"expected more than raw_retention_days "
                   f"({self.raw_retention_days}), got {self.minute_retention_days}")

    def host_plug(self) -> PlugConfig | None:
        """The plug that feeds the host's power diagnosis, if one has role ``host``."""
        return next((p for p in self.plugs if p.role == "host"), None)

    def plug(self, name: str) -> PlugConfig | None:
        return next((p for p in self.plugs if p.name == name), None)


def credentials(username: str | None, password: str | None, secrets_file: Path) -> tuple[str, str]:
    """The Tapo account from the secrets file, or a ConfigError saying what to add where."""
    missing = [k for k, v in (("tapo_username", username), ("tapo_password", password)) if not v]
    if missing:
        raise ConfigError([f"{secrets_file}: {key}: required by [power] (the Tapo app account "
                           f"the plugs belong to)" for key in missing])
    assert username is not None
    assert password is not None
    return username, password
