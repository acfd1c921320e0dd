"""The host's inbox receiver through real HTTP on 127.0.0.1 and the real signing client."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from handshake.auth import sign
from handshake.client import HandshakeClient
from handshake.errors import RequestError
from host import agent
from host import routes as host_routes
from host.inbox import store
from host.inbox.names import TEMP_DIR
from tests.fakes.inbox_site import host_config, sha256, tree, until
from tests.helpers import KEY

Client = TestClient[Any, Any]


@pytest.fixture
async def host(tmp_path: Path, aiohttp_client: Any) -> Client:
    tc: Client = await aiohttp_client(agent.build_app(host_config(tmp_path), boot_id="b"))
    return tc


@pytest.fixture
async def pi(host: Client) -> AsyncIterator[HandshakeClient]:
    async with HandshakeClient(str(host.make_url("")), KEY) as client:
        yield client


async def put(pi: HandshakeClient, path: str, data: bytes, *, announce: str | None = None) -> Any:
    return await pi.stream("PUT", f"/api/v1/inbox/{path}", data,
                           content_sha256=announce or sha256(data), content_length=len(data))


def temp_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "host-inbox" / TEMP_DIR
    return os.listdir(folder) if folder.exists() else []


def inbox(tmp_path: Path) -> dict[str, bytes]:
    """The host inbox's files, without the (empty) temp folder."""
    return {k: v for k, v in tree(tmp_path / "host-inbox").items() if not k.startswith(TEMP_DIR)}


async def test_a_file_is_stored_whole_and_acknowledged_with_its_hash(
        tmp_path: Path, pi: HandshakeClient) -> None:
    data = os.urandom(5000)
    answer = await put(pi, "photos/2026/%C3%A9t%C3%A9.jpg", data)
    assert answer["sha256"] == sha256(data)
    assert answer["stored_as"] == "photos/2026/été.jpg"
    assert answer["duplicate"] is False
    assert inbox(tmp_path) == {"photos/2026/été.jpg": data}
    assert temp_files(tmp_path) == []


async def test_a_streamed_large_file_is_stored(tmp_path: Path, pi: HandshakeClient) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    answer = await pi.stream("PUT", "/api/v1/inbox/big.bin", chunks(),
                             content_sha256=sha256(data), content_length=len(data))
    assert answer["bytes"] == len(data)
    assert inbox(tmp_path) == {"big.bin": data}


async def test_a_resend_is_acknowledged_without_a_second_copy_even_after_the_user_moved_it(
        tmp_path: Path, pi: HandshakeClient) -> None:
    data = b"the same bytes"
    first = await put(pi, "a.txt", data)
    again = await put(pi, "a.txt", data)
    assert again["duplicate"] is True
    assert again["stored_as"] == first["stored_as"] == "a.txt"
    (tmp_path / "host-inbox" / "a.txt").rename(tmp_path / "moved-away.txt")
    after_move = await put(pi, "a.txt", data)
    assert after_move["duplicate"] is True
    assert inbox(tmp_path) == {}, "a file the user took away does not come back"


async def test_a_different_file_with_the_same_name_keeps_both(
        tmp_path: Path, pi: HandshakeClient) -> None:
    await put(pi, "d/report.pdf", b"version 1")
    second = await put(pi, "d/report.pdf", b"version 2")
    third = await put(pi, "d/report.pdf", b"version 3")
    assert (second["stored_as"], third["stored_as"]) == ("d/report (2).pdf", "d/report (3).pdf")
    assert inbox(tmp_path) == {"d/report.pdf": b"version 1", "d/report (2).pdf": b"version 2",
                               "d/report (3).pdf": b"version 3"}


async def test_a_file_stored_before_a_crash_but_without_receipt_is_recognized(
        tmp_path: Path, pi: HandshakeClient) -> None:
    """Crash between placing the file and committing its receipt: the re-send finds it."""
    (tmp_path / "host-inbox" / "x").mkdir(parents=True)
    (tmp_path / "host-inbox" / "x" / "y.bin").write_bytes(b"already here")
    answer = await put(pi, "x/y.bin", b"already here")
    assert answer["duplicate"] is True
    assert answer["stored_as"] == "x/y.bin"
    assert inbox(tmp_path) == {"x/y.bin": b"already here"}


@pytest.mark.parametrize(("path", "status", "code"), [
    ("%2E%2E/escape.txt", 400, "bad_path"),
    ("a/%2E%2E/%2E%2E/escape.txt", 400, "bad_path"),
    ("/etc/escape.txt", 400, "bad_path"),
    ("a%2F..%2F..%2Fescape.txt", 400, "bad_path"),
    ("nul%00.txt", 400, "bad_path"),
    ("ctrl%0A.txt", 400, "bad_path"),
    ("latin1-%E9t%E9.txt", 400, "bad_encoding"),
    ("x" * 300, 414, "name_too_long"),
    (f"{TEMP_DIR}/sneaky", 400, "bad_path"),
    ("a//b", 400, "bad_path"),
])
async def test_dangerous_names_get_a_clear_4xx_and_nothing_is_written(
        tmp_path: Path, pi: HandshakeClient, path: str, status: int, code: str) -> None:
    with pytest.raises(RequestError) as info:
        await put(pi, path, b"payload")
    assert (info.value.status, info.value.code) == (status, code)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"payload"]
    assert written == []


async def test_literal_dot_dot_never_writes_outside(tmp_path: Path, pi: HandshakeClient) -> None:
    with pytest.raises(RequestError) as info:
        await put(pi, "../../escape.txt", b"payload")
    assert 400 <= info.value.status < 500
    assert not any(p.read_bytes() == b"payload" for p in tmp_path.rglob("*") if p.is_file())


async def test_a_symlink_planted_in_the_inbox_is_not_followed(
        tmp_path: Path, pi: HandshakeClient) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "host-inbox").mkdir()
    (tmp_path / "host-inbox" / "link").symlink_to(outside)
    with pytest.raises(RequestError) as info:
        await put(pi, "link/evil.txt", b"payload")
    assert (info.value.status, info.value.code) == (409, "not_a_folder")
    assert os.listdir(outside) == []
    (tmp_path / "host-inbox" / "file").write_bytes(b"in the way")
    with pytest.raises(RequestError) as info:
        await put(pi, "file/x.txt", b"payload")
    assert info.value.code == "not_a_folder"


async def test_signature_is_checked_before_the_body(tmp_path: Path, host: Client) -> None:
    data = b"payload"
    unsigned = await host.put("/api/v1/inbox/a.txt", data=data,
                              headers={"X-Content-SHA256": sha256(data)})
    assert unsigned.status == 401
    assert (await unsigned.json())["error"]["code"] == "unauthorized"
    # Signed for one hash, sent with another: the header is covered by the signature.
    auth = sign(KEY, "PUT", "/api/v1/inbox/a.txt", b"", {"x-content-sha256": sha256(b"other")})
    swapped = await host.put("/api/v1/inbox/a.txt", data=data, headers={
        "Authorization": auth, "X-Content-SHA256": sha256(data)})
    assert swapped.status == 401
    no_hash = await host.put("/api/v1/inbox/a.txt", data=data)
    assert no_hash.status == 400
    assert "X-Content-SHA256" in (await no_hash.json())["error"]["message"]
    assert inbox(tmp_path) == {}


async def test_a_body_that_does_not_match_its_hash_is_refused(
        tmp_path: Path, pi: HandshakeClient) -> None:
    for size in (100, 600_000):  # the small path and the streamed path
        with pytest.raises(RequestError) as info:
            await put(pi, f"f{size}", os.urandom(size), announce=sha256(b"something else"))
        assert (info.value.status, info.value.code) == (422, "content_mismatch")
    assert inbox(tmp_path) == {}
    assert temp_files(tmp_path) == []


async def test_size_limits(tmp_path: Path, aiohttp_client: Any) -> None:
    app = agent.build_app(host_config(tmp_path, max_file_bytes=1000), boot_id="b")
    tc: Client = await aiohttp_client(app)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        with pytest.raises(RequestError) as info:
            await put(pi, "big.bin", os.urandom(1001))
        assert (info.value.status, info.value.code) == (413, "file_too_large")

        async def chunked() -> AsyncIterator[bytes]:
            yield b"x"

        auth = sign(KEY, "PUT", "/api/v1/inbox/c.bin", b"", {"x-content-sha256": sha256(b"x")})
        resp = await tc.put("/api/v1/inbox/c.bin", data=chunked(),
                            headers={"Authorization": auth, "X-Content-SHA256": sha256(b"x")})
        assert resp.status == 411
    assert inbox(tmp_path) == {}


async def test_a_full_disk_is_a_clear_507_and_leaves_nothing_behind(
        tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = agent.build_app(host_config(tmp_path, min_free_bytes=1 << 62), boot_id="b")
    tc: Client = await aiohttp_client(app)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        with pytest.raises(RequestError) as info:
            await put(pi, "a.bin", b"data")
        assert (info.value.status, info.value.code) == (507, "insufficient_storage")
        assert "disk is full" in str(info.value)

    def enospc(self: store.Upload, pieces: list[bytes], hash_too: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.Upload, "write", enospc)
    app = agent.build_app(host_config(tmp_path / "2", min_free_bytes=0), boot_id="b")
    tc = await aiohttp_client(app)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        for size in (10, 500_000):
            with pytest.raises(RequestError) as info:
                await put(pi, f"a{size}.bin", os.urandom(size))
            assert info.value.status == 507
    assert inbox(tmp_path / "2") == {}
    assert temp_files(tmp_path / "2") == []


async def test_an_upload_cut_off_midway_leaves_nothing_at_a_final_path(
        tmp_path: Path, host: Client, pi: HandshakeClient) -> None:
    data = os.urandom(2_000_000)
    auth = sign(KEY, "PUT", "/api/v1/inbox/cut.bin", b"", {"x-content-sha256": sha256(data)})
    _reader, writer = await asyncio.open_connection(host.host, host.port)
    writer.write((f"PUT /api/v1/inbox/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                  f"X-Content-SHA256: {sha256(data)}\r\nContent-Length: {len(data)}\r\n\r\n")
                 .encode() + data[:700_000])
    await writer.drain()
    await until(lambda: len(temp_files(tmp_path)) == 1, what="temp")
    writer.close()
    await writer.wait_closed()
    await until(lambda: temp_files(tmp_path) == [], what="cleanup")
    assert inbox(tmp_path) == {}
    assert (await put(pi, "cut.bin", data))["duplicate"] is False, "a full send works after"


async def test_received_json_and_openapi(tmp_path: Path, aiohttp_client: Any) -> None:
    config = host_config(tmp_path)
    app = agent.build_app(config, boot_id="b")
    tc: Client = await aiohttp_client(app)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        for i in range(3):
            await put(pi, f"n{i}.txt", f"file {i}".encode())
    doc = (await (await tc.get("/api/v1/openapi.json")).json())
    op = doc["paths"]["/api/v1/inbox/{path}"]["put"]
    assert op["security"] == host_routes.SIGNED
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    assert routes == {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    await tc.close()  # cleanup: the last change is published
    received = json.loads((config.public_dir / "inbox-received.json").read_text())
    assert received["schema"] == "edgepair.inbox-received/1"
    assert received["interval_s"] is None
    assert (received["total_files"], received["total_bytes"]) == (3, 18)
    assert [f["path"] for f in received["files"]] == ["n2.txt", "n1.txt", "n0.txt"]
    assert set(received["files"][0]) == {"path", "bytes", "sha256", "received_at", "stored_as"}
    assert received["generated_at"].endswith("Z")


async def test_leftovers_of_a_crash_are_removed_at_start(tmp_path: Path, aiohttp_client: Any) -> None:
    leftover = tmp_path / "host-inbox" / TEMP_DIR / "dead.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    await aiohttp_client(agent.build_app(host_config(tmp_path), boot_id="b"))
    assert not leftover.exists()


async def test_without_an_inbox_section_there_is_no_inbox_route(
        tmp_path: Path, aiohttp_client: Any) -> None:
    config = host_config(tmp_path)
    app = agent.build_app(type(config)(file=config.file, host=config.host, pi=config.pi),
                          boot_id="b")
    tc: Client = await aiohttp_client(app)
    resp = await tc.put("/api/v1/inbox/a.txt", data=b"x")
    assert resp.status in (404, 405)
    assert "error" in await resp.json()


def test_host_config_section(tmp_path: Path) -> None:
    from handshake.errors import ConfigError  # noqa: PLC0415
    from host import config as host_config_module  # noqa: PLC0415

    secrets = tmp_path / "s.toml"
    secrets.write_text(f'handshake_key = "{KEY.hex()}"\n')
    path = tmp_path / "host.toml"
    path.write_text(f'[host]\nsecrets_file = "{secrets}"\n[pi]\nurl = "http://127.0.0.1:1"\n'
                    '[inbox]\ndir = "landing"\nmax_file_bytes = 1000\n')
    inbox_config = host_config_module.load(path).inbox
    assert inbox_config.dir == tmp_path / "landing"
    assert inbox_config.max_file_bytes == 1000
    path.write_text(path.read_text() + "max_fiel_bytes = 3\nmin_free_bytes = -1\n")
    with pytest.raises(ConfigError) as info:
        host_config_module.load(path)
    text = "\n".join(info.value.problems)
    assert "inbox.max_fiel_bytes" in text
    assert "inbox.min_free_bytes" in text


async def test_an_early_answer_does_not_need_the_whole_body(
        tmp_path: Path, host: Client, pi: HandshakeClient) -> None:
    """A re-send the host already has is answered before the (large) body is read."""
    block = os.urandom(64 * 1024)
    data = block * 256  # 16 MiB
    await put(pi, "big.bin", data)
    sent = 0

    async def slowly() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(256):
            sent += len(block)
            yield block
            await asyncio.sleep(0.002)

    answer = await pi.stream("PUT", "/api/v1/inbox/big.bin", slowly(),
                             content_sha256=sha256(data), content_length=len(data))
    assert answer["duplicate"] is True
    assert sent < len(data) / 2
    assert inbox(tmp_path) == {"big.bin": data}


async def test_an_unusable_ledger_keeps_the_agent_up_and_answers_503(
        tmp_path: Path, aiohttp_client: Any) -> None:
    config = host_config(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    config = msgspec.structs.replace(config, host=msgspec.structs.replace(config.host, state_dir=blocker))
    tc: Client = await aiohttp_client(agent.build_app(config, boot_id="b"))
    assert (await tc.get("/api/v1/health")).status == 200
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        with pytest.raises(RequestError) as info:
            await put(pi, "a.txt", b"kept on the Pi")
    assert (info.value.status, info.value.code) == (503, "inbox_unavailable")
    assert inbox(tmp_path) == {}


# -- batches of small files: POST /api/v1/inbox ------------------------------------------

def frame(path: str, data: bytes, sha: str | None = None) -> bytes:
    header = {"path": path, "bytes": len(data), "sha256": sha or sha256(data)}
    return json.dumps(header).encode() + b"\n" + data


async def post_batch(pi: HandshakeClient, body: bytes) -> list[dict[str, Any]]:
    answer = await pi.request("POST", "/api/v1/inbox", raw=body,
                              headers={"Content-Type": "application/x-edgepair-inbox-batch"})
    files: list[dict[str, Any]] = answer["files"]
    return files


async def test_a_batch_answers_each_file_as_its_own_put_would(
        tmp_path: Path, aiohttp_client: Any) -> None:
    config = host_config(tmp_path, max_file_bytes=1000)
    tc: Client = await aiohttp_client(agent.build_app(config, boot_id="b"))
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        await put(pi, "old.txt", b"sent before")
        body = b"".join([
            frame("a/b/new.txt", b"new file"),
            frame("old.txt", b"sent before"),
            frame("%2E%2E/escape.txt", b"payload"),
            frame("lie.txt", b"payload", sha=sha256(b"other")),
            frame("big.bin", b"x" * 1001),
            frame("%C3%A9t%C3%A9.txt", b""),
            frame("a/b/new.txt", b"same name, other bytes"),
        ])
        results = await post_batch(pi, body)
    assert [r["status"] for r in results] == [201, 200, 400, 422, 413, 201, 201]
    assert results[1]["duplicate"] is True
    assert results[2]["error"]["code"] == "bad_path"
    assert results[3]["error"]["code"] == "content_mismatch"
    assert results[6]["stored_as"] == "a/b/new (2).txt"
    assert inbox(tmp_path) == {"old.txt": b"sent before", "a/b/new.txt": b"new file",
                               "été.txt": b"", "a/b/new (2).txt": b"same name, other bytes"}
    assert temp_files(tmp_path) == []
    await tc.close()
    received = json.loads((config.public_dir / "inbox-received.json").read_text())
    assert received["total_files"] == 4


async def test_a_bad_batch_is_refused_whole(tmp_path: Path, host: Client,
                                            pi: HandshakeClient) -> None:
    for body, code in [(b'{"path": "a", "bytes": 5, "sha256": "' + b"0" * 64 + b'"}\nabc',
                        "invalid"),
                       (b"not json\n", "invalid"),
                       (b"".join(frame(f"f{i}", b"x") for i in range(257)), "invalid")]:
        with pytest.raises(RequestError) as info:
            await post_batch(pi, body)
        assert (info.value.status, info.value.code) == (400, code)
    unsigned = await host.post("/api/v1/inbox", data=frame("a.txt", b"x"))
    assert unsigned.status == 401
    too_big = await host.post("/api/v1/inbox", data=b"x" * (5 * 1024 * 1024))
    assert too_big.status == 413
    assert inbox(tmp_path) == {}


async def test_a_batch_on_a_full_disk_stores_nothing(tmp_path: Path, aiohttp_client: Any) -> None:
    app = agent.build_app(host_config(tmp_path, min_free_bytes=1 << 62), boot_id="b")
    tc: Client = await aiohttp_client(app)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        results = await post_batch(pi, frame("a.txt", b"1") + frame("b.txt", b"2"))
    assert [r["status"] for r in results] == [507, 507]
    assert inbox(tmp_path) == {}


@pytest.mark.parametrize("others", [0, 1])  # alone (per-file fsync) or with a sibling (syncfs)
async def test_a_batch_write_failing_halfway_places_nothing_and_is_not_acknowledged(
        tmp_path: Path, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch,
        others: int) -> None:
    """A quota or I/O error in the middle of a file: never linked, never receipted, never 201."""
    real_writev = os.writev

    def half_then_quota(fd: int, pieces: list[bytes]) -> int:
        data = b"".join(pieces)
        if len(data) > 1000:
            os.write(fd, data[:len(data) // 2])
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        return real_writev(fd, pieces)

    monkeypatch.setattr(store.os, "writev", half_then_quota)
    app = agent.build_app(host_config(tmp_path), boot_id="b")
    tc: Client = await aiohttp_client(app)
    photo = os.urandom(100_000)
    body = frame("a.txt", b"x" * 10) * others + frame("photo.jpg", photo)
    async with HandshakeClient(str(tc.make_url("")), KEY) as pi:
        results = await post_batch(pi, body)
        assert [r["status"] for r in results] == [201] * others + [507]
        monkeypatch.setattr(store.os, "writev", real_writev)
        again = await post_batch(pi, frame("photo.jpg", photo))  # no receipt was recorded
    assert again[0]["status"] == 201
    assert again[0]["duplicate"] is False
    assert inbox(tmp_path)["photo.jpg"] == photo


def test_a_large_upload_is_pushed_to_disk_in_windows_as_it_arrives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writeback starts per window (overlapping the network); at most two windows dirty."""
    real = store._sync_file_range()
    assert real is not None  # Linux: the host's platform
    calls: list[tuple[int, int, int]] = []

    def spy(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((offset, length, flags))
        result: int = real(fd, offset, length, flags)
        assert result == 0, os.strerror(ctypes.get_errno())
        return result

    monkeypatch.setattr(store, "_sync_file_range", lambda: spy)
    monkeypatch.setattr(store, "WRITEBACK_WINDOW_BYTES", 4 * 1024 * 1024)
    mib = os.urandom(1024 * 1024)
    upload = store.Upload(tmp_path / "inbox")
    try:
        for _ in range(13):
            upload.write([mib])
        start, finish = store._SFR_WRITE, (store._SFR_WAIT_BEFORE | store._SFR_WRITE
                                           | store._SFR_WAIT_AFTER)
        m = 1024 * 1024
        assert calls == [(0, 4 * m, start),
                         (4 * m, 4 * m, start), (0, 4 * m, finish),
                         (8 * m, 4 * m, start), (4 * m, 4 * m, finish)]
        upload.finish(sha256(mib * 13))  # the fsync makes the rest durable; the hash matches
    finally:
        upload.discard()


def test_without_hard_links_the_rename_never_replaces_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAT and exFAT answer link() with EPERM: the fallback must not replace a file a user
    made under the name meanwhile (renameat2 RENAME_NOREPLACE, checked by the kernel)."""
    root = tmp_path / "inbox"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (root / "a").write_bytes(b"ours")
        (root / "taken").write_bytes(b"the user's")
        with pytest.raises(FileExistsError):
            store.rename_no_replace(fd, "a", fd, "taken")
        assert (root / "taken").read_bytes() == b"the user's"
        assert store.rename_no_replace(fd, "a", fd, "free") is True
        assert (root / "free").read_bytes() == b"ours"
    finally:
        os.close(fd)

    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(store.os, "link", no_links)
    (root / "photo.jpg").write_bytes(b"someone else's photo")
    upload = store.Upload(root)
    try:
        upload.write([b"the Pi's photo"])
        upload.finish(sha256(b"the Pi's photo"))
        stored_as, duplicate = upload.place(("photo.jpg",), sha256(b"the Pi's photo"))
    finally:
        upload.discard()
    assert (stored_as, duplicate) == ("photo (2).jpg", False)
    assert (root / "photo.jpg").read_bytes() == b"someone else's photo"
    assert (root / "photo (2).jpg").read_bytes() == b"the Pi's photo"
