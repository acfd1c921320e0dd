"""The README's configuration reference is the schema's, and says what the schema says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    loader_path = ROOT / "scripts" / "config-reference"
    spec = importlib.util.spec_from_loader(
        "config_reference", importlib.machinery.SourceFileLoader("config_reference",
                                                                 str(loader_path)))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_reference_is_generated_from_the_schema() -> None:
    script = _script()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script.splice(readme) == readme, "run scripts/config-reference --write"


def test_the_reference_names_every_contract_key_with_its_default() -> None:
    text = _script().generated()
    for row in ("| `host.heartbeat_timeout_s` | number ≥ 0.05, ≤ 20.0 | "
                "min(2, heartbeat_interval_s / 2) |",
                "| `dns.backend` | one of builtin, pihole, hostsfile | \"builtin\" |",
                "| `power.plugs[].encryption` | one of klap, aes | \"klap\" |",
                "| `schedule.wake[].days` | days | \"daily\" |",
                "| `control.max_charge_w` | number ≥ 0 | the profile's rating |",
                "| `pi.url` | an http:// or https:// URL | required |"):
        assert row in text, row
