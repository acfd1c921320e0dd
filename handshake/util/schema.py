"""Declarative TOML config: msgspec Structs, decoded key by key so one run reports every problem.

A section is a frozen ``Section`` Struct whose fields carry their rules in ``Annotated``
metadata: ``msgspec.Meta`` for ranges and the one-line description, ``Check`` for a
predicate msgspec cannot express (an IP address, a URL), ``Parse`` for a value written as
text that becomes something else (``"127.0.0.1:8770"`` → ``HostPort``). ``Path`` fields are
resolved against the config file's folder. A default that depends on other keys is a
``Derived`` in the class's ``DERIVED``, computed only when the user did not set the key, and
cross-key rules live in ``problems()``. msgspec stops at the first error of a ``convert``;
converting each value alone is what lets check-config say everything that is wrong at once.
"""

from __future__ import annotations

import difflib
import operator
import types
import typing
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple, TypeVar

import msgspec

from handshake.errors import ConfigError
from handshake.util.configfile import is_ip, is_url, resolve

S = TypeVar("S", bound="Section")


class HostPort(NamedTuple):
    """``"127.0.0.1:8770"`` or ``"[::1]:8770"`` as written in the config."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: object) -> HostPort:
        if not isinstance(value, str):
            raise TypeError(value)
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError(value)
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Check:
    """A rule on the decoded value; ``expected`` completes "expected …, got <value>"."""

    predicate: Callable[[Any], bool]
    expected: str


@dataclass(frozen=True, slots=True)
class Parse:
    """The raw TOML value → the field's value; ``ValueError``/``TypeError`` mean "not that"."""

    parse: Callable[..., Any]
    expected: str
    kind: str  # how the reference names the type
    with_file: bool = False  # called as ``parse(raw, config_file)``
    show: Callable[[Any], str] | None = None  # the default as the user would write it


@dataclass(frozen=True, slots=True)
class Derived:
    """A default computed from the decoded section when the user did not set the key."""

    compute: Callable[[Any], Any]
    text: str  # the rule, as the reference shows it


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section."""

    DERIVED: ClassVar[dict[str, Derived]] = {}
    # Keys another reader of the same file owns (one secrets file for host and Pi).
    OTHERS_KEYS: ClassVar[frozenset[str]] = frozenset()

    def problems(self) -> Iterator[tuple[str, str]]:
        """Rules across keys: ``(key, "expected …")`` pairs; none by default."""
        return iter(())


class _Bad(Exception):
    """A value failed; its problem is already recorded."""


def decode(cls: type[S], data: dict[str, Any], file: Path) -> S:
    """The whole file as ``cls``, or ConfigError listing every problem in it."""
    decoder = Decoder(file)
    try:
        result = decoder.struct(cls, data, "")
    except _Bad:
        result = None
    if decoder.problems or result is None:
        raise ConfigError(decoder.problems or [f"{file}: invalid"])
    if any(f.name == "file" for f in msgspec.structs.fields(cls)):
        result = msgspec.structs.replace(result, file=file)
    return result


class Decoder:
    """Collects ``file: key: expected …, got …`` problems while decoding."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def struct(self, cls: type[S], raw: object, key: str) -> S:
        if not isinstance(raw, dict):
            self.add(key, f"expected a table, got {raw!r}")
            raise _Bad
        fields = _fields(cls)
        self._unknown_keys(cls, raw, [f.encode_name for f in fields], key)
        values: dict[str, Any] = {}
        failed = False
        for field in fields:
            try:
                if field.encode_name in raw:
                    values[field.name] = self.value(field.type, raw[field.encode_name],
                                                    _join(key, field.encode_name))
                elif field.required:
                    self._missing(field, _join(key, field.encode_name))
            except _Bad:
                failed = True
        if failed:
            raise _Bad
        return self._complete(cls, values, key)

    def _unknown_keys(self, cls: type[Section], raw: dict[str, Any], known: list[str],
                      key: str) -> None:
        for name in raw:
            if name not in known and name not in cls.OTHERS_KEYS:
                hint = difflib.get_close_matches(name, known, n=1)
                more = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.add(_join(key, name), f"unknown key{more}; known keys: "
                         f"{', '.join(sorted(known)) or 'none'}")

    def _missing(self, field: msgspec.structs.FieldInfo, key: str) -> None:
        """A required key is absent: for a section, say which of its own keys are required."""
        base = _unwrap(field.type)[0]
        if isinstance(base, type) and issubclass(base, Section):
            self.struct(base, {}, key)  # raises _Bad naming the section's required keys
        self.add(key, "required key is missing")
        raise _Bad

    def _complete(self, cls: type[S], values: dict[str, Any], key: str) -> S:
        """The section from valid keys: derived defaults computed, cross-key rules checked."""
        derived = {name: rule for name, rule in cls.DERIVED.items() if name not in values}
        result = cls(**values)  # a derived key's own default stands in until it is computed
        if derived:
            result = msgspec.structs.replace(
                result, **{name: rule.compute(result) for name, rule in derived.items()})
        problems = list(result.problems())
        for sub, message in problems:
            self.add(_join(key, sub), message)
        if problems:
            raise _Bad
        return result

    def value(self, tp: Any, raw: object, key: str) -> Any:
        base, extras = _unwrap(tp)
        parse = next((e for e in extras if isinstance(e, Parse)), None)
        if parse is not None:
            result = self._parsed(parse, raw, key)
        elif isinstance(base, type) and issubclass(base, Section):
            result = self.struct(base, raw, key)
        elif (item := _struct_items(base)) is not None:
            result = self._table_list(item, raw, key)
        elif base is Path:
            if not isinstance(raw, str):
                self.add(key, f"expected a path (a string), got {raw!r}")
                raise _Bad
            result = resolve(self.file, raw)
        else:
            result = self._convert(tp, base, raw, key)
        for check in (e for e in extras if isinstance(e, Check)):
            if not check.predicate(result):
                self.add(key, f"expected {check.expected}, got {raw!r}")
                raise _Bad
        return result

    def _parsed(self, parse: Parse, raw: object, key: str) -> Any:
        try:
            return parse.parse(raw, self.file) if parse.with_file else parse.parse(raw)
        except ConfigError as exc:  # a file the value names (a profile) is itself wrong
            for problem in exc.problems:
                self.add(key, problem)
            raise _Bad from None
        except (ValueError, TypeError) as exc:
            said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
            # A parser may say precisely what is wrong ("expected at least 32 bytes…").
            self.add(key, said if said.startswith("expected ")
                     else f"expected {parse.expected}, got {raw!r}")
            raise _Bad from None

    def _table_list(self, item: type[Section], raw: object, key: str) -> tuple[Section, ...]:
        if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
            self.add(key, f"expected an array of tables ([[{key}]])")
            raise _Bad
        out, failed = [], False
        for i, entry in enumerate(raw):
            try:
                out.append(self.struct(item, entry, f"{key}[{i}]"))
            except _Bad:
                failed = True
        if failed:
            raise _Bad
        return tuple(out)

    def _convert(self, tp: Any, base: Any, raw: object, key: str) -> Any:
        if typing.get_origin(base) is typing.Literal:
            options = typing.get_args(base)
            if raw not in options or isinstance(raw, bool):
                listed = ", ".join(str(o) for o in options)
                self.add(key, f"expected one of {listed}, got {raw!r}")
                raise _Bad
            return raw
        _, extras = _unwrap(tp)
        metas = [m for m in extras if isinstance(m, msgspec.Meta)]
        # Optional means "may be left unset" (TOML has no null): convert to the value type.
        target = typing.Annotated[(base, *metas)] if metas else base
        try:
            return msgspec.convert(raw, target)
        except msgspec.ValidationError as exc:
            self.add(key, _explain(base, tp, raw, str(exc)))
            raise _Bad from None


def _fields(cls: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    """The keys a file may set: a field encoded as ``_name`` is filled in by the loader."""
    return [f for f in msgspec.structs.fields(cls) if not f.encode_name.startswith("_")]


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X | None, …]`` → (X, metadata); Optional is "may be left unset"."""
    extras: list[Any] = []
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp, *more = typing.get_args(tp)
            extras.extend(more)
            continue
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            arms = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(arms) == 1:
                tp = arms[0]
                continue
        return tp, extras


def _struct_items(tp: Any) -> type[Section] | None:
    """``tuple[SomeSection, ...]`` → SomeSection (an array of tables)."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and isinstance(args[0], type) \
                and issubclass(args[0], Section):
            return args[0]
    return None


def _meta(tp: Any) -> msgspec.Meta:
    metas = [m for m in typing.get_args(tp)[1:] if isinstance(m, msgspec.Meta)] \
        if typing.get_origin(tp) is typing.Annotated else []
    merged: dict[str, Any] = {}
    for m in metas:
        for name in ("ge", "gt", "le", "lt", "description", "min_length", "max_length"):
            if getattr(m, name) is not None:
                merged[name] = getattr(m, name)
    return msgspec.Meta(**merged)


def _explain(base: Any, tp: Any, raw: object, error: str) -> str:
    """msgspec's "Expected `int` >= 1" in the words check-config uses."""
    if "got `" in error or "Expected `array`" in error:
        return f"expected {kind(base)}, got {raw!r}"
    meta = _unwrap_meta(tp)
    shown = float(raw) if base is float and isinstance(raw, int) else raw
    if isinstance(raw, int | float):
        for sign, limit, fails in (("≥", meta.ge, operator.lt), ("≤", meta.le, operator.gt),
                                   (">", meta.gt, operator.le), ("<", meta.lt, operator.ge)):
            if limit is not None and fails(raw, limit):
                return f"expected a value {sign} {limit}, got {shown}"
    if meta.min_length is not None and isinstance(raw, str | list) and len(raw) < meta.min_length:
        return f"expected at least {meta.min_length} characters or items, got {raw!r}"
    return f"expected {kind(base)} ({error.split(' - at ', maxsplit=1)[0]}), got {raw!r}"


def _unwrap_meta(tp: Any) -> msgspec.Meta:
    while typing.get_origin(tp) is not typing.Annotated:
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            arms = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(arms) == 1:
                tp = arms[0]
                continue
        return msgspec.Meta()
    return _meta(tp)


def kind(tp: Any) -> str:
    """How a type reads in "expected …": ``int`` → "an integer"."""
    base, extras = _unwrap(tp)
    parse = next((e for e in extras if isinstance(e, Parse)), None)
    if parse is not None:
        return parse.kind
    if typing.get_origin(base) is typing.Literal:
        return "one of " + ", ".join(str(o) for o in typing.get_args(base))
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        item = _struct_items(base)
        if item is not None:
            return "array of tables"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    return _KINDS.get(base, getattr(base, "__name__", str(base)))


_KINDS: dict[Any, str] = {int: "an integer", float: "a number", bool: "true or false",
                          str: "a string", Path: "a path", dict: "a table"}


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(_unwrap(tp)[0], "values")


# -- the reference (README) -------------------------------------------------------------

class Row(NamedTuple):
    key: str
    kind: str
    default: str
    text: str


def reference(cls: type[Section], prefix: str = "") -> Iterator[Row]:
    """Every key of ``cls`` and its subsections (``power.plugs[].name``): type, default, line."""
    for field in _fields(cls):
        key = _join(prefix, field.encode_name)
        base, extras = _unwrap(field.type)
        if isinstance(base, type) and issubclass(base, Section):
            yield from reference(base, key)
            continue
        item = _struct_items(base)
        if item is not None:
            yield from reference(item, f"{key}[]")
            continue
        meta = _unwrap_meta(field.type)
        checks = [e.expected for e in extras if isinstance(e, Check)]
        yield Row(key, _kind_text(base, extras, meta, checks), _default_text(cls, field),
                  meta.description or "")


def _kind_text(base: Any, extras: list[Any], meta: msgspec.Meta, checks: list[str]) -> str:
    parse = next((e for e in extras if isinstance(e, Parse)), None)
    text = parse.kind if parse else checks[0] if checks else \
        kind(base).removeprefix("an ").removeprefix("a ")
    bounds = [f"{sign} {getattr(meta, b)}" for b, sign in
              (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")) if getattr(meta, b) is not None]
    return f"{text} {', '.join(bounds)}".strip() if bounds else text


def _default_text(cls: type[Section], field: msgspec.structs.FieldInfo) -> str:
    if field.name in cls.DERIVED:
        return cls.DERIVED[field.name].text
    if field.required:
        return "required"
    value = field.default if field.default_factory is msgspec.NODEFAULT \
        else field.default_factory()
    parse = next((e for e in _unwrap(field.type)[1] if isinstance(e, Parse)), None)
    if parse is not None and parse.show is not None and value is not None:
        return parse.show(value)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path | HostPort):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


def markdown(cls: type[Section]) -> str:
    """The reference of ``cls`` as one Markdown table."""
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out += [f"| `{r.key}` | {r.kind} | {r.default} | {r.text} |".replace("|  |", "| |")
            for r in reference(cls)]
    return "\n".join(out) + "\n"


# -- value types both sides use ----------------------------------------------------------

def _is_timezone(value: str) -> bool:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


IpAddress = Annotated[str, Check(is_ip, "an IP address")]
Url = Annotated[str, Check(is_url, "an http:// or https:// URL")]
Listen = Annotated[HostPort, Parse(HostPort.parse, "HOST:PORT like \"0.0.0.0:8770\"", "HOST:PORT")]
TimeZone = Annotated[str, Check(_is_timezone, "an IANA time zone like \"Europe/Berlin\"")]
