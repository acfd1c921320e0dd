"""A real Prometheus scrapes the real api daemon with the shipped scrape config; the shipped
Grafana dashboard asks only for metrics the daemon exports, in PromQL Prometheus accepts."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from handshake import documents
from pi import pistats
from pi.metrics.collector import Metrics
from tests.e2e import ROOT, Site, stop, wait_http
from tests.fixtures import dashboard
from tests.helpers import free_port
from tests.test_metrics import node_document

SCRAPE_CONFIG = ROOT / "scripts" / "prometheus" / "edgepair.yml"
DASHBOARD = ROOT / "scripts" / "grafana" / "edgepair.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# Grafana fills these in; any valid value does for checking the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$site": ".*"}
METRIC = re.compile(r"\bedgepair_[a-z0-9_]+\b")


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    queries += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return queries


def grafana_to_promql(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return query


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    # A notify target (never asked: nothing happens) so the notifier's metrics exist too.
    site = Site(tmp_path, interval=0.2, extra_pi=f'[[notify]]\ntype = "webhook"\n'
                                                 f'url = "http://127.0.0.1:{free_port()}/"\n'
                                                 f'events = ["node_pending"]\n')
    public = tmp_path / "pi-state" / "public"
    dashboard.write(public, ("power", "inbox", "control", "pihole", "usage"))
    (public / "nodes.json").write_bytes(msgspec.json.encode(node_document(time.time())))
    documents.publish(public / "pi.json", pistats.collect(tmp_path, ("api",), 60.0))
    host, pi = site.start_host(), site.start_pi()
    try:
        yield site
    finally:
        stop(pi)
        stop(host)


@pytest.fixture
def prometheus(tmp_path: Path, site: Site) -> Iterator[str]:
    """Debian's prometheus on a free loopback port, scraping the daemon every 0.5 s."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    job = config["scrape_configs"][0]
    job["scrape_interval"] = job["scrape_timeout"] = "500ms"
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{site.api_port}"]
    config["global"] = {"scrape_interval": "500ms", "evaluation_interval": "500ms"}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={path}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def exported_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def pi_with_temperature(public: Path) -> str:
    """pi.json's metrics on a Pi (this machine may have no thermal zone)."""
    document = msgspec.structs.replace(pistats.collect(public, ("api",), 60.0), temperature_c=48.2)
    documents.publish(public / "pi.json", document)
    return Metrics(public).render().decode()


async def query(session: aiohttp.ClientSession, prometheus: str, promql: str) -> dict[str, Any]:
    async with session.get(f"{prometheus}/api/v1/query", params={"query": promql}) as r:
        answer: dict[str, Any] = await r.json()
        return answer


async def until_result(session: aiohttp.ClientSession, prometheus: str, promql: str,
                       timeout: float = 30.0) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while True:
        try:
            answer = await query(session, prometheus, promql)
        except (aiohttp.ClientError, TimeoutError):
            answer = {}
        if answer.get("data", {}).get("result"):
            result: list[dict[str, Any]] = answer["data"]["result"]
            return result
        assert time.monotonic() < end, f"no result for {promql!r}: {answer}"
        await asyncio.sleep(0.2)


async def test_prometheus_scrapes_the_plug_watts_and_the_dashboard_queries_are_valid(
        site: Site, prometheus: str) -> None:
    await wait_http(f"{site.api}/api/v1/health")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        # The heartbeat has a latency once the host answered: then every family is there.
        await until_result(session, prometheus, "edgepair_heartbeat_latency_seconds")
        result = await until_result(session, prometheus,
                                    'edgepair_plug_power_watts{plug="nas", site="home"}')
        assert float(result[0]["value"][1]) == 3.8
        up = await until_result(session, prometheus, 'up{job="edgepair"}')
        assert float(up[0]["value"][1]) == 1
        # What the daemon exports, read as Prometheus reads it.
        async with session.get(f"{site.api}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        exported = exported_names(text) | exported_names(pi_with_temperature(site.root / "x"))
        for promql in map(grafana_to_promql, dashboard_queries()):
            wanted = set(METRIC.findall(promql))
            assert wanted, promql
            assert wanted <= exported, f"{promql}: not exported: {wanted - exported}"
            if promql.startswith("label_values("):
                continue  # Grafana's own function, not PromQL
            answer = await query(session, prometheus, promql)
            assert answer["status"] == "success", (promql, answer)
        # The host state timeline's query yields one of its mapped values (online = 1).
        timeline = dashboard_queries()[0]
        result = await until_result(session, prometheus, grafana_to_promql(timeline))
        assert float(result[0]["value"][1]) in {1, 2, 3, 4, 5}


def test_the_dashboard_is_provisionable_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "edgepair"
    assert board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for wanted in ("host", "power per plug", "inbox", "battery", "plan"):
        assert wanted in titles
