"""Issue #10: private state files are read strictly; a bad one is set aside, never fatal.

The api daemon runs as a child process (``edgepair pi run api``) on loopback; the plan goes
through the real handshake client.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from handshake.client import HandshakeClient
from handshake.util import privatefile, strictjson
from tests.e2e import Site, status, stop, wait_http
from tests.helpers import KEY
from tests.test_control_planapi import CONTROL, now_slot
from tests.test_control_support import plan_doc

# Far past Python's recursion limit (1000): what made the daemon die at start.
DEEP = b"[" * 100_000 + b"]" * 100_000
PRIVATE_FILES = ("handshake-nonces.json", "host-state.json", "plan.json")


def warnings(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "WARNING" in line]


async def test_deeply_nested_private_files_are_set_aside_and_the_daemon_starts(
        tmp_path: Path) -> None:
    site = Site(tmp_path, extra_pi=CONTROL)
    private = tmp_path / "pi-state/private"
    private.mkdir(parents=True)
    for name in PRIVATE_FILES:
        (private / name).write_bytes(DEEP)
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        assert (await status(site.api))["state"] == "offline"  # the clean default
        # A plan upload replaces the bad stored plan instead of answering 500.
        plan = plan_doc(now_slot(), seq=3)
        async with HandshakeClient(site.api, KEY) as client:
            answer = await client.request("PUT", "/api/v1/plan", plan)
        assert answer["accepted"] is True
        assert json.loads((private / "plan.json").read_bytes()) == plan
    finally:
        assert stop(pi) == 0
    for name in PRIVATE_FILES:
        aside = sorted(private.glob(f"{name}.bad-*"))
        assert len(aside) == 1, (name, sorted(p.name for p in private.iterdir()))
        assert re.fullmatch(rf"{re.escape(name)}\.bad-\d{{8}}T\d{{6}}Z", aside[0].name)
        assert aside[0].read_bytes() == DEEP  # kept for a post-mortem, never deleted
        told = [w for w in warnings(site.root / "pi.log") if name in w]
        assert len(told) == 1, told
        assert "nested too deeply" in told[0]
        assert "set aside" in told[0]


async def test_a_first_start_warns_about_nothing_missing(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for _ in range(2):  # a first start, then a start after a clean stop
        pi = site.start_pi()
        try:
            await wait_http(site.api + "/api/v1/health")
        finally:
            assert stop(pi) == 0
        # (the heartbeat's warning about the absent host is expected)
        about_files = [w for w in warnings(site.root / "pi.log")
                       if "heartbeat" not in w and ("json" in w or "unreadable" in w)]
        assert about_files == []
        assert (tmp_path / "pi-state/private/handshake-nonces.json").is_file()
    assert not list((tmp_path / "pi-state/private").glob("*.bad-*"))


def test_a_file_that_is_json_but_not_the_owners_is_set_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"state": "sleepy"}')

    def convert(data: object) -> str:
        raise ValueError(f"not a state: {data!r}")

    assert privatefile.read(path, convert, now=lambda: 0.0) is None
    assert not path.exists()
    assert (tmp_path / "state.json.bad-19700101T000000Z").read_text() == '{"state": "sleepy"}'
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "state.json" in caplog.text
    assert "not a state" in caplog.text
    path.write_text("[1, 2")  # a second bad file in the same second keeps both
    assert privatefile.read(path, list, now=lambda: 0.0) is None
    assert (tmp_path / "state.json.bad-19700101T000000Z-2").read_text() == "[1, 2"


def test_an_oversize_private_file_is_set_aside_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b'"' + b"x" * 200 + b'"')
    assert privatefile.read(path, str, max_bytes=100) is None
    assert list(tmp_path.glob("big.json.bad-*"))


@pytest.mark.parametrize(("text", "ok"), [
    ("[" * 32 + "]" * 32, True),
    ("[" * 33 + "]" * 33, False),
    ('{"a": ' * 32 + "1" + "}" * 32, True),
    ('{"a": ' * 33 + "1" + "}" * 33, False),
    ('["' + "[" * 100 + '"]', True),  # brackets inside a string are text
    ('["\\"' + "[" * 100 + '"]', True),  # … also after an escaped quote
    ("[[],[[]],{}]", True),
])
def test_the_depth_limit_counts_structure_not_text(text: str, ok: bool) -> None:
    if ok:
        strictjson.loads(text)
    else:
        with pytest.raises(strictjson.JsonError, match="nested too deeply"):
            strictjson.loads(text)


def test_the_depth_check_is_cheap_on_a_hostile_megabyte() -> None:
    start = time.perf_counter()
    with pytest.raises(strictjson.JsonError):
        strictjson.loads(b"[" * 1_000_000)
    # Linear: ~0.1 s here. A quadratic scan of a megabyte takes minutes; the bound is loose
    # so a loaded CI core never fails it, tight enough to catch that.
    assert time.perf_counter() - start < 5.0


async def test_a_deeply_nested_public_file_the_api_reads_is_as_good_as_none(
        tmp_path: Path) -> None:
    site = Site(tmp_path, interval=5.0)
    public = tmp_path / "pi-state/public"
    public.mkdir(parents=True)
    (public / "inbox.json").write_bytes(
        b'{"schema": "edgepair.inbox/1", "generated_at": "2030-01-01T00:00:00Z", "x": '
        + DEEP + b"}")
    pi = site.start_pi()
    try:
        await wait_http(site.api + "/api/v1/health")
        async with HandshakeClient(site.api, KEY) as client:
            answer = await client.request("POST", "/api/v1/host/coming-online", {})
        assert answer["inbox_pending"] == 0  # was a 500: msgspec's RecursionError
    finally:
        assert stop(pi) == 0
