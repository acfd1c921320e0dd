"""``[inbox]`` of the Pi's config (kept light: ``edgepair check-config`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handshake.configfile import Section, resolve


@dataclass(frozen=True, slots=True)
class InboxConfig:
    dir: Path
    # A file closed after writing and unchanged this long is ready to forward.
    settle_s: float = 10.0
    # Full rescans back up inotify (lost events, files dropped while the daemon was down).
    rescan_s: float = 60.0
    # Files in flight to the host at once: large ones streaming …
    parallel: int = 2
    # … and requests with small files (≤ 256 KiB, up to 128 to a request), whose time goes
    # to the host's disk flushes rather than the wire.
    parallel_small: int = 4
    # Optional wake of a sleeping host: ready files of at least this many bytes …
    wake_min_bytes: int | None = None
    # … or a ready file waiting at least this long. Both unset: never wake (the default).
    wake_max_age_s: float | None = None
    # inbox.json is rewritten at least this often (and soon after every change).
    publish_interval_s: float = 30.0

    @property
    def wake_enabled(self) -> bool:
        return self.wake_min_bytes is not None or self.wake_max_age_s is not None


def parse(section: Section, file: Path) -> InboxConfig:
    """Read ``[inbox]``; problems go to the section's collector."""
    directory = section.text("dir")
    config = InboxConfig(
        dir=resolve(file, directory if isinstance(directory, str) else "."),
        settle_s=section.number("settle_s", 10.0, lo=0, hi=86400),
        rescan_s=section.number("rescan_s", 60.0, lo=0.05, hi=86400),
        parallel=section.integer("parallel", 2, lo=1, hi=16),
        parallel_small=section.integer("parallel_small", 4, lo=1, hi=64),
        wake_min_bytes=section.integer("wake_min_bytes", None, lo=1),
        wake_max_age_s=section.number("wake_max_age_s", None, lo=1, hi=30 * 86400),
        publish_interval_s=section.number("publish_interval_s", 30.0, lo=1, hi=3600),
    )
    section.done()
    return config
