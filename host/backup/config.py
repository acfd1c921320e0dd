"""``[backup]`` of the host's config: where the Pi's backups land and how big one may be.

The Pi decides when to send and how many to keep (``[backup]`` in its own config); the
host only bounds what it accepts.
"""


from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Section

GIB = 1024 ** 3
MIB = 1024 ** 2


class HostBackupConfig(Section, frozen=True, kw_only=True):
    dir: Annotated[Path | None, Meta(description="default: <state_dir>/backups (put it on the NAS's "
                                    "redundant storage)")] = None
    max_bytes: Annotated[int, Meta(
        ge=1024, description="a larger backup gets 413")] = 8 * GIB
    min_free_bytes: Annotated[int, Meta(
        ge=0, description="a backup is refused (507) when it would leave less free")] = 1 * GIB

    def directory(self, state_dir: Path) -> Path:
        return self.dir if self.dir is not None else state_dir / "backups"
