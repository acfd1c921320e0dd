"""host.activity: the built-in busy signals, counted across threads, tasks and processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from host import activity


def test_busy_counts_nested_and_concurrent_blocks() -> None:
    assert activity.current() == []
    with activity.busy("inbox upload"):
        assert activity.current() == ["inbox upload"]
        with activity.busy("inbox upload"), activity.busy("notify going-offline"):
            assert activity.current() == ["inbox upload ×2", "notify going-offline"]
        assert activity.current() == ["inbox upload"]
    assert activity.current() == []


def test_an_exception_ends_the_activity() -> None:
    with pytest.raises(RuntimeError), activity.busy("planner run"):
        raise RuntimeError("boom")
    assert activity.current() == []


def test_threads_and_tasks_in_parallel_leave_nothing_behind() -> None:
    seen: list[int] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        with activity.busy("inbox upload"):
            barrier.wait()
            seen.append(len(activity.current()))
            barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(gate: asyncio.Event) -> None:
        with activity.busy("plan push"):
            await gate.wait()

    async def tasks() -> list[str]:
        gate = asyncio.Event()
        running = [asyncio.create_task(task(gate)) for _ in range(3)]
        await asyncio.sleep(0)
        during = activity.current()
        gate.set()
        await asyncio.gather(*running)
        return during

    assert asyncio.run(tasks()) == ["plan push ×3"]
    assert seen == [1] * 8
    assert activity.current() == []


def test_another_process_is_seen_by_its_marker_while_it_lives(tmp_path: Path) -> None:
    markers = tmp_path / "activity"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom host import activity\nfrom pathlib import Path\n"
         "with activity.busy('planner run', Path(sys.argv[1])):\n"
         "    print('in', flush=True); time.sleep(30)\n", str(markers)],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"in\n"
        assert activity.current(markers) == ["planner run"]
    finally:
        child.kill()
        child.wait()
    # Killed: its marker stays behind, but a dead process keeps nothing awake.
    assert len(list(markers.iterdir())) == 1
    assert activity.current(markers) == []
    with activity.busy("planner run", markers):
        # This process's own marker is not counted twice.
        assert activity.current(markers) == ["planner run"]
    assert len(list(markers.iterdir())) == 1
