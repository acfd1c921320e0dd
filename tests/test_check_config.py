"""check-config on five broken files: the output the README shows, one case each."""

from __future__ import annotations

from pathlib import Path

import pytest

from handshake import command as cli
from tests.helpers import KEY

ROOT = Path(__file__).resolve().parent.parent
SHOWN_DIR = "/etc/edgepair"  # where the README's examples live
BASE = """[pi]
address = "192.168.1.20"
secrets_file = "secrets.toml"
[host]
address = "192.168.1.10"
mac = "AA:BB:CC:DD:EE:FF"
url = "http://192.168.1.10:8771"
"""
# name → (the file's [host] tail, secrets mode or None for no secrets file, output)
CASES = {
    "typo": ("hearbeat_interval_s = 1\n", 0o600,
             "/etc/edgepair/pi.toml: host.hearbeat_interval_s: unknown key (did you mean "
             "'heartbeat_interval_s'?); known keys: address, boot_timeout_s, fall, "
             "going_offline_grace_s, heartbeat_interval_s, heartbeat_timeout_s, mac, rise, url\n"
             "/etc/edgepair/pi.toml: 1 problem(s) (pi config)"),
    "type": ('fall = "3"\n', 0o600, """\
/etc/edgepair/pi.toml: host.fall: expected an integer, got '3'
/etc/edgepair/pi.toml: 1 problem(s) (pi config)"""),
    "range": ("heartbeat_interval_s = 0.01\n", 0o600, """\
/etc/edgepair/pi.toml: host.heartbeat_interval_s: expected a value ≥ 0.05, got 0.01
/etc/edgepair/pi.toml: 1 problem(s) (pi config)"""),
    "no-secrets": ("", None, """\
/etc/edgepair/secrets.toml: secrets file not found (create it with `edgepair keygen`)
/etc/edgepair/pi.toml: 1 problem(s) (pi config)"""),
    "readable-secrets": ("", 0o644,
                         "/etc/edgepair/secrets.toml: secrets file is readable by group or "
                         "others (mode 644); expected 600: run `chmod 600 "
                         "/etc/edgepair/secrets.toml`\n"
                         "/etc/edgepair/pi.toml: 1 problem(s) (pi config)"),
}


def run_case(tmp_path: Path, tail: str, mode: int | None,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "pi.toml"
    path.write_text(BASE + tail)
    if mode is not None:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(f'handshake_key = "{KEY.hex()}"\n')
        secrets.chmod(mode)
    code = cli.main(["check-config", str(path)])
    out = capsys.readouterr()
    text = (out.out + out.err).replace(str(tmp_path), SHOWN_DIR).strip()
    return code, text


@pytest.mark.parametrize("name", CASES)
def test_each_broken_file_is_said_as_the_readme_shows(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tail, mode, expected = CASES[name]
    code, text = run_case(tmp_path, tail, mode, capsys)
    assert code == 2
    assert text == expected
    assert "Traceback" not in text
    assert expected in (ROOT / "README.md").read_text(encoding="utf-8"), \
        f"the README no longer shows the {name!r} case"


def test_a_derived_default_never_contradicts_what_the_user_wrote(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # heartbeat_interval_s = 1 alone used to fail on the default timeout of 2 s.
    code, text = run_case(tmp_path, "heartbeat_interval_s = 1\n", 0o600, capsys)
    assert (code, text) == (0, "/etc/edgepair/pi.toml: ok (pi config)")
    from pi.config import load  # noqa: PLC0415 - the same file, read by the daemons

    assert load(tmp_path / "pi.toml").host.heartbeat_timeout_s == 0.5
