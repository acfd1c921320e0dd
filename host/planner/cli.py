"""``edgepair host plan --config FILE [--dry-run] [--json]``: make the energy plan and push it to the Pi."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from handshake import documents
from handshake.client import HandshakeClient
from handshake.documents import ControlDocument, DocumentError
from handshake.errors import ConfigError, EdgepairError, PeerUnavailable, RequestError
from handshake.plan import SLOT_S, UNBOUNDED, PlanDocument, PlanSlot, validate
from handshake.util import atomic
from handshake.util.cliexit import EXIT_OK, report
from handshake.util.timeutil import iso, parse_iso, utcnow
from host import activity
from host import config as host_config
from host.planner import dp, inputs
from host.planner.check import check
from host.planner.config import PlannerConfig, ShiftableLoad
from host.planner.inputs import DailyProfile, InputError, Series

log = logging.getLogger(__name__)

STATE_FILE = "planner.json"
# The Pi's read-back is trusted as the start SoC only while it is this fresh.
SOC_MAX_AGE_S = 600.0


@dataclass(frozen=True, slots=True)
class Inputs:
    start: datetime
    price: list[float]  # EUR/kWh, what the household pays
    export_price: list[float]
    pv_w: list[float]
    load_w: list[float]
    loads: dict[str, list[bool]]
    export_cap_w: list[float | None] | None = None  # the site's feed-in cap per slot


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = host_config.load(args.config)
        planner: PlannerConfig | None = config.planner
        if planner is None:
            raise ConfigError([f"{args.config}: [planner]: section missing"])
        # The agent's idle loop sees the run (another process) by its marker file.
        with activity.busy("planner run", config.private_dir / activity.MARKER_DIR):
            return asyncio.run(_run(config, planner, args))
    except (EdgepairError, ValueError) as exc:
        return report(exc)


async def _run(config: host_config.HostConfig, planner: PlannerConfig,
               args: argparse.Namespace) -> int:
    now = args.now or utcnow()
    tz = _tz(planner)
    data = await gather_inputs(planner, now, tz)
    soc, soc_source = args.soc, "cli"
    if soc is None:
        soc, soc_source = await pi_soc(config.pi.url, now), "pi"
        if soc is None:
            soc, soc_source = planner.initial_soc_pct, "config"
    state_path = config.host.state_dir / STATE_FILE
    seq = next_seq(state_path, now)
    document = build(planner, data, soc, soc_source, seq, now)
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        print(describe(document, tz))
    if args.dry_run:
        return EXIT_OK
    answer = await push(config, planner, document)
    atomic.write_json(state_path, {"last_seq": document["seq"], "pushed_at": iso(utcnow()),
                                   "id": document["id"]})
    if not args.json:
        print(f"pushed to {config.pi.url}: {'unchanged' if answer.get('unchanged') else 'accepted'} "
              f"(seq {document['seq']})")
    return EXIT_OK


async def gather_inputs(planner: PlannerConfig, now: datetime, tz: tzinfo) -> Inputs:
    """Fetch and parse every input and put it onto the slot grid from the current slot on."""
    sources = [planner.prices, planner.pv_forecast, planner.load_baseline, planner.export_prices]
    raw = await asyncio.gather(*(inputs.fetch(s, planner.fetch_timeout_s) if s else _none()
                                 for s in sources))
    assert raw[0] is not None
    prices = inputs.parse_prices(raw[0], planner.prices.location, planner.prices.format)
    exports = inputs.parse_prices(raw[3], planner.export_prices.location,
                                  planner.export_prices.format) \
        if planner.export_prices and raw[3] is not None else None
    pv = inputs.parse_pv(raw[1], planner.pv_forecast.location, planner.pv_forecast.format, tz) \
        if planner.pv_forecast and raw[1] is not None else None
    load: Series | DailyProfile = inputs.parse_load(raw[2], planner.load_baseline.location, tz) \
        if planner.load_baseline and raw[2] is not None else \
        inputs.default_load(planner.load_kwh_per_day, tz)
    start = datetime.fromtimestamp(now.timestamp() // SLOT_S * SLOT_S, UTC)
    end = horizon_end(start, planner, prices, pv, load, exports)
    count = int((end - start).total_seconds() // SLOT_S)
    market = prices.slots(start, count, SLOT_S)
    price = [(m + planner.price_add_eur_kwh) * planner.price_factor for m in market]
    load_w = load.slots(start, count, SLOT_S)
    switches = shiftable(planner, start, price, tz)
    load_w = with_loads(planner, load_w, switches)
    export_price = exports.slots(start, count, SLOT_S) if exports else \
        [planner.export_price_eur_kwh or 0.0] * count
    return Inputs(start=start, price=price, export_price=export_price,
                  pv_w=pv.slots(start, count, SLOT_S) if pv else [0.0] * count, load_w=load_w,
                  loads=switches, export_cap_w=export_caps(planner, market))


def export_caps(planner: PlannerConfig, market: Sequence[float]) -> list[float | None] | None:
    """The site's feed-in cap per slot: export_cap_w, and negative_price_export_cap_w while
    the market price is below 0 (the lower of the two); None when neither is set."""
    always, negative = planner.export_cap_w, planner.negative_price_export_cap_w
    if always is None and negative is None:
        return None
    caps = []
    for m in market:
        both = [c for c in (always, negative if m < 0 else None) if c is not None]
        caps.append(min(both) if both else None)
    return caps


def horizon_end(start: datetime, planner: PlannerConfig, prices: Series, pv: Series | None,
                load: Series | DailyProfile, exports: Series | None = None) -> datetime:
    """Where the inputs run out (or horizon_h); InputError when that is under min_horizon_h."""
    end = start + timedelta(hours=planner.horizon_h)
    limiting = "horizon_h"
    for name, series in (("prices", prices), ("PV forecast", pv), ("load baseline", load),
                         ("export prices", exports)):
        if series is None:
            continue
        covered = series.covered_until(start)
        if covered < end:
            end, limiting = covered, f"{name} ({getattr(series, 'name', name)})"
    end = datetime.fromtimestamp(end.timestamp() // SLOT_S * SLOT_S, UTC)
    hours = (end - start).total_seconds() / 3600
    if hours < planner.min_horizon_h:
        first = prices.periods[0][0]
        raise InputError(f"the {limiting} cover only {max(hours, 0):g} h from {iso(start)} "
                         f"(prices run {iso(first)}–{iso(prices.periods[-1][1])}); a plan needs "
                         f"at least min_horizon_h = {planner.min_horizon_h:g} h. Day-ahead prices "
                         "for tomorrow appear around 13:00 CET.")
    return end


def shiftable(planner: PlannerConfig, start: datetime, price: Sequence[float],
              tz: tzinfo) -> dict[str, list[bool]]:
    """Each shiftable load runs its hours in the cheapest slots of every local day."""
    out: dict[str, list[bool]] = {}
    days: dict[Any, list[int]] = {}
    for t in range(len(price)):
        days.setdefault((start + timedelta(seconds=t * SLOT_S)).astimezone(tz).date(), []).append(t)
    for load in planner.loads:
        on = [False] * len(price)
        for slots in days.values():
            wanted = min(len(slots), math.ceil(load.hours * 3600 / SLOT_S - 1e-9))
            for t in sorted(slots, key=lambda t: (price[t], t))[:wanted]:
                on[t] = True
        out[load.name] = on
    return out


def with_loads(planner: PlannerConfig, load_w: list[float],
               switches: dict[str, list[bool]]) -> list[float]:
    """The load baseline plus the shiftable loads where they run."""
    for load in planner.loads:
        load_w = [w + (load.power_w if on else 0.0)
                  for w, on in zip(load_w, switches[load.name], strict=True)]
    return load_w


def build(planner: PlannerConfig, data: Inputs, soc: float, soc_source: str, seq: int,
          now: datetime) -> dict[str, Any]:
    """Solve, check the plan as carried out against doing nothing, and write the plan document."""
    b = planner.battery
    problem = dp.Problem(price=data.price, export_price=data.export_price, pv_w=data.pv_w,
                         load_w=data.load_w, battery=b, soc0_pct=soc, slot_s=SLOT_S,
                         soc_step_pct=planner.soc_step_pct,
                         grid_import_max_w=planner.grid_import_max_w, export_cap_w=data.export_cap_w)
    started = time.perf_counter()
    solution = dp.solve(problem)
    solve_ms = (time.perf_counter() - started) * 1000
    verdict = check(problem, dp.modes(problem, solution))
    if verdict.reason is not None:
        log.warning("planner: %s", verdict.reason)
    until = data.start + timedelta(seconds=len(verdict.commands) * SLOT_S)
    slots = [PlanSlot(start=_iso(data.start + timedelta(seconds=t * SLOT_S)),
                      battery_mode=c.mode, power_w=c.power_w, soc_target=c.soc_target,
                      export_cap_w=c.export_cap_w,
                      loads={name: on[t] for name, on in data.loads.items()})
             for t, c in enumerate(verdict.commands)]
    optimizer: dict[str, Any] = {
        "status": verdict.status, "solver": "dp", "soc_step_pct": planner.soc_step_pct,
        "solve_ms": round(solve_ms, 1), "start_soc_pct": round(soc, 1), "soc_source": soc_source,
        "expected_cost_eur": round(verdict.expected_eur, 4),
        "end_soc_pct": round(verdict.expected.soc_pct[-1], 1),
        "baseline_cost_eur": round(verdict.baseline_eur, 4),
        "baseline_end_soc_pct": round(verdict.baseline.soc_pct[-1], 1),
        # Net costs: energy left in the battery is worth the horizon's lowest price.
        "savings_eur": round(verdict.savings_eur, 4),
        "optimum_eur": round(solution.cost, 4),
        "planned_cost_eur": round(verdict.planned_eur, 4),
    }
    if verdict.reason is not None:
        optimizer["reason"] = verdict.reason
    document = PlanDocument(
        id=f"{data.start:%Y%m%dT%H%MZ}-{seq}", seq=seq,
        generated_at=_iso(now), valid_from=_iso(data.start), valid_until=_iso(until),
        slot_s=SLOT_S,
        limits={"max_charge_w": b.max_charge_w, "max_discharge_w": b.max_discharge_w,
                "soc_min_pct": b.soc_min_pct, "soc_max_pct": b.soc_max_pct},
        optimizer=optimizer, slots=slots).to_json()
    validate(document, UNBOUNDED, None)  # the contract's shape: a bug here, not a 400 from the Pi
    return document


def demo_plan(now: datetime, soc_pct: float = 50.0, seq: int = 1,
              loads: Sequence[str] = (), hours: float = 24.0) -> dict[str, Any]:
    """A plan from made-up but plausible inputs, through the real DP (``edgepair demo``'s host).

    Prices follow a day-ahead shape (dear mornings and evenings, a cheap sunny noon), PV a
    clear day, the load the default household shape; each load runs 2 h in the cheapest slots.
    """
    tz = datetime.now().astimezone().tzinfo or UTC
    start = datetime.fromtimestamp(now.timestamp() // SLOT_S * SLOT_S, UTC)
    count = int(hours * 3600 // SLOT_S)
    local = [(start + timedelta(seconds=(t + 0.5) * SLOT_S)).astimezone(tz) for t in range(count)]
    hour = [at.hour + at.minute / 60 for at in local]
    price = [0.22 + 0.10 * math.exp(-((h - 8) ** 2) / 3) + 0.14 * math.exp(-((h - 19) ** 2) / 4)
             - 0.07 * math.exp(-((h - 13) ** 2) / 6) for h in hour]
    pv = [4000 * max(0.0, math.sin(math.pi * (h - 6) / 14)) if 6 < h < 20 else 0.0 for h in hour]
    load_w = inputs.default_load(9.0, tz).slots(start, count, SLOT_S)
    planner = PlannerConfig(prices_at="demo", export_price_eur_kwh=0.08, soc_step_pct=0.1,
                            loads=tuple(ShiftableLoad(name=name, power_w=2000.0, hours=2.0)
                                        for name in loads))
    switches = shiftable(planner, start, price, tz)
    data = Inputs(start=start, price=price, export_price=[0.08] * count, pv_w=pv,
                  load_w=with_loads(planner, load_w, switches), loads=switches)
    return build(planner, data, soc_pct, "demo", seq, now)


def describe(document: dict[str, Any], tz: tzinfo) -> str:
    opt = document["optimizer"]
    start = parse_iso(document["valid_from"]).astimezone(tz)
    until = parse_iso(document["valid_until"]).astimezone(tz)
    counts: dict[str, int] = {}
    for slot in document["slots"]:
        counts[slot["battery_mode"]] = counts.get(slot["battery_mode"], 0) + 1
    modes = ", ".join(f"{mode} {n}" for mode, n in sorted(counts.items()))
    why = f"\n  not the DP's plan: {opt['reason']}" if opt.get("reason") else ""
    return (f"plan {document['id']}: {len(document['slots'])} slots {start:%a %H:%M}–{until:%a %H:%M} "
            f"from SoC {opt['start_soc_pct']:g} % ({opt['soc_source']}), solved in "
            f"{opt['solve_ms']:g} ms\n"
            f"  expected cost {opt['expected_cost_eur']:.2f} EUR, ending at {opt['end_soc_pct']:g} %; "
            f"doing nothing {opt['baseline_cost_eur']:.2f} EUR, ending at "
            f"{opt['baseline_end_soc_pct']:g} %: saves {opt['savings_eur']:.2f} EUR\n"
            f"  slots: {modes}{why}")


async def pi_soc(pi_url: str, now: datetime) -> float | None:
    """The battery's SoC from the Pi's control.json, when it is fresh."""
    try:
        async with HandshakeClient(pi_url, None, timeout_s=5) as client:
            doc = documents.convert(await client.request("GET", "/data/control.json",
                                                         signed=False), ControlDocument)
    except (PeerUnavailable, RequestError, DocumentError) as exc:
        log.warning("no SoC from the Pi (%s): using initial_soc_pct", exc)
        return None
    soc = doc.readback.soc_pct if doc.readback is not None else None
    age = now.timestamp() - doc.generated
    if soc is None or age > SOC_MAX_AGE_S:
        log.warning("the Pi's SoC read-back is missing or %0.f s old: using initial_soc_pct", age)
        return None
    return float(soc)


async def push(config: host_config.HostConfig, planner: PlannerConfig,
               document: dict[str, Any]) -> dict[str, Any]:
    """PUT the plan; on a stale seq (the host lost its state) retry once above the Pi's."""
    key = config.secrets().handshake_key
    async with HandshakeClient(config.pi.url, key) as client:
        try:
            answer: dict[str, Any] = await client.request_with_retry(
                "PUT", "/api/v1/plan", document, deadline_s=planner.push_deadline_s)
            return answer
        except RequestError as exc:
            if exc.code != "stale_seq":
                raise
            status = await client.request("GET", "/data/control.json", signed=False)
            try:
                plan = documents.convert(status, ControlDocument).plan
            except DocumentError:
                plan = None
            pi_seq = document["seq"] if plan is None else plan.seq
            document["seq"] = max(document["seq"], pi_seq) + 1
            document["id"] = f"{document['id'].rsplit('-', 1)[0]}-{document['seq']}"
            retried: dict[str, Any] = await client.request_with_retry(
                "PUT", "/api/v1/plan", document, deadline_s=planner.push_deadline_s)
            return retried


def next_seq(path: Path, now: datetime) -> int:
    """Monotonic: above the last pushed seq, and the Unix time so a lost state still moves up."""
    try:
        last = int((atomic.read_json(path) or {}).get("last_seq", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        last = 0
    return max(last + 1, int(now.timestamp()))


def _iso(at: datetime) -> str:
    return iso(at) or ""


async def _none() -> None:
    return None


def _tz(planner: PlannerConfig) -> tzinfo:
    if planner.timezone:
        return ZoneInfo(planner.timezone)
    local = datetime.now().astimezone().tzinfo
    return local or UTC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair host plan", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, metavar="FILE")
    parser.add_argument("--dry-run", action="store_true", help="plan and print; push nothing")
    parser.add_argument("--json", action="store_true", help="print the plan document")
    parser.add_argument("--soc", type=float, metavar="PCT",
                        help="start SoC (default: the Pi's read-back, else initial_soc_pct)")
    parser.add_argument("--now", type=_timestamp, help=argparse.SUPPRESS)  # tests, benchmarks
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _timestamp(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
