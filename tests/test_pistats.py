"""pi.json: the Pi's own health, and which daemons live (each by its own file's age)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from handshake import documents
from handshake.util.timeutil import iso
from pi import pistats

NOW = 1_900_000_000.0


def _write(public: Path, name: str, age_s: float, interval_s: float) -> None:
    (public / name).write_text(json.dumps({"schema": "x", "generated_at": iso(NOW - age_s),
                                           "interval_s": interval_s}))


def test_each_daemon_is_judged_by_the_age_of_its_own_file(tmp_path: Path) -> None:
    public = tmp_path / "public"
    public.mkdir()
    _write(public, "power.json", age_s=12, interval_s=10)  # within 3 intervals
    _write(public, "inbox.json", age_s=200, interval_s=30)  # a stopped daemon's last words
    (public / "control.json").write_text("{broken")
    states = pistats.daemon_states(public, ("api", "power", "inbox", "control"), NOW)
    assert states["api"]["running"] is True
    assert states["api"]["pid"] == os.getpid()
    assert (states["power"]["running"], states["power"]["last_seen"]) == (True, iso(NOW - 12))
    assert (states["inbox"]["running"], states["inbox"]["last_seen"]) == (False, iso(NOW - 200))
    assert (states["control"]["running"], states["control"]["last_seen"]) == (False, None)
    assert "pid" not in states["power"]  # another process: its pid is not this one's
    # just after start, a daemon that has written nothing yet is not called down
    early = pistats.daemon_states(public, ("api", "control"), NOW, grace_until=NOW + 30)
    assert early["control"]["running"] is None


def test_collect_is_a_whole_document_without_failing(tmp_path: Path) -> None:
    doc = json.loads(documents.encode(pistats.collect(tmp_path, ("api",), 60.0, now=NOW)))
    assert doc["schema"] == "edgepair.pi/1"
    assert doc["generated_at"] == iso(NOW)
    assert doc["stale_after_s"] == 180.0
    assert set(doc["daemons"]) == {"api"}
    assert doc["cpus"] == os.cpu_count()
    assert doc["pihole_configured"] is False
    assert pistats.collect(tmp_path, ("api",), 60.0, now=NOW, pihole=True).pihole_configured
