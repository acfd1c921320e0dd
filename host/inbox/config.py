"""``[inbox]`` of the host's config: where files from the Pi land and how much may come."""


from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Section

GIB = 1024 ** 3
MIB = 1024 ** 2


class HostInboxConfig(Section, frozen=True, kw_only=True):
    dir: Annotated[Path, Meta(description="where files from the Pi's inbox land")]
    max_file_bytes: Annotated[int, Meta(
        ge=1, description="larger files get 413: a runaway upload can't fill the NAS")] = 64 * GIB
    min_free_bytes: Annotated[int, Meta(
        ge=0, description="a file is refused (507) when it would leave less free")] = 256 * MIB
