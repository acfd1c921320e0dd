"""``[inbox]`` of the host's config: where files from the Pi land and how much may come."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handshake.configfile import Section, resolve

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass(frozen=True, slots=True)
class HostInboxConfig:
    dir: Path
    # Larger files get 413: a runaway upload can't fill the NAS.
    max_file_bytes: int = 64 * GIB
    # A file is refused (507) when storing it would leave less than this free.
    min_free_bytes: int = 256 * MIB


def parse(section: Section, file: Path) -> HostInboxConfig:
    """Read ``[inbox]``; problems go to the section's collector."""
    directory = section.text("dir")
    config = HostInboxConfig(
        dir=resolve(file, directory if isinstance(directory, str) else "."),
        max_file_bytes=section.integer("max_file_bytes", 64 * GIB, lo=1),
        min_free_bytes=section.integer("min_free_bytes", 256 * MIB, lo=0),
    )
    section.done()
    return config
