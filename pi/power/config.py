"""The ``[power]`` section: Tapo plugs reached by address, history retention, diagnosis thresholds.

Kept light (no python-kasa import): ``edgepair check-config`` and the api daemon import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from handshake.configfile import Section, is_ip, resolve
from handshake.errors import ConfigError

ENCRYPTIONS = ("klap", "aes")
ROLES = ("host", "other")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class PlugConfig:
    name: str
    address: str
    port: int | None = None
    encryption: str = "klap"
    role: str = "other"
    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class PowerConfig:
    plugs: tuple[PlugConfig, ...]
    commit_interval_s: float = 60.0
    raw_retention_days: int = 14
    minute_retention_days: int = 400
    publish_interval_s: float = 10.0
    update_timeout_s: float = 10.0
    max_backoff_s: float = 60.0
    hung_min_w: float = 15.0
    off_max_w: float = 5.0
    database: Path | None = None

    def host_plug(self) -> PlugConfig | None:
        """The plug that feeds the host's power diagnosis, if one has role ``host``."""
        return next((p for p in self.plugs if p.role == "host"), None)

    def plug(self, name: str) -> PlugConfig | None:
        return next((p for p in self.plugs if p.name == name), None)


def parse(section: Section, file: Path) -> PowerConfig:
    """Read ``[power]`` and its ``[[power.plugs]]``; problems go to the section's collector."""
    plugs: list[PlugConfig] = []
    for entry in section.table_list("plugs"):
        plug = _plug(entry)
        entry.done()
        if plug is not None:
            plugs.append(plug)
    if not plugs and not section.problems.items:
        section.problems.add(section.key("plugs"), "expected at least one [[power.plugs]] table")
    names = [p.name for p in plugs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        section.problems.add(section.key("plugs"), f"plug name {name!r} is used more than once")
    if sum(p.role == "host" for p in plugs) > 1:
        section.problems.add(section.key("plugs"), "at most one plug may have role = \"host\"")
    database = section.text("database", None)
    config = PowerConfig(
        plugs=tuple(plugs),
        commit_interval_s=section.number("commit_interval_s", 60.0, lo=0.05, hi=3600),
        raw_retention_days=section.integer("raw_retention_days", 14, lo=1, hi=3650),
        minute_retention_days=section.integer("minute_retention_days", 400, lo=1, hi=36500),
        publish_interval_s=section.number("publish_interval_s", 10.0, lo=0.05, hi=3600),
        update_timeout_s=section.number("update_timeout_s", 10.0, lo=0.05, hi=600),
        max_backoff_s=section.number("max_backoff_s", 60.0, lo=0.05, hi=86400),
        hung_min_w=section.number("hung_min_w", 15.0, lo=0, hi=100_000),
        off_max_w=section.number("off_max_w", 5.0, lo=0, hi=100_000),
        database=resolve(file, database) if isinstance(database, str) else None,
    )
    if (isinstance(config.off_max_w, float) and isinstance(config.hung_min_w, float)
            and config.off_max_w > config.hung_min_w):
        section.problems.add(section.key("off_max_w"),
                             f"expected a value ≤ hung_min_w ({config.hung_min_w}), "
                             f"got {config.off_max_w}")
    if (isinstance(config.raw_retention_days, int) and isinstance(config.minute_retention_days, int)
            and config.minute_retention_days <= config.raw_retention_days):
        # a day's total is summed from its minutes while its raw samples may still arrive
        section.problems.add(section.key("minute_retention_days"),
                             f"expected more than raw_retention_days ({config.raw_retention_days}), "
                             f"got {config.minute_retention_days}")
    section.done()
    return config


def credentials(username: str | None, password: str | None, secrets_file: Path) -> tuple[str, str]:
    """The Tapo account from the secrets file, or a ConfigError saying what to add where."""
    missing = [k for k, v in (("tapo_username", username), ("tapo_password", password)) if not v]
    if missing:
        raise ConfigError([f"{secrets_file}: {key}: required by [power] (the Tapo app account "
                           f"the plugs belong to)" for key in missing])
    assert username is not None
    assert password is not None
    return username, password


def _plug(s: Section) -> PlugConfig | None:
    name = s.check("name", s.text("name"), lambda v: bool(_NAME_RE.match(v)),
                   "a short name of letters, digits, '-', '_' or '.' (≤ 32 characters)")
    address = s.check("address", s.text("address"),
                      lambda v: is_ip(v) or bool(_HOSTNAME_RE.match(v)), "an IP address or host name")
    port = s.integer("port", None, lo=1, hi=65535)
    encryption = s.text("encryption", "klap", choices=ENCRYPTIONS)
    role = s.text("role", "other", choices=ROLES)
    interval = s.number("interval_s", 5.0, lo=0.05, hi=3600)
    if not all(isinstance(v, str) for v in (name, address, encryption, role)):
        return None
    return PlugConfig(name=name, address=address, port=port, encryption=encryption, role=role,
                      interval_s=interval)

