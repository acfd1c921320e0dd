"""The inbox's pure parts: which files are ready (tracker) and which names the host takes."""

from __future__ import annotations

import time

import pytest

from host.inbox import names
from host.inbox.names import PathRejected
from pi.inbox.tracker import Identity, Tracker, ignored

A = Identity(size=10, mtime_ns=1, ino=7)
B = Identity(size=20, mtime_ns=2, ino=7)


@pytest.mark.parametrize(("rel", "skip"), [
    ("report.pdf", False), ("sub/dir/photo.jpg", False), ("notes.tmp.txt", False),
    (".DS_Store", True), ("sub/.hidden", True), (".git/config", True), ("~$report.docx", True),
    ("a/~$lock.xlsx", True), ("movie.part", True), ("x.TMP", True), ("a/b/c.tmp", True),
    ("iso.crdownload", True), ("a.zip.download", True), ("x.partial", True), ("x.download.pdf", False),
])
def test_temp_and_hidden_names_are_ignored(rel: str, skip: bool) -> None:
    assert ignored(rel) is skip


def test_a_closed_file_is_ready_after_settling() -> None:
    t = Tracker(settle_s=10)
    t.written("a", A, now=0)
    t.closed("a", A, now=1)
    assert t.take(10.9) is None
    assert t.take(11) == "a"
    assert t.take(100) is None, "a file in flight is not handed out twice"


def test_a_file_not_seen_closed_is_due_but_needs_proof() -> None:
    """The tracker hands it out after settle_s; the sender must prove no writer (lease)."""
    t = Tracker(settle_s=1, open_without_close_s=3600)
    t.written("slow.bin", A, now=0)
    assert t.take(0.9) is None
    assert t.take(1) == "slow.bin"
    entry = t.files["slow.bin"]
    assert t.needs_proof(entry, now=1)
    t.release("slow.bin", now=1, retry_in=1)  # a writer still has it open
    assert t.take(1.5) is None
    assert t.take(2) == "slow.bin"
    assert t.needs_proof(entry, now=3599)
    assert not t.needs_proof(entry, now=3600), "quiet for an hour: taken as done"
    t.closed("slow.bin", B, now=4000)
    assert not t.needs_proof(entry, now=4000)


def test_created_counts_as_open_for_writing_until_closed() -> None:
    t = Tracker(settle_s=1)
    t.created("new.bin", A, now=0)
    assert t.needs_proof(t.files["new.bin"], now=5)
    t.closed("new.bin", B, now=5)
    assert not t.needs_proof(t.files["new.bin"], now=6)
    assert t.take(5.5) is None
    assert t.take(6) == "new.bin"


def test_a_change_seen_by_a_rescan_restarts_the_settle_time() -> None:
    t = Tracker(settle_s=10)
    t.seen("a", A, now=0)
    t.seen("a", A, now=5)  # unchanged: no restart
    t.seen("b", A, now=0)
    t.seen("b", B, now=5)  # changed
    assert t.take(10) == "a"
    assert t.take(14) is None
    assert t.next_due() == 15
    assert t.take(15) == "b"


def test_longest_waiting_first_and_release_with_retry() -> None:
    t = Tracker(settle_s=1)
    for i, rel in enumerate(["c", "a", "b"]):
        t.closed(rel, A, now=i)
    assert [t.take(10), t.take(10)] == ["c", "a"]
    t.release("c", now=10, retry_in=30)
    t.release("a", now=10)
    assert t.take(10) == "a"
    assert t.take(10) == "b"
    assert t.take(39) is None
    assert t.take(40) == "c"
    assert t.files["c"].failures == 1


def test_a_file_changed_while_in_flight_settles_again_after_release() -> None:
    t = Tracker(settle_s=5)
    t.closed("a", A, now=0)
    assert t.take(5) == "a"
    t.written("a", B, now=6)  # someone writes while it is being sent
    t.closed("a", B, now=7)
    t.release("a", now=8)
    assert t.take(11) is None
    assert t.take(12) == "a"


def test_moves_keep_the_writing_state_and_a_rename_from_a_temp_name_counts() -> None:
    t = Tracker(settle_s=1)
    t.written("a.bin", A, now=0)
    t.moved("a.bin", "b.bin", A, now=1)
    assert "a.bin" not in t.files
    assert t.needs_proof(t.files["b.bin"], now=100), "still not seen closed"
    t.moved("", "done.docx", B, now=2)  # from an ignored temp name
    assert not t.needs_proof(t.files["done.docx"], now=3)


def test_gone_and_gone_below() -> None:
    t = Tracker(settle_s=1)
    for rel in ("x/1", "x/y/2", "xy/3", "4"):
        t.closed(rel, A, now=0)
    t.gone_below("x")
    t.gone("4")
    assert sorted(t.files) == ["xy/3"]
    assert t.take(5) == "xy/3"


def test_ripen_counts_newly_ready_files_without_handing_them_out() -> None:
    t = Tracker(settle_s=1)
    t.closed("a", A, now=0)
    t.closed("b", A, now=5)
    assert t.ripen(2) == 1
    assert t.ripen(3) == 0
    assert t.next_due() == 6
    assert t.take(3) == "a"


def test_ten_thousand_files_are_handed_out_in_linear_time() -> None:
    t = Tracker(settle_s=1)
    for i in range(10_000):
        t.closed(f"d/{i}", A, now=i / 10_000)
        t.written(f"d/{i}", A, now=i / 10_000)  # events repeat; the heap stays lean
        t.closed(f"d/{i}", A, now=i / 10_000)
    start = time.perf_counter()
    taken = []
    while (rel := t.take(5)) is not None:
        taken.append(rel)
        t.gone(rel)
    assert len(taken) == 10_000
    assert taken[:2] == ["d/0", "d/1"]
    assert time.perf_counter() - start < 1.0


# -- names on the host ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "parts"), [
    ("a.txt", ("a.txt",)),
    ("sub/dir/b%20c.pdf", ("sub", "dir", "b c.pdf")),
    ("%C3%A9t%C3%A9/%E2%82%AC.txt", ("été", "€.txt")),
    ("..a/b..", ("..a", "b..")),
    (".hidden", (".hidden",)),
])
def test_good_paths(raw: str, parts: tuple[str, ...]) -> None:
    assert names.parse(raw) == parts


@pytest.mark.parametrize(("raw", "code"), [
    ("", "bad_path"), ("/etc/passwd", "bad_path"), ("a//b", "bad_path"), ("a/", "bad_path"),
    ("..", "bad_path"), ("a/../../b", "bad_path"), ("%2E%2E/x", "bad_path"), ("./x", "bad_path"),
    ("a%2Fb", "bad_path"), ("a%00b", "bad_path"), ("a%01b", "bad_path"),
    ("%FF%FE.txt", "bad_encoding"), ("x" * 256, "name_too_long"),
    ("/".join(["abcdefgh"] * 300), "name_too_long"), ("/".join("a" * 33), "bad_path"),
    (".edgepair-tmp/x", "bad_path"),
])
def test_bad_paths_are_refused_with_a_reason(raw: str, code: str) -> None:
    with pytest.raises(PathRejected) as info:
        names.parse(raw)
    assert info.value.code == code
    assert info.value.status in (400, 414)


@pytest.mark.parametrize(("name", "n", "expected"), [
    ("report.pdf", 1, "report.pdf"), ("report.pdf", 2, "report (2).pdf"),
    ("README", 3, "README (3)"), (".bashrc", 2, ".bashrc (2)"),
    ("backup.tar.gz", 2, "backup (2).tar.gz"),
])
def test_numbered_names(name: str, n: int, expected: str) -> None:
    assert names.numbered(name, n) == expected


def test_numbered_names_stay_within_name_max() -> None:
    long = "é" * 120 + ".txt"  # 244 bytes
    assert len(long.encode()) <= names.MAX_NAME_BYTES
    second = names.numbered(long, 2)
    assert second.endswith(" (2).txt")
    assert len(second.encode()) <= names.MAX_NAME_BYTES
