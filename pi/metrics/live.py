"""Figures only this process knows (in no public file): the builtin DNS responder, the notifier."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pi.dns.builtin import BuiltinDns
from pi.metrics.collector import Extra

Figures = Callable[[], dict[str, dict[str, int]]]


def extras(dns: object, notify: Figures | None = None) -> list[Extra]:
    """The live families of the api daemon's own parts: the builtin DNS, the notifier."""
    found: list[Extra] = []
    if isinstance(dns, BuiltinDns):
        found.append(lambda: dns_queries(dns))
    if notify is not None:
        found.append(lambda: notify_targets(notify()))
    return found


def dns_queries(dns: BuiltinDns) -> list[Metric]:
    """Queries the builtin responder answered and dropped, since the daemon started."""
    answered = CounterMetricFamily("edgepair_dns_queries_answered", "DNS queries the builtin "
                                   "responder answered since the api daemon started.")
    answered.add_metric([], float(dns.queries - dns.dropped))
    dropped = CounterMetricFamily("edgepair_dns_queries_dropped", "DNS queries it dropped "
                                  "unanswered (malformed, over a limit).")
    dropped.add_metric([], float(dns.dropped))
    return [answered, dropped]


def notify_targets(figures: dict[str, dict[str, int]]) -> list[Metric]:
    """Each [[notify]] target: messages waiting, delivered, whether it is failing now."""
    waiting = GaugeMetricFamily("edgepair_notify_waiting", "Messages waiting for the "
                                "[[notify]] target.", labels=["target"])
    failing = GaugeMetricFamily("edgepair_notify_failing", "1 while the target's oldest message "
                                "is being retried.", labels=["target"])
    delivered = CounterMetricFamily("edgepair_notify_delivered", "Messages the target took since "
                                    "the api daemon started.", labels=["target"])
    for target, values in sorted(figures.items()):
        waiting.add_metric([target], float(values["waiting"]))
        failing.add_metric([target], float(values["failing"]))
        delivered.add_metric([target], float(values["delivered"]))
    return [waiting, failing, delivered]
