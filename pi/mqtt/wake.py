"""The Wake host button's press, handed to the api daemon's anonymous wake.

Through ``POST /api/v1/wake`` without a signature, so a press spends a token of the same
rate limit as the dashboard's button (``[api] anonymous_wake_per_min``): MQTT gets no second
limiter and no key. Who may press is for the broker's ACL to decide. stdlib only (urllib):
the mqtt daemon does not load aiohttp.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("pi.mqtt")

# The api daemon answers a wake at once (the magic packet is sent, the boot is not awaited).
WAKE_TIMEOUT_S = 5.0
BODY = b'{"source": "button"}'


def post(api_url: str) -> tuple[int, Any]:
    """POST the wake to the api daemon at ``api_url``: (HTTP status, JSON answer); 0 when it
    did not answer. Blocking: run it in a thread."""
    import urllib.error  # noqa: PLC0415 - only with allow_wake, only when pressed
    import urllib.request  # noqa: PLC0415

    url = f"{api_url}/api/v1/wake"
    # The local api daemon, over http: the only URL this opens.
    request = urllib.request.Request(  # noqa: S310
        url, data=BODY, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WAKE_TIMEOUT_S) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (OSError, TimeoutError) as exc:
        log.warning("mqtt: Wake host: the api daemon at %s did not answer: %s", url, exc)
        return 0, {"error": str(exc)}


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")[:200]
