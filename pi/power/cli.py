"""``edgepair power export``: a plug's history as CSV or JSON, by minute or by day."""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from handshake.errors import ConfigError
from handshake.util.cliexit import report
from handshake.util.timeutil import iso, parse_iso
from pi import config as pi_config
from pi.power.config import PowerConfig
from pi.power.history import MWMS_PER_WH, Calendar, DayRow, History, MinuteRow, database_path

MINUTE_COLUMNS = ("start", "plug", "avg_w", "min_w", "max_w", "wh", "samples", "covered_s")
DAY_COLUMNS = ("date", "plug", "kwh", "source", "integrated_kwh", "plug_kwh", "samples",
               "covered_s")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return export(args, sys.stdout)
    except ConfigError as exc:
        return report(exc)
    except UsageError as exc:
        print(f"edgepair power export: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"edgepair power export: cannot read the power history: {exc}", file=sys.stderr)
        return 1


class UsageError(Exception):
    """A wrong argument, said in one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepair power", description="power history")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("export", help="a plug's history as CSV or JSON",
                       description="Export committed history (the daemon commits about once a "
                       "minute). DATE is a local date YYYY-MM-DD (both ends inclusive) or an ISO "
                       "time with a zone.")
    p.add_argument("--plug", required=True, help="the plug's name")
    p.add_argument("--from", dest="start", required=True, metavar="DATE")
    p.add_argument("--to", dest="end", required=True, metavar="DATE")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", default="csv")
    fmt.add_argument("--json", dest="format", action="store_const", const="json")
    p.add_argument("--resolution", choices=("minute", "day"), default="minute",
                   help="minute aggregates (kept minute_retention_days) or daily energy (forever)")
    p.add_argument("--config", type=Path, required=True, help="the Pi's config file")
    return parser


def export(args: argparse.Namespace, out: TextIO) -> int:
    config = pi_config.load(args.config)
    power = config.power
    if not isinstance(power, PowerConfig):
        raise UsageError(f"{args.config} has no [power] section")
    path = database_path(power, config.private_dir)
    if not path.exists():
        raise UsageError(f"no power history at {path} yet (has the power daemon run?)")
    calendar = Calendar(ZoneInfo(config.schedule.timezone) if config.schedule.timezone else None)
    start = _instant(args.start, calendar, end=False)
    end = _instant(args.end, calendar, end=True)
    if end <= start:
        raise UsageError(f"--to ({args.end}) must not be before --from ({args.start})")
    history = History(path, tz=calendar.tz)
    history.open(readonly=True)
    try:
        if args.plug not in history.plugs():
            known = sorted(set(history.plugs()) | {p.name for p in power.plugs})
            raise UsageError(f"no history for plug {args.plug!r}; known plugs: "
                             f"{', '.join(known) or 'none'}")
        if args.resolution == "minute":
            rows = [_minute(m) for m in history.minutes(int(start // 60), int(-(-end // 60)) - 1,
                                                        args.plug)]
            columns = MINUTE_COLUMNS
        else:
            first, last = calendar.day(start), calendar.day(end - 0.001)
            rows = [_day(d) for d in history.days(first, last, args.plug)]
            columns = DAY_COLUMNS
    finally:
        history.close()
    if args.format == "json":
        json.dump({"plug": args.plug, "from": iso(start), "to": iso(end),
                   "resolution": args.resolution, "rows": rows}, out, indent=1)
        out.write("\n")
    else:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return 0


def _instant(text: str, calendar: Calendar, *, end: bool) -> float:
    """A local date (start of the day; for --to the start of the next) or an ISO time."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if len(text) == 10:
            return calendar.start(day + timedelta(days=1) if end else day)
    try:
        return parse_iso(text).timestamp()
    except ValueError as exc:
        raise UsageError(f"expected a date YYYY-MM-DD or an ISO time with a zone, got {text!r} "
                         f"({exc})") from None


def _minute(m: MinuteRow) -> dict[str, Any]:
    return {"start": iso(m.minute * 60), "plug": m.plug,
            "avg_w": round(m.e / m.dt / 1000, 3) if m.dt else None,
            "min_w": m.w_min / 1000, "max_w": m.w_max / 1000,
            "wh": round(m.e / MWMS_PER_WH, 4), "samples": m.n, "covered_s": m.dt / 1000}


def _day(d: DayRow) -> dict[str, Any]:
    integrated = round(d.e / (MWMS_PER_WH * 1000), 6)
    plug = None if d.plug_wh is None else d.plug_wh / 1000
    return {"date": d.day, "plug": d.plug, "kwh": integrated if plug is None else plug,
            "source": "integrated" if plug is None else "plug", "integrated_kwh": integrated,
            "plug_kwh": plug, "samples": d.n, "covered_s": d.dt / 1000}

