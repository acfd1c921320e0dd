"""The host agent's configuration: TOML parsed once into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from handshake.configfile import (
    Problems,
    Secrets,
    Section,
    is_url,
    load_secrets,
    load_toml,
    parse_hostport,
    resolve,
)


@dataclass(frozen=True, slots=True)
class HostAgentSection:
    listen: tuple[str, int]
    state_dir: Path
    secrets_file: Path
    max_body_bytes: int = 4 * 1024 * 1024


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
    # Sections owned by later features (inbox receiver, planner), kept until they parse them.
    extra: dict[str, object] = field(default_factory=dict)

    def secrets(self) -> Secrets:
        return load_secrets(self.host.secrets_file)


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

    extra: dict[str, object] = {name: root.data[name] for name in ("inbox", "planner") if name in root.data}
    root.seen.update(extra)
    root.done()
    problems.raise_if_any()
    return HostConfig(file=path, host=host, pi=pi, snapshot=snapshot, extra=extra)
