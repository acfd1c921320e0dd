"""What keeps the host awake: one function per check, each returning a CheckResult.

All I/O is injected (``run`` has ``subprocess.run``'s signature, ``/proc`` is a path), so
tests feed recorded outputs. A check that cannot tell says so: ``error=True``, and the
decision counts it as busy — a broken ``smbstatus`` must never let the host fall asleep
under a user's open file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.idle.config import IdleConfig

log = logging.getLogger(__name__)

Runner = Callable[..., subprocess.CompletedProcess[str]]

# smbstatus, loginctl, systemd-inhibit answer in milliseconds; a hung one is an error.
TOOL_TIMEOUT_S = 10.0
# The user's `command` check: a busy probe that takes longer than this is broken.
COMMAND_TIMEOUT_S = 30.0
# /proc/net/tcp's "st" column: 01 is TCP_ESTABLISHED.
_ESTABLISHED = "01"
# logind session classes that are a person (not the user manager, not a login screen).
_PERSON_CLASSES = {"user", "user-early", "user-incomplete"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict: busy keeps the host awake; an error counts as busy."""

    name: str
    busy: bool
    detail: str
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "busy": self.busy,
                "error": self.error, "detail": self.detail}

    @property
    def verdict(self) -> str:
        return "error" if self.error else "busy" if self.busy else "idle"


def failed(name: str, detail: str) -> CheckResult:
    """A check that could not tell: busy, and says why."""
    return CheckResult(name, True, detail, error=True)


@dataclass(frozen=True, slots=True)
class Probes:
    """Where the checks look: the real system by default, fixtures in tests."""

    run: Runner = subprocess.run
    proc: Path = Path("/proc")
    systemd_dir: Path = Path("/run/systemd/system")  # exists when systemd is PID 1
    smb_config: Path | None = None  # smbstatus -s FILE


def run_all(config: IdleConfig, probes: Probes, activity: Iterable[str] = ()) -> list[CheckResult]:
    """The built-in checks (activity, sleep inhibitors) and every configured one, in order."""
    doing = list(activity)
    results = [CheckResult("activity", bool(doing), ", ".join(doing) or "nothing in progress"),
               _guard("inhibitors", lambda: inhibitors(probes.run, probes.systemd_dir))]
    if config.smb:
        results.append(_guard("smb", lambda: smb(probes.run, probes.smb_config)))
    if config.users:
        results.append(_guard("users", lambda: users(probes.run)))
    if config.load_above is not None:
        threshold = config.load_above
        results.append(_guard("load", lambda: load(threshold, probes.proc / "loadavg")))
    if config.processes:
        results.append(_guard("processes", lambda: processes(config.processes, probes.proc)))
    if config.tcp_ports:
        results.append(_guard("tcp_ports", lambda: tcp_ports(config.tcp_ports, probes.proc)))
    if config.command is not None:
        argv = config.command
        results.append(_guard("command", lambda: command(argv, probes.run)))
    return results


# -- smb ---------------------------------------------------------------------------------

def smb(run: Runner, smb_config: Path | None = None) -> CheckResult:
    """Busy while an SMB client has a file open; a connection alone (Explorer) is idle."""
    conf = ["-s", str(smb_config)] if smb_config is not None else []
    try:
        out = _tool(run, ["smbstatus", "--json", *conf])
    except _Unsupported:
        return _smb_text(run, conf)
    except _ToolFailed as exc:
        return failed("smb", str(exc))
    try:
        sessions, opens = parse_smbstatus_json(out)
    except ValueError as exc:
        return failed("smb", f"smbstatus --json: {exc}")
    return _smb_result(sessions, opens)


def parse_smbstatus_json(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``smbstatus --json`` (Samba ≥ 4.16) → ({pid: machine}, [(pid, file)])."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    sessions = {str(s.get("server_id", {}).get("pid", "?")): str(s.get("remote_machine", "?"))
                for s in (doc.get("sessions") or {}).values() if isinstance(s, dict)}
    opens: list[tuple[str, str]] = []
    for path, entry in (doc.get("open_files") or {}).items():
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("filename") or path)
        for handle in (entry.get("opens") or {"?": {}}).values():
            pid = handle.get("server_id", {}).get("pid", "?") if isinstance(handle, dict) else "?"
            opens.append((str(pid), name))
    return sessions, opens


def parse_smbstatus_brief(text: str) -> dict[str, str]:
    """``smbstatus -b`` → {pid: machine}."""
    return {cols[0]: cols[3] for cols in _table(text) if len(cols) >= 4 and cols[0].isdigit()}


def parse_smbstatus_locks(text: str) -> list[tuple[str, str]]:
    """``smbstatus -L`` → [(pid, file)]; "No locked files" is none."""
    opens = []
    for cols in _table(text):
        # Pid User DenyMode Access R/W Oplock SharePath Name Time(5 words)
        if len(cols) >= 13 and cols[0].isdigit():
            opens.append((cols[0], " ".join(cols[7:-5])))
    return opens


def _smb_text(run: Runner, conf: list[str]) -> CheckResult:
    try:
        sessions = parse_smbstatus_brief(_tool(run, ["smbstatus", "-b", *conf]))
        opens = parse_smbstatus_locks(_tool(run, ["smbstatus", "-L", *conf]))
    except (_ToolFailed, _Unsupported) as exc:
        return failed("smb", str(exc))
    return _smb_result(sessions, opens)


def _smb_result(sessions: dict[str, str], opens: list[tuple[str, str]]) -> CheckResult:
    if opens:
        files = ", ".join(sorted({f"{name} ({sessions.get(pid, 'pid ' + pid)})"
                                  for pid, name in opens}))
        return CheckResult("smb", True, f"{_n(len(opens), 'open file')}: {files}")
    if sessions:
        return CheckResult("smb", False, f"{_n(len(sessions), 'session')} without open files "
                                         f"({', '.join(sorted(set(sessions.values())))})")
    return CheckResult("smb", False, "no SMB sessions")


# -- users -------------------------------------------------------------------------------

def users(run: Runner) -> CheckResult:
    """Busy while a person is logged in: logind's sessions, else utmp (``who``)."""
    try:
        names = parse_loginctl_json(_tool(run, ["loginctl", "list-sessions", "--output=json",
                                                "--no-pager"]))
    except _Unsupported:
        try:
            names = parse_loginctl_text(_tool(run, ["loginctl", "list-sessions", "--no-legend",
                                                    "--no-pager"]))
        except (_ToolFailed, _Unsupported) as exc:
            return _users_from_who(run, str(exc))
    except (_ToolFailed, ValueError) as exc:
        return _users_from_who(run, str(exc))
    return _users_result(names, "logind")


def parse_loginctl_json(text: str) -> list[str]:
    """``loginctl list-sessions --output=json`` → the users of people's sessions."""
    try:
        rows = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"loginctl: not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError("loginctl: not a JSON array")
    return [str(r.get("user", r.get("uid", "?"))) for r in rows if isinstance(r, dict)
            and r.get("class", "user") in _PERSON_CLASSES and r.get("state") != "closing"]


def parse_loginctl_text(text: str) -> list[str]:
    """``loginctl list-sessions --no-legend`` → the users (third column)."""
    return [cols[2] for cols in (line.split() for line in text.splitlines())
            if len(cols) >= 3 and cols[1].isdigit()
            and not ({"manager", "greeter", "closing"} & set(cols[3:]))]


def parse_who(text: str) -> list[str]:
    """``who`` (utmp) → the users, one per login."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _users_from_who(run: Runner, why: str) -> CheckResult:
    try:
        names = parse_who(_tool(run, ["who"]))
    except (_ToolFailed, _Unsupported) as exc:
        return failed("users", f"{why}; {exc}")
    return _users_result(names, "utmp")


def _users_result(names: list[str], source: str) -> CheckResult:
    if not names:
        return CheckResult("users", False, f"nobody logged in ({source})")
    return CheckResult("users", True, f"{_n(len(names), 'session')} ({source}): "
                                      f"{', '.join(sorted(set(names)))}")


# -- load, processes, tcp ----------------------------------------------------------------

def load(threshold: float, loadavg: Path) -> CheckResult:
    """Busy while the 1-minute load average is above ``threshold``."""
    try:
        value = float(loadavg.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        return failed("load", f"cannot read {loadavg}: {exc}")
    above = value > threshold
    return CheckResult("load", above, f"load {value:.2f} {'>' if above else '≤'} {threshold:g}")


def processes(names: Iterable[str], proc: Path) -> CheckResult:
    """Busy while a process of one of ``names`` runs (its comm or its argv[0]'s basename)."""
    wanted = set(names)
    # The kernel keeps 15 characters of a command's name.
    short = {name[:15]: name for name in wanted}
    found: dict[str, list[str]] = {}
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError as exc:
        return failed("processes", f"cannot list {proc}: {exc}")
    me = str(os.getpid())
    for entry in entries:
        if entry.name == me:
            continue
        name = _process_name(entry, wanted, short)
        if name is not None:
            found.setdefault(name, []).append(entry.name)
    if not found:
        return CheckResult("processes", False, f"none of {', '.join(sorted(wanted))} running")
    return CheckResult("processes", True, ", ".join(
        f"{name} (pid {', '.join(sorted(pids, key=int))})" for name, pids in sorted(found.items())))


def tcp_ports(ports: Iterable[int], proc: Path) -> CheckResult:
    """Busy while a TCP connection to one of ``ports`` (local) is established."""
    wanted = set(ports)
    count: dict[int, int] = {}
    read = 0
    for table in ("tcp", "tcp6"):
        path = proc / "net" / table
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue  # no IPv6
        except OSError as exc:
            return failed("tcp_ports", f"cannot read {path}: {exc}")
        read += 1
        for port in established_ports(text):
            if port in wanted:
                count[port] = count.get(port, 0) + 1
    if not read:
        return failed("tcp_ports", f"no {proc / 'net' / 'tcp'}")
    if not count:
        return CheckResult("tcp_ports", False, "no connection to port "
                           + ", ".join(str(p) for p in sorted(wanted)))
    return CheckResult("tcp_ports", True, ", ".join(
        f"{_n(n, 'connection')} to port {port}" for port, n in sorted(count.items())))


def established_ports(text: str) -> Iterator[int]:
    """The local port of every ESTABLISHED socket in ``/proc/net/tcp`` or ``tcp6``."""
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or cols[3] != _ESTABLISHED:
            continue
        _, _, port = cols[1].rpartition(":")
        try:
            yield int(port, 16)
        except ValueError:
            continue


# -- inhibitors, command -----------------------------------------------------------------

def inhibitors(run: Runner, systemd_dir: Path) -> CheckResult:
    """Busy while a block-mode sleep inhibitor is held (``systemd-inhibit --list``)."""
    if not systemd_dir.is_dir():
        return CheckResult("inhibitors", False, "systemd is not running: no inhibitors")
    try:
        held = parse_inhibitors(_tool(run, ["systemd-inhibit", "--list", "--no-pager"]))
    except (_ToolFailed, _Unsupported) as exc:
        return failed("inhibitors", str(exc))
    blocking = [i for i in held if "sleep" in i.what and i.mode == "block"]
    if not blocking:
        return CheckResult("inhibitors", False, "no sleep inhibitor in block mode")
    return CheckResult("inhibitors", True, "; ".join(f"{i.who} ({i.why})" for i in blocking))


@dataclass(frozen=True, slots=True)
class Inhibitor:
    who: str
    what: tuple[str, ...]
    why: str
    mode: str


def parse_inhibitors(text: str) -> list[Inhibitor]:
    """``systemd-inhibit --list``'s table, by its header's column positions (WHY has spaces)."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.lstrip().startswith("WHO")), None)
    if header is None:
        return []
    head = lines[header]
    try:
        what_at, why_at, mode_at = head.index(" WHAT ") + 1, head.index(" WHY ") + 1, \
            head.index(" MODE")
    except ValueError:
        raise _ToolFailed(f"systemd-inhibit: unexpected header {head.strip()!r}") from None
    out = []
    for line in lines[header + 1:]:
        if not line.strip() or line.rstrip().endswith("listed."):
            continue
        out.append(Inhibitor(who=line[:line.find(" ")].strip() or "?",
                             what=tuple(line[what_at:why_at].split()[0].split(":"))
                             if line[what_at:why_at].split() else (),
                             why=line[why_at:mode_at].strip(),
                             mode=line[mode_at:].strip()))
    return out


def command(argv: tuple[str, ...], run: Runner, timeout_s: float = COMMAND_TIMEOUT_S) -> CheckResult:
    """The user's own check: exit 0 is busy, any other exit idle; no answer is an error."""
    shown = " ".join(argv)
    try:
        result = run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return failed("command", f"{shown}: no answer within {timeout_s:g} s")
    except OSError as exc:
        return failed("command", f"{shown}: {exc.strerror or exc}")
    said = (result.stdout or "").strip().splitlines()
    detail = f"{shown}: exit {result.returncode}" + (f": {said[0][:120]}" if said else "")
    return CheckResult("command", result.returncode == 0, detail)


# -- helpers -----------------------------------------------------------------------------

class _ToolFailed(Exception):
    """The tool is missing, failed or hung."""


class _Unsupported(Exception):
    """The tool runs but does not know an option (an older version)."""


def _tool(run: Runner, argv: list[str]) -> str:
    """The tool's stdout; _Unsupported for an unknown option, _ToolFailed otherwise."""
    try:
        result = run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise _ToolFailed(f"{argv[0]}: no answer within {TOOL_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise _ToolFailed(f"{argv[0]}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        err = " ".join(((result.stderr or "") + (result.stdout or "")).split())
        if any(word in err.lower() for word in ("unknown option", "unrecognized option",
                                                "invalid option", "unknown output")):
            raise _Unsupported(f"{' '.join(argv)}: {err[:200]}")
        raise _ToolFailed(f"{' '.join(argv)}: exit {result.returncode}: {err[:200]}")
    return result.stdout or ""


def _guard(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """A check that raises (a bug, an odd /proc) is an error, never idle."""
    try:
        return check()
    except Exception as exc:
        log.exception("idle check %s failed", name)
        return failed(name, f"{type(exc).__name__}: {exc}")


def _table(text: str) -> Iterator[list[str]]:
    """The rows below smbstatus's dashed line."""
    rows = False
    for line in text.splitlines():
        if line.startswith("---"):
            rows = True
        elif rows and line.strip():
            yield line.split()


def _process_name(entry: Path, wanted: set[str], short: dict[str, str]) -> str | None:
    try:
        comm = (entry / "comm").read_text().strip()
        argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None  # it exited while we looked
    base = argv0.rsplit("/", 1)[-1]
    if base in wanted:
        return base
    if comm in wanted:
        return comm
    return short.get(comm) if len(comm) == 15 else None


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
