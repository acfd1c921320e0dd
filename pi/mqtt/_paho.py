"""aiomqtt, imported without paho-mqtt's optional dnspython.

paho-mqtt imports ``dns.resolver`` when it can, only for ``connect_srv`` (DNS SRV look-ups
of the broker), which edgepair never uses; it costs ≈ 4 MB RSS and 35 ms of import time
(measured, x86-64), an eighth of the daemon's 30 MB budget. Where dnspython is already
loaded (``edgepair pi run`` with the api daemon in the same process) nothing changes.
"""

import sys

if "dns.resolver" in sys.modules:
    import aiomqtt as aiomqtt  # noqa: PLC0414 - re-exported
else:
    sys.modules["dns.resolver"] = None  # type: ignore[assignment]  # → ImportError in paho
    try:
        import aiomqtt as aiomqtt  # noqa: PLC0414
    finally:
        del sys.modules["dns.resolver"]  # a later `import dns.resolver` loads it for real

from aiomqtt.exceptions import MqttConnectError as MqttConnectError  # noqa: PLC0414
