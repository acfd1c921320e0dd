"""The inbox daemon in-process against the real host agent on 127.0.0.1 (real files, inotify)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from handshake.auth import Verifier
from handshake.client import HandshakeClient
from handshake.errors import ConfigError
from handshake.http import json_body, make_app, signed
from host import agent
from host.inbox import batch as host_batch
from pi import config as pi_config
from pi.inbox import daemon, sender, status, upload
from pi.inbox.config import InboxConfig
from pi.inbox.tracker import Identity
from tests.fakes.inbox_site import (
    host_config,
    inbox_json,
    pi_config_with_inbox,
    running_inbox,
    set_host_state,
    sha256,
    tree,
    until,
)
from tests.helpers import KEY, free_port


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(sender, "BACKOFF_MAX_S", 0.2)
    monkeypatch.setattr(daemon, "PUBLISH_GAP_S", 0.05)


@pytest.fixture
async def host_url(tmp_path: Path, aiohttp_server: Any) -> str:
    server = await aiohttp_server(agent.build_app(host_config(tmp_path), boot_id="b"))
    return f"http://127.0.0.1:{server.port}"


def host_files(tmp_path: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(tmp_path / "host-inbox").items()
            if not k.startswith(".edgepair-tmp")}


async def test_ready_files_go_to_the_host_and_leave_the_pi(tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url)
    pi_inbox = tmp_path / "pi-inbox"
    files = {"a.txt": b"alpha", "photos/2026/b.jpg": os.urandom(300_000), "empty.dat": b"",
             "photos/été €.txt": b"unicode"}
    for rel, data in files.items():
        (pi_inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (pi_inbox / rel).write_bytes(data)
    set_host_state(config, "online")
    async with running_inbox(config):
        await until(lambda: host_files(tmp_path) == files, what="files on the host")
        await until(lambda: tree(pi_inbox) == {}, what="the Pi's copies gone")
        await until(lambda: list(pi_inbox.iterdir()) == [], what="emptied folders pruned")
        await until(lambda: inbox_json(config)["last_flush"] is not None)
        doc = inbox_json(config)
    assert pi_inbox.is_dir(), "the share itself stays"
    assert doc["schema"] == "edgepair.inbox/1"
    assert doc["pending"]["files"] == 0
    assert doc["last_flush"]["files"] == 4
    assert doc["last_flush"]["bytes"] == sum(map(len, files.values()))
    # The counters /metrics exports as edgepair_inbox_delivered_{files,bytes}_total.
    assert doc["delivered"]["files"] == 4
    assert doc["delivered"]["bytes"] == sum(map(len, files.values()))
    assert doc["delivered"]["since"] is not None
    assert doc["last_error"] is None
    assert doc["host_state"] == "online"
    assert doc["wake"] == {"enabled": False, "last_requested_at": None}
    assert set(doc) >= {"generated_at", "interval_s", "in_flight", "pending"}


async def test_nothing_leaves_while_the_host_sleeps_and_everything_once_it_is_online(
        tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url)
    set_host_state(config, "offline")
    async with running_inbox(config):
        (tmp_path / "pi-inbox" / "waiting.txt").write_bytes(b"patience")
        await until(lambda: inbox_json(config)["pending"]["ready_files"] == 1)
        doc = inbox_json(config)
        assert doc["pending"]["bytes"] == 8
        assert doc["pending"]["oldest"].endswith("Z")
        assert doc["host_state"] == "offline"
        for state in ("going_offline", "waking", "unreachable"):
            set_host_state(config, state)
            await until(lambda s=state: inbox_json(config)["host_state"] == s)  # type: ignore[misc]
        assert host_files(tmp_path) == {}
        set_host_state(config, "online")  # seen through inotify, no restart
        await until(lambda: host_files(tmp_path) == {"waiting.txt": b"patience"})
        await until(lambda: not (tmp_path / "pi-inbox" / "waiting.txt").exists())


async def test_a_file_the_user_deletes_leaves_the_count_at_the_next_rescan(
        tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url, rescan_s=0.3)
    set_host_state(config, "offline")
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "keep.txt").write_bytes(b"keep")
    (tmp_path / "pi-inbox" / "oops.txt").write_bytes(b"dropped by mistake")
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["pending"]["files"] == 2)
        (tmp_path / "pi-inbox" / "oops.txt").unlink()
        await until(lambda: inbox_json(config)["pending"]["files"] == 1)
        set_host_state(config, "online")
        await until(lambda: host_files(tmp_path) == {"keep.txt": b"keep"})
        await until(lambda: inbox_json(config)["pending"]["files"] == 0)
        assert inbox_json(config)["last_error"] is None


async def test_temp_and_hidden_files_stay(tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url)
    pi_inbox = tmp_path / "pi-inbox"
    skipped = {".DS_Store": b"1", "~$report.docx": b"2", "movie.mkv.part": b"3", "x.tmp": b"4",
               ".hidden/inside.txt": b"5"}
    for rel, data in skipped.items():
        (pi_inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (pi_inbox / rel).write_bytes(data)
    (pi_inbox / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(pi_inbox / "fifo")
    (pi_inbox / "real.txt").write_bytes(b"go")
    set_host_state(config, "online")
    async with running_inbox(config):
        await until(lambda: host_files(tmp_path) == {"real.txt": b"go"})
        await asyncio.sleep(0.3)
    assert tree(pi_inbox) == skipped
    assert host_files(tmp_path) == {"real.txt": b"go"}


@pytest.mark.parametrize("leases", [True, False], ids=["with-leases", "events-only"])
async def test_a_growing_file_is_never_sent_and_an_overwrite_restarts_settling(
        tmp_path: Path, host_url: str, monkeypatch: pytest.MonkeyPatch, leases: bool) -> None:
    if not leases:  # as for files of another owner without CAP_LEASE: Linux can't tell
        monkeypatch.setattr(upload, "writer_present", lambda fd: None)
    config = pi_config_with_inbox(tmp_path, host_url, settle_s=0.1)
    set_host_state(config, "online")
    pi_inbox = tmp_path / "pi-inbox"
    async with running_inbox(config):
        with (pi_inbox / "slow.bin").open("wb") as writer:
            for _ in range(3):
                writer.write(os.urandom(50_000))
                writer.flush()
                await asyncio.sleep(0.3)  # pauses longer than settle_s, file still open
                assert host_files(tmp_path) == {}, "a file still open for writing went out"
            writer.write(b"the end")
        final_slow = (pi_inbox / "slow.bin").read_bytes()
        (pi_inbox / "doc.txt").write_bytes(b"first draft")
        await asyncio.sleep(0.05)
        (pi_inbox / "doc.txt").write_bytes(b"final version")
        await until(lambda: len(host_files(tmp_path)) == 2, what="both files on the host")
        await asyncio.sleep(0.2)
    assert host_files(tmp_path) == {"slow.bin": final_slow, "doc.txt": b"final version"}


async def test_files_written_into_brand_new_folders_at_once_are_sent(
        tmp_path: Path, host_url: str) -> None:
    """A folder's first files may be reported as "created" only (no open, no close)."""
    config = pi_config_with_inbox(tmp_path, host_url)
    set_host_state(config, "online")
    expected = {f"d{i}/sub/f{j}.txt": f"{i}-{j}".encode() for i in range(15) for j in range(3)}
    async with running_inbox(config):
        for rel, data in expected.items():
            (tmp_path / "pi-inbox" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "pi-inbox" / rel).write_bytes(data)
        await until(lambda: host_files(tmp_path) == expected, what="all files on the host")
        await until(lambda: tree(tmp_path / "pi-inbox") == {})


async def test_large_files_are_hashed_while_they_wait_and_not_again(
        tmp_path: Path, host_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []
    real_hash = upload._hash

    def counting(fd: int, size: int, cancel: Any = None) -> str:
        hashed.append(size)
        return real_hash(fd, size, cancel)

    monkeypatch.setattr(upload, "_hash", counting)
    config = pi_config_with_inbox(tmp_path, host_url)
    set_host_state(config, "offline")
    big, edited = os.urandom(1_000_000), os.urandom(700_000)
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "big.bin").write_bytes(big)
    (tmp_path / "pi-inbox" / "edited.bin").write_bytes(edited[:400_000])
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["pending"]["hashed_files"] == 2)
        (tmp_path / "pi-inbox" / "edited.bin").write_bytes(edited)  # after its hash
        await until(lambda: sorted(hashed) == [400_000, 700_000, 1_000_000])
        set_host_state(config, "online")
        await until(lambda: host_files(tmp_path) == {"big.bin": big, "edited.bin": edited})
    assert sorted(hashed) == [400_000, 700_000, 1_000_000], "each version hashed once"


async def test_small_files_go_one_by_one_to_a_host_without_batches(
        tmp_path: Path, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def older_host(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)

    monkeypatch.setattr(host_batch, "post_batch", older_host)
    server = await aiohttp_server(agent.build_app(host_config(tmp_path), boot_id="b"))
    config = pi_config_with_inbox(tmp_path, f"http://127.0.0.1:{server.port}")
    set_host_state(config, "online")
    expected = {f"f{i}.txt": f"file {i}".encode() for i in range(5)}
    (tmp_path / "pi-inbox").mkdir()
    for rel, data in expected.items():
        (tmp_path / "pi-inbox" / rel).write_bytes(data)
    async with running_inbox(config):
        await until(lambda: host_files(tmp_path) == expected)
        await until(lambda: tree(tmp_path / "pi-inbox") == {})


async def test_an_unreachable_host_keeps_files_and_they_go_when_it_answers(
        tmp_path: Path, aiohttp_server: Any) -> None:
    port = free_port()
    config = pi_config_with_inbox(tmp_path, f"http://127.0.0.1:{port}")
    set_host_state(config, "online")
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "keep.txt").write_bytes(b"safe")
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["last_error"] is not None, what="an error")
        assert inbox_json(config)["last_error"]["path"] == "keep.txt"
        assert (tmp_path / "pi-inbox" / "keep.txt").read_bytes() == b"safe"
        app = agent.build_app(host_config(tmp_path), boot_id="b")
        await aiohttp_server(app, port=port)
        await until(lambda: host_files(tmp_path) == {"keep.txt": b"safe"})
        await until(lambda: not (tmp_path / "pi-inbox" / "keep.txt").exists())


async def test_a_file_the_host_refuses_stays_and_is_listed(
        tmp_path: Path, aiohttp_server: Any) -> None:
    server = await aiohttp_server(agent.build_app(host_config(tmp_path, max_file_bytes=100),
                                                  boot_id="b"))
    config = pi_config_with_inbox(tmp_path, f"http://127.0.0.1:{server.port}")
    set_host_state(config, "online")
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "huge.iso").write_bytes(b"x" * 101)
    (tmp_path / "pi-inbox" / "small.txt").write_bytes(b"fits")
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["rejected"] != [])
        await until(lambda: host_files(tmp_path) == {"small.txt": b"fits"})
        doc = inbox_json(config)
    assert (tmp_path / "pi-inbox" / "huge.iso").exists()
    assert doc["rejected"][0]["path"] == "huge.iso"
    assert doc["rejected"][0]["status"] == 413
    assert "max_file_bytes" in doc["last_error"]["message"]


async def test_a_full_host_disk_keeps_the_file_on_the_pi(
        tmp_path: Path, aiohttp_server: Any) -> None:
    server = await aiohttp_server(agent.build_app(host_config(tmp_path, min_free_bytes=1 << 62),
                                                  boot_id="b"))
    config = pi_config_with_inbox(tmp_path, f"http://127.0.0.1:{server.port}")
    set_host_state(config, "online")
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "a.txt").write_bytes(b"keep me")
    async with running_inbox(config):
        await until(lambda: (inbox_json(config)["last_error"] or {}).get("path") == "a.txt")
        assert "disk is full" in inbox_json(config)["last_error"]["message"]
    assert (tmp_path / "pi-inbox" / "a.txt").read_bytes() == b"keep me"


async def test_the_pi_wakes_a_sleeping_host_when_files_wait(
        tmp_path: Path, aiohttp_server: Any) -> None:
    wakes: list[dict[str, Any]] = []

    @signed
    async def wake(request: web.Request) -> web.Response:
        wakes.append(await json_body(request))
        return web.json_response({"sent": True, "state": "waking"}, status=202)

    api = make_app(4096, Verifier(KEY))
    api.router.add_post("/api/v1/wake", wake)
    server = await aiohttp_server(api)
    config = pi_config_with_inbox(tmp_path, "http://127.0.0.1:9", api_port=server.port,
                                  inbox_extra="wake_min_bytes = 1000")
    set_host_state(config, "offline")
    (tmp_path / "pi-inbox").mkdir()
    (tmp_path / "pi-inbox" / "small.txt").write_bytes(b"x" * 999)
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["pending"]["ready_files"] == 1)
        await asyncio.sleep(0.2)
        assert wakes == [], "below the threshold: no wake"
        (tmp_path / "pi-inbox" / "more.txt").write_bytes(b"y")
        await until(lambda: wakes == [{"source": "inbox"}], what="a signed wake request")
        await until(lambda: inbox_json(config)["wake"]["last_requested_at"] is not None)
        (tmp_path / "pi-inbox" / "even-more.txt").write_bytes(b"z" * 5000)
        await asyncio.sleep(0.3)
    assert len(wakes) == 1, "one wake, not one per tick"
    assert inbox_json(config)["wake"]["enabled"] is True


def test_wake_decision() -> None:
    base = InboxConfig(dir=Path("/x"))
    by_age = InboxConfig(dir=Path("/x"), wake_max_age_s=3600)
    old = status.Pending(files=1, bytes=10, ready_files=1, ready_bytes=10,
                         oldest_ready_mtime=1000.0)
    assert not status.wake_due(base, "offline", old, 10_000, None), "off by default"
    assert status.wake_due(by_age, "offline", old, 4600, None)
    assert not status.wake_due(by_age, "offline", old, 4599, None)
    assert not status.wake_due(by_age, "online", old, 9999, None)
    assert not status.wake_due(by_age, "waking", old, 9999, None)
    assert not status.wake_due(by_age, "unreachable", old, 9999, 9999 - 60), "repeat too soon"
    assert status.wake_due(by_age, "unreachable", old, 9999, 9999 - status.WAKE_REPEAT_S)


def test_inbox_config(tmp_path: Path) -> None:
    config = pi_config_with_inbox(tmp_path, "http://127.0.0.1:9")
    inbox = config.inbox
    assert isinstance(inbox, InboxConfig)
    assert inbox.dir == tmp_path / "pi-inbox"
    assert (inbox.parallel, inbox.wake_enabled) == (2, False)
    assert "inbox" in config.daemons()
    path = tmp_path / "pi.toml"
    path.write_text(path.read_text() + "parallel = 0\nsettle = 3\nwake_min_bytes = \"1 GB\"\n")
    with pytest.raises(ConfigError) as info:
        pi_config.load(path)
    text = "\n".join(info.value.problems)
    assert "inbox.parallel: expected a value ≥ 1" in text
    assert "inbox.settle: unknown key (did you mean 'settle_s'?)" in text
    assert "inbox.wake_min_bytes: expected an integer" in text


def test_a_writer_holding_the_file_open_is_detected_by_a_lease(tmp_path: Path) -> None:
    path = tmp_path / "open.bin"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        with path.open("ab"):
            assert upload.writer_present(fd) is True
        assert upload.writer_present(fd) is False
        with path.open("rb"):
            assert upload.writer_present(fd) is False, "readers don't count"
        with path.open("ab"), pytest.raises(upload.StillOpen):
            upload.open_file(tmp_path, "open.bin")
    finally:
        os.close(fd)


async def test_a_file_that_changes_while_it_is_sent_stays(
        tmp_path: Path, host_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host refuses bytes that don't match the announced hash; a shrink is noticed."""
    root = tmp_path / "pi-inbox"
    root.mkdir()
    (root / "grown.bin").write_bytes(os.urandom(600_000))
    (root / "shrunk.bin").write_bytes(os.urandom(600_000))
    real_open = upload.open_file

    def edit_after_hashing(root: Path, rel: str, *args: Any) -> Any:
        opened = real_open(root, rel, *args)
        path = root / rel
        with path.open("r+b") as f:  # same size, other bytes: only the hash can tell
            f.write(b"edited")
        if path.name == "shrunk.bin":
            os.truncate(path, 1000)
        return opened

    async with HandshakeClient(host_url, KEY) as client:
        for name in ("grown.bin", "shrunk.bin"):
            progress = upload.Progress(name, 0, 0.0)
            known = (Identity.of((root / name).stat()), sha256((root / name).read_bytes()))
            monkeypatch.setattr(upload, "open_file", edit_after_hashing)
            with pytest.raises(upload.FileChanged):
                await upload.send(client, root, name, progress, known=known)
            monkeypatch.setattr(upload, "open_file", real_open)
            assert (root / name).exists()
    assert host_files(tmp_path) == {}


def test_a_file_changed_after_it_was_sent_is_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    before = Identity.of(path.stat())
    path.write_bytes(b"v2 longer")
    assert upload.delete_if_unchanged(tmp_path, "f", before) is False
    assert path.exists()
    assert upload.delete_if_unchanged(tmp_path, "f", Identity.of(path.stat())) is True
    assert not path.exists()
    assert upload.url_path("a b/é%.txt") == "/api/v1/inbox/a%20b/%C3%A9%25.txt"
    assert upload.url_path(os.fsdecode(b"bad\xff")) == "/api/v1/inbox/bad%FF"


def test_a_new_version_saved_over_the_name_during_the_delete_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How Office saves: write ~WRD0001.tmp, rename it over doc.docx, between our check
    and our removal. The new version must survive, under its own name."""
    path = tmp_path / "doc.docx"
    path.write_bytes(b"version 1")
    before = Identity.of(path.stat())
    (tmp_path / "~WRD0001.tmp").write_bytes(b"version 2!")
    real_rename = os.rename
    raced = []

    def save_first(src: Any, dst: Any, **dir_fds: int) -> None:
        if not raced:
            raced.append(1)
            real_rename(tmp_path / "~WRD0001.tmp", path)  # the editor saves right now
        real_rename(src, dst, **dir_fds)

    monkeypatch.setattr(upload.os, "rename", save_first)
    assert upload.delete_if_unchanged(tmp_path, "doc.docx", before) is False
    assert path.read_bytes() == b"version 2!"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.docx"]  # nothing left aside


def test_a_name_near_the_length_limit_is_still_deleted(tmp_path: Path) -> None:
    """244 bytes is a legal name, but no room for the aside prefix: removed by name."""
    path = tmp_path / ("é" * 120 + ".pdf")
    path.write_bytes(b"x")
    assert upload.delete_if_unchanged(tmp_path, path.name, Identity.of(path.stat())) is True
    assert list(tmp_path.iterdir()) == []


def test_same_size_and_mtime_but_rewritten_is_not_the_sent_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"A" * 100)
    st = path.stat()
    before = Identity.of(st)
    time.sleep(0.01)
    path.write_bytes(b"B" * 100)  # same size, same inode ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the client keeps the mtime
    assert upload.delete_if_unchanged(tmp_path, "photo.jpg", before) is False  # ctime tells
    assert path.read_bytes() == b"B" * 100


def test_a_file_left_aside_by_a_crash_comes_back_under_its_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    aside = tmp_path / "sub" / f"{upload.SENT_PREFIX}0a1b2c3d-report.pdf"
    aside.write_bytes(b"pdf")
    (tmp_path / "taken.txt").write_bytes(b"someone else's")
    other = tmp_path / f"{upload.SENT_PREFIX}ffffffff-taken.txt"
    other.write_bytes(b"ours")
    restored = upload.restore_aside(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in restored) == [
        "sub/report.pdf", "taken (edgepair 2).txt"]
    assert (tmp_path / "taken.txt").read_bytes() == b"someone else's"
    assert not any(p.name.startswith(upload.SENT_PREFIX) for p in tmp_path.rglob("*"))


async def test_a_large_file_appended_to_while_it_streams_is_not_stored(
        tmp_path: Path, host_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pi-inbox"
    root.mkdir()
    path = root / "video.mp4"
    path.write_bytes(os.urandom(3 * upload.CHUNK_BYTES))
    real_pread = os.pread
    reads: list[int] = []

    def append_midway(fd: int, n: int, offset: int) -> bytes:
        reads.append(offset)
        if len(reads) == 5:  # hashed (3 pieces), 2 streamed: a writer opens it and appends
            with path.open("ab") as f:
                f.write(os.urandom(1000))
        return real_pread(fd, n, offset)

    monkeypatch.setattr(upload.os, "pread", append_midway)
    async with HandshakeClient(host_url, KEY) as client:
        with pytest.raises(upload.FileChanged):
            await upload.send(client, root, "video.mp4", upload.Progress("video.mp4", 0, 0.0))
    assert host_files(tmp_path) == {}  # no prefix under video.mp4
    assert path.stat().st_size == 3 * upload.CHUNK_BYTES + 1000


async def test_run_refuses_a_config_without_inbox(tmp_path: Path) -> None:
    config = pi_config_with_inbox(tmp_path, "http://127.0.0.1:9")
    bare = msgspec.structs.replace(config, inbox=None)
    with pytest.raises(ConfigError):
        await daemon.run(bare, ready=lambda: None, kick=lambda name: None)
    assert daemon.WATCHDOG_LOOPS == ("inbox",)
