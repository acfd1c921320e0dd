"""The one JSON reader for anything not written by this process: peer bodies and private files.

Strict where Python's ``json`` is lenient: UTF-8 only, no NaN/Infinity, no 1e999, and a
nesting limit checked *before* parsing, in C-speed passes, so no input can exhaust the
recursion limit or the C stack. Lone surrogates (``"\\ud800"``) are valid JSON and parse;
``storable`` replaces them before anything is written out as UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Deeper than any document edgepair exchanges or keeps (a plan is 4 levels, a snapshot 5).
MAX_DEPTH = 32
# ``storable`` names at most this many changed places; a count says how many more.
MAX_NOTED = 50

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonError(ValueError):
    """The input is not JSON this reader accepts; the message says why."""


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw``; JsonError for anything a browser's JSON.parse would refuse, or deeper
    than ``max_depth``."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"not UTF-8: {exc}") from None
    else:
        text = raw
    depth_ok(text, max_depth)
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise JsonError(str(exc)) from None
    except RecursionError:  # unreachable after depth_ok; kept so no input can become a 500
        raise JsonError(f"nested too deeply (more than {max_depth} levels)") from None


def depth_ok(text: str, max_depth: int = MAX_DEPTH) -> None:
    """JsonError when ``text`` nests arrays/objects deeper than ``max_depth``.

    Strings are blanked, everything but brackets dropped, then each pass removes the
    innermost empty pairs: ``max_depth`` passes empty any document within the limit.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return
        brackets = _INNERMOST.sub("", brackets)
    if brackets:
        raise JsonError(f"nested too deeply (more than {max_depth} levels, or unbalanced brackets)")


def storable(value: Any) -> tuple[Any, list[str]]:
    """``value`` with every string UTF-8 can hold (lone surrogates → U+FFFD), and the JSON
    paths (``$.a[0]``) of what was changed; a key that collides after that is dropped."""
    noted: list[str] = []
    clean = _clean(value, "$", noted)
    if len(noted) > MAX_NOTED:
        noted[MAX_NOTED:] = [f"… and {len(noted) - MAX_NOTED} more"]
    return clean, noted


def _clean(value: Any, path: str, noted: list[str]) -> Any:
    # Recursion is bounded: values come from ``loads`` (MAX_DEPTH) or from our own code.
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        noted.append(f"{path}: replaced unencodable text")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _SURROGATE.sub("\ufffd", key) if isinstance(key, str) else str(key)
            where = f"{path}.{name}"
            if name != key:
                if name in value or name in out:
                    noted.append(f"{where}: dropped (its key collides once made encodable)")
                    continue
                noted.append(f"{where}: replaced unencodable text in the key")
            out[name] = _clean(item, where, noted)
        return out
    if isinstance(value, list | tuple):
        return [_clean(item, f"{path}[{i}]", noted) for i, item in enumerate(value)]
    return value


def _no_constant(name: str) -> float:
    raise JsonError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"{text} is out of range")
    return value
