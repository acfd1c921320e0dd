"""Reading TOML files and the small value rules both sides' schemas use."""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from handshake.errors import ConfigError

T = TypeVar("T")
MIN_KEY_BYTES = 32

_MISSING: Any = object()


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file or raise ConfigError naming the file and the syntax problem."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a folder, expected a TOML file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (TOML files are UTF-8): byte "
                           f"{exc.start}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


class Problems:
    """Collects config problems so check-config can print them all at once."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.file}: {key}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


class Section:
    """Typed access to one TOML table; unknown keys are reported with a suggestion."""

    def __init__(self, problems: Problems, name: str, data: Any) -> None:
        self.problems = problems
        self.name = name
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(name, f"expected a table, got {type(data).__name__}")
            data = {}
        self.data: dict[str, Any] = data

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.problems.add(self.key(key), "required key is missing")
        return default

    def _typed(self, key: str, default: Any, types: tuple[type, ...], what: str) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and bool not in types:
            self.problems.add(self.key(key), f"expected {what}, got {value!r}")
            return default if default is not _MISSING else None
        if not isinstance(value, types):
            self.problems.add(self.key(key), f"expected {what}, got {value!r}")
            return default if default is not _MISSING else None
        return value

    def text(self, key: str, default: Any = _MISSING, choices: Iterable[str] | None = None) -> Any:
        value = self._typed(key, default, (str,), "a string")
        if choices is not None and isinstance(value, str):
            options = list(choices)
            if value not in options:
                self.problems.add(self.key(key), f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, default, (bool,), "true or false")

    def integer(self, key: str, default: Any = _MISSING, lo: int | None = None,
                hi: int | None = None) -> Any:
        value = self._typed(key, default, (int,), "an integer")
        return self._range(key, value, lo, hi)

    def number(self, key: str, default: Any = _MISSING, lo: float | None = None,
               hi: float | None = None) -> Any:
        value = self._typed(key, default, (int, float), "a number")
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return self._range(key, value, lo, hi)

    def _range(self, key: str, value: Any, lo: float | None, hi: float | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if lo is not None and value < lo:
                self.problems.add(self.key(key), f"expected a value ≥ {lo}, got {value}")
            if hi is not None and value > hi:
                self.problems.add(self.key(key), f"expected a value ≤ {hi}, got {value}")
        return value

    def texts(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.add(self.key(key), f"expected a list of strings, got {value!r}")
            return default if default is not _MISSING else []
        return tuple(value)

    def table_list(self, key: str) -> list[Section]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problems.add(self.key(key), f"expected an array of tables ([[{self.key(key)}]])")
            return []
        return [Section(self.problems, f"{self.key(key)}[{i}]", v) for i, v in enumerate(value)]

    def sub(self, key: str) -> Section:
        self.seen.add(key)
        return Section(self.problems, self.key(key), self.data.get(key))

    def check(self, key: str, value: T, predicate: Callable[[T], bool], expected: str) -> T:
        """Add a problem when ``predicate(value)`` is false (values that failed typing skip)."""
        if value is not None and value is not _MISSING and not predicate(value):
            self.problems.add(self.key(key), f"expected {expected}, got {value!r}")
        return value

    def done(self) -> None:
        """Report keys nobody asked for: almost always a typo."""
        for key in self.data:
            if key not in self.seen:
                hint = difflib.get_close_matches(key, sorted(self.seen), n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else ""
                known = ", ".join(sorted(self.seen)) or "none"
                self.problems.add(self.key(key), f"unknown key{more}; known keys: {known}")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_hostport(value: str) -> tuple[str, int] | None:
    """``"127.0.0.1:8770"`` or ``"[::1]:8770"`` → (host, port); None when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        return None
    return host.strip("[]"), int(port)


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value) > len("http://")


def resolve(base: Path, value: str) -> Path:
    """Resolve a path from a config file relative to that file's directory."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base.parent / path).resolve()
