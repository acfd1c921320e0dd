"""``[backup]`` in pi.toml: how often the Pi sends its state to the host, how many it keeps.

Light on purpose (check-config imports it): TOML and Structs only.
"""


from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.backupwire import KEEP_MAX
from handshake.util.schema import Section


class BackupConfig(Section, frozen=True, kw_only=True):
    enabled: Annotated[bool, Meta(description="send a backup when the host comes online")] = True
    every_h: Annotated[float, Meta(
        ge=1, le=24 * 365, description="at most one backup this often (hours)")] = 24.0
    keep: Annotated[int, Meta(ge=1, le=KEEP_MAX, description="backups the host keeps")] = 7
    include_secrets: Annotated[bool, Meta(
        description="put the secrets file in the backup too (the host then holds the keys)")] = False
    after_online_s: Annotated[float, Meta(
        ge=0, le=3600, description="wait this long after the host came online (let it settle)")] = 60.0
    upload_timeout_s: Annotated[float, Meta(
        ge=1, le=3600, description="the host's answer after the last byte, at most this late")] = 120.0
    work_dir: Annotated[Path | None, Meta(description="where the archive is built (default: "
                                         "private/.backup-tmp; a tmpfs spares the SD card)")] = None
