"""The host agent's configuration: one declarative schema (msgspec Structs), parsed once."""


from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, ClassVar

from msgspec import Meta, field

from handshake import connlimits
from handshake.util.configfile import load_toml
from handshake.util.schema import HostPort, Listen, Section, Url, decode
from handshake.util.secrets import Secrets, load_secrets
from host.backup.config import HostBackupConfig
from host.idle.config import IdleConfig
from host.inbox.config import HostInboxConfig
from host.planner.config import PlannerConfig


class HostSecrets(Secrets, frozen=True, kw_only=True):
    """The host needs only the handshake key; a secrets file shared with the Pi is fine."""

    OTHERS_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"tapo_username", "tapo_password", "pihole_password"})


class HostAgentSection(Section, frozen=True, kw_only=True):
    listen: Annotated[Listen, Meta(description="the agent: health, inbox, full UI")] = \
        HostPort("0.0.0.0", 8771)
    state_dir: Annotated[Path, Meta(description="the agent's state")] = Path("/var/lib/edgepair-host")
    secrets_file: Annotated[Path, Meta(description="handshake_key")] = \
        Path("/etc/edgepair/secrets.toml")
    max_body_bytes: Annotated[int, Meta(ge=1024, description="larger JSON bodies get 413")] = \
        4 * 1024 * 1024
    frontend_dir: Annotated[Path | None, Meta(
        description="serve this UI instead of the embedded one")] = None
    max_connections: connlimits.MaxConnections = connlimits.DEFAULT_MAX_CONNECTIONS
    max_client_connections: connlimits.MaxClientConnections = connlimits.DEFAULT_MAX_CLIENT_CONNECTIONS

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.max_client_connections > self.max_connections:
            yield ("max_client_connections", f"expected a value ≤ max_connections "
                   f"({self.max_connections}), got {self.max_client_connections}")


class PiLink(Section, frozen=True, kw_only=True):
    url: Annotated[Url, Meta(description="the Pi's api daemon")]
    notify_deadline_s: Annotated[float, Meta(
        ge=0.1, le=600, description="going-offline/coming-online give up after this")] = 30.0


class SnapshotSection(Section, frozen=True, kw_only=True):
    volumes: Annotated[tuple[str, ...], Meta(description="file systems whose usage is reported")] = ("/",)
    units: Annotated[tuple[str, ...], Meta(description="systemd units whose state is reported")] = ()
    backup_marker: Annotated[Path | None, Meta(
        description="a file touched by the last good backup")] = None


class HostConfig(Section, frozen=True, kw_only=True):
    """The whole host file."""

    host: HostAgentSection = HostAgentSection()
    pi: PiLink
    snapshot: SnapshotSection = SnapshotSection()
    inbox: HostInboxConfig | None = None
    planner: PlannerConfig | None = None
    idle: IdleConfig = IdleConfig()
    backup: HostBackupConfig = HostBackupConfig()
    file: Path = field(default=Path("host.toml"), name="_file")  # set by load()

    @property
    def public_dir(self) -> Path:
        return self.host.state_dir / "public"

    @property
    def private_dir(self) -> Path:
        return self.host.state_dir / "private"

    def secrets(self) -> Secrets:
        return load_secrets(self.host.secrets_file, HostSecrets)


def load(path: Path) -> HostConfig:
    """Parse and validate a host config file; ConfigError lists every problem."""
    return decode(HostConfig, load_toml(path), path)
