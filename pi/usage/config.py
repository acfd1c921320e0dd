"""``[usage]`` in pi.toml: what a kWh costs, and how the ledger batches and keeps its rows.

Light on purpose (check-config imports it): TOML and Structs only.
"""


import re
from typing import Annotated

from msgspec import Meta

from handshake.util.schema import Check, Section

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class UsageConfig(Section, frozen=True, kw_only=True):
    price_per_kwh: Annotated[float | None, Meta(
        ge=0, le=100, description="what a kWh costs; unset: no money figures")] = None
    currency: Annotated[str, Check(lambda v: bool(_CURRENCY_RE.match(v)),
                                   "an ISO 4217 code like \"EUR\""),
                        Meta(description="shown beside money saved")] = "EUR"
    commit_interval_s: Annotated[float, Meta(
        ge=0.05, le=3600, description="the ledger reaches sqlite at most this often (SD wear)")] = 60.0
    publish_interval_s: Annotated[float, Meta(
        ge=0.05, le=3600, description="usage.json refresh period (and at once on a wake)")] = 60.0
    retention_days: Annotated[int, Meta(ge=31, le=3650,
                                        description="intervals and wakes kept")] = 400
