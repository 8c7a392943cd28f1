"""Strict YAML -> frozen dataclass loading, shared by the feature spec and the job configs.

An unknown or mistyped key is an error that names the key, where it sits and the file, so that a typo in a
config never silently falls back to a default. YAML is read with the safe loader only; a key given twice
is an error too (YAML itself would keep the last).

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opt:
    ...     lr: float = 0.1
    ...     steps: int = 10
    >>> from_dict(Opt, {"lr": 0.5}, where="example")
    Opt(lr=0.5, steps=10)
    >>> apply_overrides({"lr": 0.5}, ["steps=3"])
    {'lr': 0.5, 'steps': 3}
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config or spec file that cannot be used as written; the message says where and what to do."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen: Dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one "
                                  f"mapping (first on line {seen[key]}); keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML ``text`` with the strict safe loader; a syntax error or a repeated key is a ``ConfigError``
    naming ``where``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML{at} ({why})") from None


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    """Reads a YAML mapping with the safe loader; a missing file, a syntax error, a key given twice or a
    non-mapping is a ``ConfigError``."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    data = parse_yaml(p.read_text(), str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, found {value!r}")
        return from_dict(tp, value, where)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin in (tuple, list, Sequence, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        elem = args[0] if args else Any
        items = [_convert(elem, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        return {k: _convert(args[1] if args else Any, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, found {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    return value


def from_dict(cls: Type[T], data: Mapping[str, Any], where: str) -> T:
    """Builds dataclass ``cls`` from ``data``, recursing into nested dataclasses, lists and optionals.

    Args:
        cls: a dataclass type.
        data: the mapping read from YAML.
        where: the file (and key path) to name in errors.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; allowed keys: {sorted(fields)}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing} for {cls.__name__}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain lists and dicts, for writing back to YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def apply_overrides(data: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Applies ``a.b.c=value`` overrides (value parsed as YAML) to a nested mapping, returning a new one."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.path=value, e.g. train.epochs=2")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
    return out


def load_file(cls: Type[T], path: Union[str, Path], overrides: Optional[List[str]] = None) -> T:
    """Dataclass ``cls`` from the YAML file ``path`` with ``key.path=value`` overrides applied; the file's
    path goes into the dataclass's ``source`` field."""
    data = apply_overrides(read_yaml(path), overrides or [])
    data["source"] = str(path)
    return from_dict(cls, data, where=str(path))
