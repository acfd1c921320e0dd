"""``[inbox]`` of the Pi's config (kept light: ``edgepair check-config`` imports it)."""


from pathlib import Path
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Section


class InboxConfig(Section, frozen=True, kw_only=True):
    dir: Annotated[Path, Meta(description="the SMB drop folder")]
    settle_s: Annotated[float, Meta(
        ge=0, le=86400, description="a closed file unchanged this long is ready to forward")] = 10.0
    rescan_s: Annotated[float, Meta(
        ge=0.05, le=86400, description="full rescans back up inotify (lost events, downtime)")] = 60.0
    parallel: Annotated[int, Meta(ge=1, le=16, description="large files streaming at once")] = 2
    parallel_small: Annotated[int, Meta(
        ge=1, le=64, description="requests of small files (≤ 256 KiB, 128 a request) at once")] = 4
    wake_min_bytes: Annotated[int | None, Meta(
        ge=1, description="wake a sleeping host when ready files reach this many bytes")] = None
    wake_max_age_s: Annotated[float | None, Meta(
        ge=1, le=30 * 86400, description="… or a ready file has waited this long")] = None
    publish_interval_s: Annotated[float, Meta(
        ge=1, le=3600, description="inbox.json is rewritten at least this often")] = 30.0
    alert_after_s: Annotated[float | None, Meta(
        ge=1, le=30 * 86400, description="[[notify]]: a file waiting longer than this is an "
                                         "alarm (inbox_waiting); unset: none")] = None

    @property
    def wake_enabled(self) -> bool:
        return self.wake_min_bytes is not None or self.wake_max_age_s is not None
