"""The two sides meet only in handshake/: checked on the source (every import, lazy ones
too) and on what each entry point really loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package → the packages its modules may import from this project.
ALLOWED = {"handshake": {"handshake"}, "pi": {"pi", "handshake"}, "host": {"host", "handshake"}}


def _project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of ours in ``path``, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return [(line, name) for line, name in out if name in ALLOWED]


def test_each_side_imports_only_itself_and_handshake() -> None:
    crossings = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            crossings.extend(f"{path.relative_to(ROOT)}:{line}: imports {name}"
                             for line, name in _project_imports(path) if name not in allowed)
    assert crossings == []


def test_the_boundary_check_sees_a_crossing(tmp_path: Path) -> None:
    """The checker itself: a lazy import of the other side, inside a function, is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from host.agent import run\n    import pi.api\n")
    assert _project_imports(module) == [(2, "host"), (3, "pi")]


def test_no_module_is_loaded_by_a_name_that_hides_it() -> None:
    """Modules are imported by name only through a table of known modules (the dispatcher,
    the Pi's daemons): no other importlib call that could hide a cycle."""
    found = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.extend(f"{path.relative_to(ROOT)}" for _ in
                         range(path.read_text().count("importlib.import_module(")))
    assert sorted(found) == ["handshake/command.py", "pi/cli.py"]


_LOADED = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(("entry", "absent"), [
    ("handshake.command", {"pi", "host", "aiohttp", "kasa", "pymodbus", "numpy"}),
    ("pi.cli", {"host", "kasa", "pymodbus", "numpy"}),
    ("pi.api", {"host", "kasa", "pymodbus", "watchdog", "numpy", "prometheus_client"}),
    ("pi.power.daemon", {"host", "pymodbus", "numpy"}),
    ("pi.control.daemon", {"host", "kasa", "numpy"}),  # the Pi never imports numpy
    ("pi.inbox.daemon", {"host", "kasa", "pymodbus", "numpy"}),
    # Its RSS budget is 30 MB: no aiohttp (≈ 10 MB; the button posts with urllib).
    ("pi.mqtt.daemon", {"host", "kasa", "pymodbus", "aiohttp", "numpy"}),
    ("host.cli", {"pi", "kasa", "pymodbus", "numpy"}),  # the planner's numpy: only when planning
    ("host.agent", {"pi", "kasa", "pymodbus", "numpy"}),
])
def test_an_entry_point_loads_nothing_of_the_other_side(entry: str, absent: set[str]) -> None:
    out = subprocess.run([sys.executable, "-c", _LOADED, entry], cwd=ROOT, capture_output=True,
                         timeout=60, check=True)
    modules = set(json.loads(out.stdout))
    assert entry in modules  # the probe really imported it
    assert {name.partition(".")[0] for name in modules} & absent == set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports when it is loaded (not under TYPE_CHECKING)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        out.update(name for name in names if name in known)
    return out


def test_no_import_cycles() -> None:
    paths = {_module_name(p): p for package in ALLOWED for p in (ROOT / package).rglob("*.py")}
    graph = {name: _top_level_imports(path, set(paths)) - {name} for name, path in paths.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1 and not name.startswith(dep + "."):  # a package's own parts
                cycles.append(" → ".join([*stack[stack.index(dep):], name, dep]))
            elif dep not in state:
                visit(dep, [*stack, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []
