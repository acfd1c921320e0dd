"""Attacks on the Pi's inbox through the share, against the real daemon and host receiver.

A client of the share may swap a folder for a symlink to anywhere, hard-link a file from
outside into it, or give a file a name that is not UTF-8. None of it may send or delete a
file outside the inbox, or stop the inbox.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from handshake import inboxwire
from host import agent
from pi.inbox import daemon, sender
from tests.fakes.inbox_site import (
    host_config,
    inbox_json,
    pi_config_with_inbox,
    running_inbox,
    set_host_state,
    tree,
    until,
)

# The issue saw the outside files sent and deleted after ~20 swaps; ten times that many.
SWAPS = 400
# How long each side of a swap lasts: long enough for sends to start in both states.
SWAP_HOLD_S = 0.002
SECRET = b"SECRET outside the inbox "


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(sender, "BACKOFF_MAX_S", 0.2)
    monkeypatch.setattr(daemon, "PUBLISH_GAP_S", 0.05)
    # A refused or changed file is retried soon, so the race gets many chances.
    monkeypatch.setattr(sender, "FILE_ERROR_RETRY_S", 0.05)
    monkeypatch.setattr(sender, "REJECTED_RETRY_S", 0.2)


@pytest.fixture
async def host_url(tmp_path: Path, aiohttp_server: Any) -> str:
    server = await aiohttp_server(agent.build_app(host_config(tmp_path), boot_id="b"))
    return f"http://127.0.0.1:{server.port}"


def host_files(tmp_path: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(tmp_path / "host-inbox").items()
            if not k.startswith(".edgepair-tmp")}


def _outside(tmp_path: Path, names: list[str]) -> dict[str, bytes]:
    """A folder outside the inbox holding files named like the inbox's."""
    folder = tmp_path / "outside"
    folder.mkdir()
    files = {}
    for name in names:
        size = 300_000 if name.startswith("big") else 40
        files[name] = (SECRET * (size // len(SECRET) + 1))[:size]
        (folder / name).write_bytes(files[name])
    return files


class Swapper(threading.Thread):
    """Swaps ``inbox/sub`` for a symlink to ``outside`` and back, ``swaps`` times, while
    dropping a new file into the real folder on every swap back."""

    def __init__(self, inbox: Path, outside: Path, swaps: int, names: list[str]) -> None:
        super().__init__(name="swapper")
        self.inbox, self.outside, self.swaps, self.names = inbox, outside, swaps, names
        self.dropped: list[bytes] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        sub, real, link = self.inbox / "sub", self.inbox / ".sub-real", self.inbox / ".sub-link"
        try:
            for i in range(self.swaps):
                os.symlink(self.outside, link)
                try:
                    os.rename(sub, real)
                except FileNotFoundError:  # the daemon pruned the emptied folder: a new one
                    real.mkdir()
                os.rename(link, sub)  # sub -> outside
                time.sleep(SWAP_HOLD_S)
                os.rename(sub, link)
                os.unlink(link)
                try:
                    os.rename(real, sub)  # sub is the inbox's folder again
                except FileNotFoundError:  # the daemon pruned it while emptied: a new one
                    sub.mkdir()
                name = self.names[i % len(self.names)]
                if not (sub / name).exists():
                    data = f"inside {i} ".encode() * (7500 if name.startswith("big") else 1)
                    try:
                        (sub / name).write_bytes(data)
                    except FileNotFoundError:  # pruned between the rename and the write
                        sub.mkdir(exist_ok=True)
                        (sub / name).write_bytes(data)
                    self.dropped.append(data)
                time.sleep(SWAP_HOLD_S)
        except BaseException as exc:
            self.error = exc


async def test_a_folder_swapped_for_a_symlink_never_sends_or_deletes_outside_files(
        tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url, settle_s=0.0, rescan_s=0.1)
    inbox = tmp_path / "pi-inbox"
    names = [f"n-{i}.txt" for i in range(20)] + [f"big-{i}.bin" for i in range(3)]
    outside = _outside(tmp_path, names)
    (inbox / "sub").mkdir(parents=True)
    set_host_state(config, "online")
    swapper = Swapper(inbox, tmp_path / "outside", SWAPS, names)
    async with running_inbox(config) as task:
        swapper.start()
        try:
            await until(lambda: not swapper.is_alive(), timeout=60, what="the swaps",
                        every=0.05)
        finally:
            swapper.join()
        assert swapper.error is None, swapper.error
        assert tree(tmp_path / "outside") == outside, "an outside file was deleted or moved"
        # Whatever was dropped inside goes, once the folder stays put.
        await until(lambda: tree(inbox) == {}, timeout=20, what="the inbox drained")
        assert not task.done()
    assert tree(tmp_path / "outside") == outside, "an outside file was deleted or moved"
    got = host_files(tmp_path)
    assert not [rel for rel, data in got.items() if data.startswith(SECRET)], \
        "an outside file was sent"
    # Every version dropped inside arrived (the host keeps same-named ones side by side).
    assert sorted(got.values()) == sorted(swapper.dropped)
    assert len(swapper.dropped) >= len(names)


async def test_a_hard_link_to_an_outside_file_is_neither_sent_nor_deleted(
        tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url)
    inbox = tmp_path / "pi-inbox"
    outside = _outside(tmp_path, ["small.txt", "big.bin"])
    (inbox / "deep").mkdir(parents=True)
    os.link(tmp_path / "outside" / "small.txt", inbox / "small.txt")
    os.link(tmp_path / "outside" / "big.bin", inbox / "deep" / "big.bin")
    (inbox / "mine.txt").write_bytes(b"mine")
    set_host_state(config, "online")
    async with running_inbox(config) as task:
        await until(lambda: host_files(tmp_path) == {"mine.txt": b"mine"})
        await until(lambda: len(inbox_json(config)["rejected"]) == 2, what="both listed")
        doc = inbox_json(config)
        assert not task.done()
    assert tree(tmp_path / "outside") == outside
    assert tree(inbox) == {"small.txt": outside["small.txt"], "deep/big.bin": outside["big.bin"]}
    assert [r["path"] for r in doc["rejected"]] == ["deep/big.bin", "small.txt"]
    assert all("hard link" in r["message"] and r["code"] == "hard_link"
               for r in doc["rejected"])
    assert host_files(tmp_path) == {"mine.txt": b"mine"}


async def test_a_hard_link_removed_later_lets_the_file_go(tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url, rescan_s=0.1)
    inbox = tmp_path / "pi-inbox"
    inbox.mkdir()
    (inbox / "twice.txt").write_bytes(b"two names")
    os.link(inbox / "twice.txt", tmp_path / "other-name.txt")
    set_host_state(config, "online")
    async with running_inbox(config):
        await until(lambda: inbox_json(config)["rejected"] != [])
        (tmp_path / "other-name.txt").unlink()  # one name left: its ctime changes
        await until(lambda: host_files(tmp_path) == {"twice.txt": b"two names"})
        await until(lambda: inbox_json(config)["rejected"] == [])
    assert tree(inbox) == {}


async def test_a_name_that_is_not_utf8_stays_listed_and_the_rest_goes(
        tmp_path: Path, host_url: str) -> None:
    config = pi_config_with_inbox(tmp_path, host_url)
    inbox = tmp_path / "pi-inbox"
    (inbox / "sub").mkdir(parents=True)
    bad = os.path.join(os.fsencode(inbox), b"caf\xe9.txt")
    bad_big = os.path.join(os.fsencode(inbox), b"sub", b"\xff\xfe.bin")
    with open(bad, "wb") as f:
        f.write(b"latin-1 name")
    with open(bad_big, "wb") as f:
        f.write(os.urandom(inboxwire.SMALL_FILE_BYTES + 1))
    files = {"a.txt": b"alpha", "sub/b.txt": b"beta"}
    for rel, data in files.items():
        (inbox / rel).write_bytes(data)
    set_host_state(config, "online")
    async with running_inbox(config) as task:
        await until(lambda: host_files(tmp_path) == files, what="the others delivered")
        await until(lambda: len(inbox_json(config)["rejected"]) == 2, what="both listed")
        (inbox / "later.txt").write_bytes(b"still running")
        await until(lambda: "later.txt" in host_files(tmp_path), what="the inbox goes on")
        assert not task.done()
        raw = (config.public_dir / "inbox.json").read_bytes()
    doc = json.loads(raw.decode("utf-8"))  # strict: valid UTF-8
    assert [r["path"] for r in doc["rejected"]] == ["caf\\xe9.txt", "sub/\\xff\\xfe.bin"]
    assert all(r["code"] == "bad_encoding" for r in doc["rejected"])
    assert os.path.exists(bad), "left in place"
    assert os.path.exists(bad_big), "left in place"
