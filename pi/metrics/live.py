"""Figures only this process knows (not in any public file): the builtin DNS responder's counters."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from pi.dns.builtin import BuiltinDns
from pi.metrics.collector import Extra


def extras(dns: object) -> list[Extra]:
    """The live families of the api daemon's own parts (the DNS backend, when builtin)."""
    if not isinstance(dns, BuiltinDns):
        return []
    return [lambda: dns_queries(dns)]


def dns_queries(dns: BuiltinDns) -> list[Metric]:
    """Queries the builtin responder answered and dropped, since the daemon started."""
    answered = CounterMetricFamily("edgepair_dns_queries_answered", "DNS queries the builtin "
                                   "responder answered since the api daemon started.")
    answered.add_metric([], float(dns.queries - dns.dropped))
    dropped = CounterMetricFamily("edgepair_dns_queries_dropped", "DNS queries it dropped "
                                  "unanswered (malformed, over a limit).")
    dropped.add_metric([], float(dns.dropped))
    return [answered, dropped]
