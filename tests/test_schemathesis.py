"""Schemathesis against both OpenAPI documents, served by the real daemons on loopback (#10).

The Pi's api daemon and the host agent run as processes (``tests.e2e.Site``), with the
optional parts that add operations switched on ([control] for the plan, [inbox] for the
inbox, the dashboard). ``st run`` loads each document from the daemon that serves it and
sends positive and negative cases of every operation; tests/schemathesis_hooks.py signs
those of signed operations over the exact bytes sent, so bodies get past the signature
into validation. Asserted: no 5xx, every response as its document says (status, content
type, headers, body schema), signed cases accepted, and both daemons still answering and
stopping cleanly afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import ROOT, Site, stop, wait_http
from tests.helpers import KEY_HEX

# Fixed, so a failure replays (`st run URL --seed SEED ...` against the same config).
SEED = 10
# Cases per operation and phase: about 890 over both APIs (635 + 255) in ~6 s on 2 cores.
MAX_EXAMPLES = 60
# Everything that applies to stateless runs of these documents, except:
# - ignored_auth: it strips the credentials and expects a refusal, but the hook signs its
#   probes as well.
CHECKS = ("not_a_server_error", "unsupported_method", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection", "positive_data_acceptance", "missing_required_header")
# Per operation, what JSON Schema cannot say: a request valid by the schema that is still
# refused, with the reason, as the document's error responses list.
PI_CONFIG = """
[[operations]]
include-path = "/api/v1/plan"
# valid_from off a slot boundary, valid_until more than 48 h on, slots out of order.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "409"]
"""
HOST_CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/inbox"
# Control characters, `..` or empty names (400), a name over 255 bytes (414), a file where a
# folder is needed (409); a batch's broken framing (400).
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "409", "414"]
"""
RUN_TIMEOUT_S = 60
# What the documents list (their own URL aside, which schemathesis does not test).
PI_OPERATIONS = {"GET /", "GET /api/v1/health", "GET /api/v1/status", "GET /data/{name}",
                 "GET /metrics",
                 "POST /api/v1/host/coming-online", "POST /api/v1/host/going-offline",
                 "POST /api/v1/wake", "PUT /api/v1/plan"}
HOST_OPERATIONS = {"GET /", "GET /api/v1/dashboard", "GET /api/v1/health", "GET /data/{name}",
                   "POST /api/v1/inbox", "PUT /api/v1/inbox/{path}", "GET /api/v1/backup",
                   "PUT /api/v1/backup"}

CONTROL = """
[control]
profile = "sim-inverter"
address = "127.0.0.1"
max_charge_w = 3000
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Both daemons running, each with every optional operation it can serve."""
    site = Site(tmp_path_factory.mktemp("site"), interval=0.5, extra_pi=CONTROL)
    dashboard = f'frontend_dir = "{ROOT / "frontend-dist"}"\n'
    site.pi_config.write_text(site.pi_config.read_text().replace("[api]\n", "[api]\n" + dashboard, 1))
    site.host_config.write_text(site.host_config.read_text().replace("[host]\n", "[host]\n" + dashboard, 1))
    inbox = site.root / "inbox"
    inbox.mkdir()
    with site.host_config.open("a") as f:
        f.write(f'[inbox]\ndir = "{inbox}"\nmin_free_bytes = 0\n')
    pi, host = site.start_pi(), site.start_host()
    try:
        asyncio.run(wait_http(site.api + "/api/v1/health"))
        asyncio.run(wait_http(site.host_url + "/api/v1/health"))
        yield site
    finally:
        codes = stop(pi), stop(host)
    logs = {name: (site.root / name).read_text() for name in ("pi.log", "host.log")}
    assert codes == (0, 0), logs


def schemathesis_run(site: Site, base_url: str, config_text: str) -> dict[str, Any]:
    """``st run`` against the document ``base_url`` serves; its JSON report."""
    name = f"schemathesis-{base_url.rsplit(':', 1)[1]}"
    report, config = site.root / f"{name}.json", site.root / f"{name}.toml"
    config.write_text(config_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEPAIR_TEST_KEY": KEY_HEX,
           "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"}
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         f"{base_url}/api/v1/openapi.json",
         "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES),
         "--seed", str(SEED), "--workers", "1", "--generation-database", "none",
         "--request-timeout", "5", "--no-color",
         "--report", "json", "--report-json-path", str(report)],
        cwd=site.root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        check=False)
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    doc: dict[str, Any] = json.loads(report.read_text())
    print(f"{base_url}: {doc['test_cases']['generated']} cases in {doc['running_time']:.1f} s")
    return doc


def accepted(report: dict[str, Any], operation: str) -> int:
    """How many generated cases of ``operation`` the daemon accepted (2xx)."""
    phases = report["valid_rates"].get(operation, {})
    return sum(phase["accepted"] for phase in phases.values())


def assert_clean(report: dict[str, Any], operations: set[str], min_cases: int) -> None:
    assert report["complete"] is True
    assert report["failures"] == []
    assert report["errors"] == []
    assert report["operations"]["tested"] == report["operations"]["total"]
    assert set(report["valid_rates"]) == operations  # each one tested, none forgotten
    assert report["test_cases"]["generated"] >= min_cases
    assert report["test_cases"]["with_failures"] == report["test_cases"]["errored"] == 0


def test_the_pi_api_answers_every_generated_request_as_documented(site: Site) -> None:
    report = schemathesis_run(site, site.api, PI_CONFIG)
    assert_clean(report, PI_OPERATIONS, min_cases=400)
    # Signed bodies got through the signature into the state machine and the plan store.
    assert accepted(report, "POST /api/v1/host/going-offline") > 0
    assert accepted(report, "POST /api/v1/host/coming-online") > 0
    assert (site.root / "pi-state/public/snapshot.json").is_file()
    asyncio.run(wait_http(site.api + "/api/v1/health", timeout=2))


def test_the_host_agent_answers_every_generated_request_as_documented(site: Site) -> None:
    report = schemathesis_run(site, site.host_url, HOST_CONFIG)
    assert_clean(report, HOST_OPERATIONS, min_cases=150)
    # Signed inbox files with a true hash were stored, not just refused at the door.
    assert accepted(report, "PUT /api/v1/inbox/{path}") > 0
    assert accepted(report, "POST /api/v1/inbox") > 0
    assert any(p.is_file() for p in (site.root / "inbox").rglob("*"))
    assert any(p.is_file() for p in (site.root / "inbox/batch").iterdir())
    # … and signed backups with a true hash too (the newest keep of them)
    assert accepted(report, "PUT /api/v1/backup") > 0
    assert list((site.root / "host-state/backups").glob("edgepair-pi-*.tar.gz"))
    asyncio.run(wait_http(site.host_url + "/api/v1/health", timeout=2))
