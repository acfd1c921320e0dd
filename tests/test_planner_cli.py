"""``edgepair host plan`` end to end: files → DP → a signed PUT to the Pi's real api app."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handshake import documents
from handshake.documents import ControlDocument, PlanSummary, Readback
from handshake.errors import ConfigError, RequestError
from handshake.util.timeutil import iso
from host import config as host_config
from host.planner import cli
from host.planner.inputs import InputError
from pi import api
from pi.config import load
from pi.control.plan import PLAN_FILE, validate
from pi.heartbeat import Beat
from pi.hostloop import HostController
from tests.helpers import KEY, free_port, pi_toml, write_secrets
from tests.memdns import MemoryDns

ROOT = Path(__file__).resolve().parent.parent
CONTROL = """
[control]
profile = "sim-inverter"
address = "127.0.0.1"
max_charge_w = 3000
max_discharge_w = 3000
soc_min_pct = 10
soc_max_pct = 95
[[control.loads]]
name = "boiler"
address = "127.0.0.1"
"""


def slot_now() -> datetime:
    return datetime.fromtimestamp(time.time() // 900 * 900, UTC)


def write_prices(path: Path, hours: float) -> Path:
    start = slot_now() - timedelta(hours=1)
    rows = ["start,price_eur_kwh"]
    for q in range(int((hours + 1) * 4)):
        at = start + timedelta(minutes=15 * q)
        rows.append(f"{iso(at)},{0.10 + 0.08 * (1 + math.sin(q / 10)):.4f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def host_toml(tmp: Path, pi_url: str, *, hours: float = 24, extra: str = "") -> Path:
    secrets = write_secrets(tmp / "host-secrets.toml")
    prices = write_prices(tmp / "prices.csv", hours)
    path = tmp / "host.toml"
    path.write_text(f"""
[host]
listen = "127.0.0.3:{free_port()}"
state_dir = "{tmp / 'host-state'}"
secrets_file = "{secrets}"
[pi]
url = "{pi_url}"
[planner]
prices = "{prices.name}"
price_add_eur_kwh = 0.12
export_price_eur_kwh = 0.07
load_kwh_per_day = 9
capacity_wh = 10000
soc_min_pct = 10
soc_max_pct = 95
max_charge_w = 3000
max_discharge_w = 3000
soc_step_pct = 0.1
horizon_h = 24
push_deadline_s = 2
{extra}
""")
    return path


@pytest.fixture
async def pi(tmp_path: Path, aiohttp_server: Any) -> tuple[str, Path]:
    """The Pi's real api app with [control]: (url, private dir)."""
    pi_dir = tmp_path / "pi"
    pi_dir.mkdir()
    config = load(pi_toml(pi_dir, extra=CONTROL))

    async def send_wol() -> None:
        return None

    async def probe() -> Beat:
        return Beat(ok=False, at=time.time(), error="test")

    controller = HostController(config, MemoryDns(), send_wol, probe)
    await controller.start()
    server = await aiohttp_server(api.build_app(config, controller, KEY))
    return str(server.make_url("")).rstrip("/"), config.private_dir


async def run(path: Path, *argv: str) -> int:
    config = host_config.load(path)
    args = cli._parser().parse_args(["--config", str(path), *argv])
    return await cli._run(config, config.planner, args)


async def test_plan_and_push(tmp_path: Path, pi: tuple[str, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    url, private = pi
    path = host_toml(tmp_path, url, extra='[[planner.loads]]\nname = "boiler"\npower_w = 2000\nhours = 2')
    assert await run(path) == 0
    out = capsys.readouterr().out
    assert "pushed to" in out
    assert "accepted" in out
    assert "saves" in out
    stored = json.loads((private / PLAN_FILE).read_text())
    pi_config = load(pi_toml(tmp_path / "pi", extra=CONTROL))
    plan = validate(stored, pi_config.control.limits, ("boiler",))
    assert len(plan.slots) == 96
    assert plan.valid_from == slot_now()
    assert sum(slot.loads["boiler"] for slot in plan.slots) >= 8  # 2 h in the cheapest slots
    opt = stored["optimizer"]
    assert opt["status"] == "optimal"
    assert opt["soc_source"] == "config"
    assert opt["savings_eur"] > 0  # cheap slots fill the battery for the dear ones
    first_seq = stored["seq"]
    assert await run(path) == 0  # again: a higher seq, accepted
    assert json.loads((private / PLAN_FILE).read_text())["seq"] > first_seq


async def test_the_pis_fresh_soc_is_the_start(tmp_path: Path, pi: tuple[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    url, private = pi
    public = private.parent / "public"
    documents.publish(public / "control.json", ControlDocument(
        generated_at=iso(datetime.now(UTC)) or "", interval_s=30, mode="following",
        readback=Readback(soc_pct=73.0)))
    assert await run(host_toml(tmp_path, url), "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["optimizer"]["start_soc_pct"], doc["optimizer"]["soc_source"]) == (73.0, "pi")
    assert not (private / PLAN_FILE).exists()  # a dry run pushes nothing
    documents.publish(public / "control.json", ControlDocument(
        generated_at=iso(datetime.now(UTC) - timedelta(hours=1)) or "", interval_s=30,
        mode="following", readback=Readback(soc_pct=73.0)))
    assert await run(host_toml(tmp_path, url), "--dry-run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["optimizer"]["soc_source"] == "config"  # stale


async def test_a_stale_seq_after_lost_host_state_moves_above_the_pis(
        tmp_path: Path, pi: tuple[str, Path]) -> None:
    url, private = pi
    path = host_toml(tmp_path, url)
    assert await run(path) == 0
    stored = json.loads((private / PLAN_FILE).read_text())
    (private / PLAN_FILE).write_text(json.dumps({**stored, "seq": 10**12}))
    documents.publish(private.parent / "public" / "control.json", ControlDocument(
        generated_at=iso(datetime.now(UTC)) or "", interval_s=30, mode="following",
        plan=PlanSummary(id=stored["id"], seq=10**12)))
    assert await run(path) == 0
    assert json.loads((private / PLAN_FILE).read_text())["seq"] == 10**12 + 1


async def test_the_pi_refuses_limits_it_does_not_allow(tmp_path: Path, pi: tuple[str, Path]) -> None:
    url, _ = pi
    path = host_toml(tmp_path, url).read_text().replace("max_charge_w = 3000", "max_charge_w = 5000")
    (tmp_path / "host.toml").write_text(path)
    with pytest.raises(RequestError, match=r"limits.max_charge_w.*≤ 3000"):
        await run(tmp_path / "host.toml")


async def test_short_or_missing_inputs_are_clear_errors(tmp_path: Path) -> None:
    path = host_toml(tmp_path, "http://127.0.0.1:9", hours=2)
    with pytest.raises(InputError, match=r"prices .* cover only 2 h .* min_horizon_h = 4 h"):
        await run(path, "--dry-run")
    (tmp_path / "prices.csv").unlink()
    with pytest.raises(InputError, match=r"prices\.csv: cannot read"):
        await run(path, "--dry-run")


async def test_the_command_line(tmp_path: Path) -> None:
    path = host_toml(tmp_path, "http://127.0.0.1:9", hours=2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handshake", "host", "plan", "--config", str(path), "--dry-run", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"cover only 2 h" in err
    assert b"Traceback" not in err
    (tmp_path / "host.toml").write_text(path.read_text().replace("[planner]", "[planner]\nprice = 1"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "handshake", "host", "plan", "--config", str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"planner.price: unknown key (did you mean 'prices'?)" in err


def test_the_demo_plan_is_valid_on_the_demo_pi(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    doc = cli.demo_plan(now, soc_pct=40, seq=7, loads=("boiler",))
    control = load(pi_toml(tmp_path, extra=CONTROL)).control
    plan = validate(doc, control.limits, ("boiler",), now=now)
    assert len(plan.slots) == 96
    assert plan.seq == 7
    assert {slot.battery_mode for slot in plan.slots} >= {"normal"}
    assert sum(slot.loads["boiler"] for slot in plan.slots) >= 8
    assert doc["optimizer"]["savings_eur"] > -0.01  # a sunny day leaves little to gain


async def test_a_plan_worse_than_doing_nothing_is_never_pushed(
        tmp_path: Path, pi: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """Modes that cannot follow the forecast (here: charging from the grid all day): the
    check simulates them, finds them dearer than doing nothing and pushes self-consumption."""
    from handshake.modes import Command  # noqa: PLC0415
    from host.planner import dp  # noqa: PLC0415

    def bad(p: dp.Problem, _: dp.Solution) -> list[Command]:
        return [Command("charge", 3000.0, 95.0)] * p.slots

    monkeypatch.setattr(dp, "modes", bad)
    url, private = pi
    path = host_toml(tmp_path, url, extra="export_cap_w = 2000")
    assert await run(path) == 0
    out = capsys.readouterr().out
    assert "not the DP's plan: the plan as the Pi would carry it out costs" in out
    assert "self-consumption instead" in out
    assert any("self-consumption instead" in r.message and r.levelname == "WARNING"
               for r in caplog.records)
    stored = json.loads((private / PLAN_FILE).read_text())  # what went out to the Pi
    opt = stored["optimizer"]
    assert opt["status"] == "fallback"
    assert "self-consumption instead" in opt["reason"]
    assert opt["planned_cost_eur"] > opt["baseline_cost_eur"] == opt["expected_cost_eur"]
    assert opt["savings_eur"] == 0
    # Self-consumption within the site's export cap.
    assert {(s["battery_mode"], s.get("export_cap_w")) for s in stored["slots"]} == \
        {("limit_export", 2000.0)}


async def test_export_prices_and_caps_from_the_config(tmp_path: Path, pi: tuple[str, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = pi
    start = slot_now() - timedelta(hours=1)
    rows = ["start,price_eur_kwh"] + [f"{iso(start + timedelta(minutes=15 * q))},"
                                      f"{-0.02 if 20 <= q < 40 else 0.05}" for q in range(4 * 26)]
    (tmp_path / "export.csv").write_text("\n".join(rows) + "\n")
    text = host_toml(tmp_path, url).read_text().replace("export_price_eur_kwh = 0.07\n", "")
    (tmp_path / "host.toml").write_text(text + 'export_prices = "export.csv"\n'
                                        "export_cap_w = 3000\nnegative_price_export_cap_w = 0\n")
    assert await run(tmp_path / "host.toml", "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    caps = {s.get("export_cap_w") for s in doc["slots"]}
    assert caps <= {0.0, 3000.0}
    assert 0.0 in caps  # while feeding in costs money: curtailed to nothing
    (tmp_path / "host.toml").write_text(text + 'export_prices = "export.csv"\n'
                                        "export_price_eur_kwh = 0.07\n")
    with pytest.raises(ConfigError, match=r"export_price_eur_kwh: expected either"):
        host_config.load(tmp_path / "host.toml")
    (tmp_path / "host.toml").write_text(text + 'export_prices = "missing.csv"\n')
    with pytest.raises(InputError, match=r"missing\.csv: cannot read"):
        await run(tmp_path / "host.toml", "--dry-run")


def battery_limits(battery: Any) -> Any:
    from pi.control.config import Limits  # noqa: PLC0415

    return Limits(max_charge_w=battery.max_charge_w, max_discharge_w=battery.max_discharge_w,
                  soc_min_pct=battery.soc_min_pct, soc_max_pct=battery.soc_max_pct)
