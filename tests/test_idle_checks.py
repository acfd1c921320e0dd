"""host.idle.checks: every check on recorded outputs (Samba 4.17, systemd 252/256, /proc)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from host.idle import checks
from host.idle.checks import CheckResult, Probes
from host.idle.config import IdleConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "idle"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


Answer = tuple[int, str, str] | BaseException


def runner(answers: dict[tuple[str, ...], Answer]) -> tuple[checks.Runner, list[list[str]]]:
    """A fake ``subprocess.run``: argv → (exit, stdout, stderr) or an exception to raise."""
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        assert kwargs["timeout"] > 0
        answer = answers.get(tuple(argv), FileNotFoundError(2, "No such file or directory"))
        if isinstance(answer, BaseException):
            raise answer
        code, out, err = answer
        return subprocess.CompletedProcess(argv, code, out, err)

    return run, calls


JSON = ("smbstatus", "--json")


def test_smb_an_open_file_is_busy_an_idle_session_is_not() -> None:
    run, _ = runner({JSON: (0, fixture("smbstatus-4.17.json"), "")})
    result = checks.smb(run)
    assert result == CheckResult("smb", True, "1 open file: photos/big.bin (127.0.0.1)")


def test_smb_sessions_without_open_files_keep_nobody_awake() -> None:
    doc = msgspec.json.decode(fixture("smbstatus-4.17.json"))
    doc["open_files"] = {}
    run, _ = runner({JSON: (0, msgspec.json.encode(doc).decode(), "")})
    assert checks.smb(run) == CheckResult("smb", False,
                                          "2 sessions without open files (127.0.0.1)")


def test_smb_no_smbd_running_is_idle() -> None:
    empty = '{"timestamp": "x", "version": "4.17.12-Debian", "sessions": {}, "tcons": {}, ' \
            '"open_files": {}}'
    run, _ = runner({(*JSON, "-s", "/etc/smb.conf"): (0, empty, "")})
    assert checks.smb(run, Path("/etc/smb.conf")) == CheckResult("smb", False, "no SMB sessions")


def test_smb_falls_back_to_brief_and_locks_without_json() -> None:
    run, calls = runner({
        JSON: (1, "", "Invalid option --json: unknown option\nUsage: ..."),
        ("smbstatus", "-b"): (0, fixture("smbstatus-b.txt"), ""),
        ("smbstatus", "-L"): (0, fixture("smbstatus-L.txt"), ""),
    })
    assert checks.smb(run) == CheckResult("smb", True, "1 open file: photos/big.bin (127.0.0.1)")
    assert calls == [list(JSON), ["smbstatus", "-b"], ["smbstatus", "-L"]]
    run, _ = runner({
        JSON: (1, "", "Invalid option --json: unknown option"),
        ("smbstatus", "-b"): (0, fixture("smbstatus-b.txt"), ""),
        ("smbstatus", "-L"): (0, "\nNo locked files\n", ""),
    })
    assert checks.smb(run) == CheckResult("smb", False,
                                          "2 sessions without open files (127.0.0.1)")


@pytest.mark.parametrize(("answer", "detail"), [
    (FileNotFoundError(2, "No such file or directory"), "smbstatus: No such file or directory"),
    (subprocess.TimeoutExpired("smbstatus", 10), "smbstatus: no answer within 10 s"),
    ((1, "", "smbstatus: Permission denied"), "smbstatus --json: exit 1: smbstatus: "
                                              "Permission denied"),
    ((0, "<html>", ""), "smbstatus --json: not JSON: Expecting value: line 1 column 1 (char 0)"),
])
def test_smb_that_cannot_tell_is_an_error_and_busy(answer: Answer, detail: str) -> None:
    run, _ = runner({JSON: answer})
    assert checks.smb(run) == CheckResult("smb", True, detail, error=True)


LOGINCTL_JSON = ("loginctl", "list-sessions", "--output=json", "--no-pager")
LOGINCTL_TEXT = ("loginctl", "list-sessions", "--no-legend", "--no-pager")


def test_users_from_logind_json_count_people_not_managers_or_closing_sessions() -> None:
    run, _ = runner({LOGINCTL_JSON: (0, fixture("loginctl-252.json"), "")})
    assert checks.users(run) == CheckResult("users", True, "2 sessions (logind): alice, root")
    run, _ = runner({LOGINCTL_JSON: (0, fixture("loginctl-256.json"), "")})
    assert checks.users(run) == CheckResult("users", True, "1 session (logind): alice")
    run, _ = runner({LOGINCTL_JSON: (0, "[]", "")})
    assert checks.users(run) == CheckResult("users", False, "nobody logged in (logind)")


def test_users_text_without_json_and_utmp_without_logind() -> None:
    run, _ = runner({LOGINCTL_JSON: (1, "", "Unknown output 'json'."),
                     LOGINCTL_TEXT: (0, fixture("loginctl-text.txt"), "")})
    assert checks.users(run) == CheckResult("users", True, "2 sessions (logind): alice, root")
    run, _ = runner({LOGINCTL_JSON: (1, "", "Failed to connect to bus: No such file"),
                     ("who",): (0, fixture("who.txt"), "")})
    assert checks.users(run) == CheckResult("users", True, "2 sessions (utmp): alice")
    run, _ = runner({LOGINCTL_JSON: (1, "", "Failed to connect to bus"), ("who",): (0, "", "")})
    assert checks.users(run) == CheckResult("users", False, "nobody logged in (utmp)")
    run, _ = runner({LOGINCTL_JSON: (1, "", "Failed to connect to bus")})
    result = checks.users(run)
    assert (result.busy, result.error) == (True, True)
    assert "who: No such file or directory" in result.detail


def test_load_above_threshold(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.52 0.80 0.40 2/345 6789\n")
    assert checks.load(1.5, loadavg) == CheckResult("load", True, "load 1.52 > 1.5")
    assert checks.load(2, loadavg) == CheckResult("load", False, "load 1.52 ≤ 2")
    assert checks.load(2, tmp_path / "missing").error


def fake_proc(tmp_path: Path, procs: dict[int, tuple[str, bytes]]) -> Path:
    proc = tmp_path / "proc"
    for pid, (comm, cmdline) in procs.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "cmdline").write_bytes(cmdline)
    (proc / "self").mkdir(parents=True, exist_ok=True)
    return proc


def test_processes_by_comm_argv0_and_the_kernels_15_characters(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        10: ("rsync", b"/usr/bin/rsync\0-a\0/src\0"),
        11: ("sleep", b"nightly-job\x0060\x00"),  # exec -a nightly-job sleep 60
        12: ("very-long-backu", b"/opt/very-long-backup-tool\0"),
        13: ("bash", b"-bash\0"),
    })
    assert checks.processes(["rsync"], proc) == CheckResult("processes", True, "rsync (pid 10)")
    assert checks.processes(["nightly-job"], proc) == CheckResult(
        "processes", True, "nightly-job (pid 11)")
    assert checks.processes(["sleep"], proc).busy is True
    assert checks.processes(["very-long-backup-tool", "borg"], proc) == CheckResult(
        "processes", True, "very-long-backup-tool (pid 12)")
    assert checks.processes(["borg", "restic"], proc) == CheckResult(
        "processes", False, "none of borg, restic running")


def test_tcp_ports_count_established_connections_to_local_ports(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(fixture("proc-net-tcp.txt"))
    (proc / "net" / "tcp6").write_text(fixture("proc-net-tcp6.txt"))
    # 22: one established (listening doesn't count); 445: one over tcp6, one in TIME_WAIT.
    assert checks.tcp_ports([22, 445], proc) == CheckResult(
        "tcp_ports", True, "1 connection to port 22, 1 connection to port 445")
    # 8080 (0x1F90) is only the remote side of a local client's connection: not to us.
    assert checks.tcp_ports([8080], proc) == CheckResult(
        "tcp_ports", False, "no connection to port 8080")
    (proc / "net" / "tcp6").unlink()
    assert checks.tcp_ports([445], proc).busy is False
    (proc / "net" / "tcp").unlink()
    assert checks.tcp_ports([445], proc).error


def test_block_mode_sleep_inhibitors_keep_the_host_awake(tmp_path: Path) -> None:
    argv = ("systemd-inhibit", "--list", "--no-pager")
    run, _ = runner({argv: (0, fixture("inhibit-list.txt"), "")})
    assert checks.inhibitors(run, tmp_path) == CheckResult(
        "inhibitors", True, "borg (Backup in progress)")
    delay_only = "\n".join(line for line in fixture("inhibit-list.txt").splitlines()
                           if "block" not in line)
    run, _ = runner({argv: (0, delay_only, "")})
    assert checks.inhibitors(run, tmp_path) == CheckResult(
        "inhibitors", False, "no sleep inhibitor in block mode")
    run, _ = runner({argv: (1, "", "Failed to connect to bus")})
    assert checks.inhibitors(run, tmp_path).error
    assert checks.inhibitors(run, tmp_path / "no-systemd") == CheckResult(
        "inhibitors", False, "systemd is not running: no inhibitors")


def test_command_exit_0_is_busy_timeout_is_an_error(tmp_path: Path) -> None:
    assert checks.command(("sh", "-c", "echo copying; exit 0"), subprocess.run) == CheckResult(
        "command", True, "sh -c echo copying; exit 0: exit 0: copying")
    assert checks.command(("sh", "-c", "exit 3"), subprocess.run) == CheckResult(
        "command", False, "sh -c exit 3: exit 3")
    assert checks.command(("sleep", "5"), subprocess.run, timeout_s=0.1) == CheckResult(
        "command", True, "sleep 5: no answer within 0.1 s", error=True)
    assert checks.command((str(tmp_path / "missing"),), subprocess.run).error


def test_run_all_runs_what_is_configured_and_a_crashing_check_is_busy(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = msgspec.structs.replace(IdleConfig(), processes=("x",), load_above=1.0)
    broken: Callable[..., Any] = lambda *a, **k: None  # noqa: E731 (returns nothing: a bug)
    probes = Probes(run=broken, proc=tmp_path / "proc", systemd_dir=tmp_path)
    (tmp_path / "proc").mkdir()
    with caplog.at_level(logging.ERROR):
        results = checks.run_all(config, probes, ["inbox upload"])
    assert [r.name for r in results] == ["activity", "inhibitors", "load", "processes"]
    assert results[0] == CheckResult("activity", True, "inbox upload")
    assert results[1].error
    assert results[1].busy
    assert "AttributeError" in results[1].detail
    assert results[2].error  # no loadavg in the fake /proc
    assert results[3] == CheckResult("processes", False, "none of x running")
    assert "idle check inhibitors failed" in caplog.text
