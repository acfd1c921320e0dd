"""The host agent's configuration: TOML parsed once into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handshake.configfile import (
    Problems,
    Secrets,
    Section,
    is_url,
    load_secrets,
    load_toml,
    parse_hostport,
    parse_sections,
    resolve,
)


@dataclass(frozen=True, slots=True)
class HostAgentSection:
    listen: tuple[str, int]
    state_dir: Path
    secrets_file: Path
    max_body_bytes: int = 4 * 1024 * 1024
    frontend_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class PiLink:
    url: str
    notify_deadline_s: float = 30.0


@dataclass(frozen=True, slots=True)
class SnapshotSection:
    volumes: tuple[str, ...] = ("/",)
    units: tuple[str, ...] = ()
    backup_marker: Path | None = None


@dataclass(frozen=True, slots=True)
class HostConfig:
    file: Path
    host: HostAgentSection
    pi: PiLink
    snapshot: SnapshotSection = field(default_factory=SnapshotSection)
    # Sections owned by other features, parsed by their modules (SECTION_PARSERS).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public_dir(self) -> Path:
        return self.host.state_dir / "public"

    def section(self, name: str) -> Any:
        """A parsed optional section (``inbox``, ``planner``) or None."""
        return self.extra.get(name)

    def secrets(self) -> Secrets:
        return load_secrets(self.host.secrets_file)


# Optional sections and the module whose ``parse(section, file) -> dataclass`` reads each.
SECTION_PARSERS = {"inbox": "host.inbox.config", "planner": "host.planner.config"}


def _opt_path(base: Path, value: Any) -> Path | None:
    return resolve(base, value) if isinstance(value, str) else None


def load(path: Path) -> HostConfig:
    """Parse and validate a host config file; ConfigError lists every problem."""
    data = load_toml(path)
    problems = Problems(path)
    root = Section(problems, "", data)

    s = root.sub("host")
    listen_text = s.text("listen", "0.0.0.0:8771")
    listen = parse_hostport(listen_text) if isinstance(listen_text, str) else None
    if listen is None:
        problems.add("host.listen", f"expected HOST:PORT like '0.0.0.0:8771', got {listen_text!r}")
        listen = ("0.0.0.0", 8771)
    host = HostAgentSection(
        listen=listen,
        state_dir=resolve(path, s.text("state_dir", "/var/lib/edgepair-host")),
        secrets_file=resolve(path, s.text("secrets_file", "/etc/edgepair/secrets.toml")),
        max_body_bytes=s.integer("max_body_bytes", 4 * 1024 * 1024, lo=1024),
        frontend_dir=_opt_path(path, s.text("frontend_dir", None)),
    )
    s.done()

    s = root.sub("pi")
    pi = PiLink(url=s.check("url", s.text("url"), is_url, "an http:// or https:// URL"),
                notify_deadline_s=s.number("notify_deadline_s", 30.0, lo=0.1, hi=600))
    s.done()

    s = root.sub("snapshot")
    marker = s.text("backup_marker", None)
    snapshot = SnapshotSection(
        volumes=s.texts("volumes", ("/",)),
        units=s.texts("units", ()),
        backup_marker=resolve(path, marker) if isinstance(marker, str) else None,
    )
    s.done()

    extra = parse_sections(root, path, SECTION_PARSERS)
    root.done()
    problems.raise_if_any()
    return HostConfig(file=path, host=host, pi=pi, snapshot=snapshot, extra=extra)
