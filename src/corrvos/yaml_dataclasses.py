"""Typed dataclasses from YAML: type-checked construction, ``base:`` file chains and deep merging.

Schema-independent machinery used by :mod:`corrvos.config`: :func:`build_dataclass` checks every value against the
dataclass annotations (nested dataclasses, unions, ``Literal``, lists, dicts, bool/int/float/str; YAML 1.1 quirks
such as a bare ``off`` read as false and ``3e-4`` read as a string are accepted) and rejects unknown keys;
:func:`read_yaml_chain` reads a YAML mapping and the ``base:`` files it extends. Errors are
:class:`corrvos.errors.ConfigError` naming the key and the source file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from corrvos.errors import ConfigError

__all__ = ["build_dataclass", "deep_merge", "read_yaml_chain", "yaml_problem"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp``; build nested dataclasses; return the (converted) value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        errors = []
        for option in args:
            try:
                return _coerce(value, option, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{source}: '{where}' must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: '{where}' must be null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return _build(tp, value, where, source)
    if origin is Literal:
        if value is False and "off" in args:  # YAML 1.1 reads a bare `off` as false
            return "off"
        if not isinstance(value, bool) and value in args:
            return value
        raise ConfigError(f"{source}: '{where}' must be one of {list(args)}, got {value!r}")
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema annotation this function does not know
        raise TypeError(f"unsupported annotation {tp!r} for {where}")
    raise ConfigError(f"{source}: '{where}' must be {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: dict[str, Any], where: str, source: str) -> Any:
    """Build dataclass ``cls`` from ``data`` (missing fields keep their defaults)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{path}' (valid keys: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], path, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid '{where or cls.__name__}': {exc}") from exc


def build_dataclass(cls: type, data: dict[str, Any], *, where: str = "", source: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, type-checking every value (missing fields keep their defaults)."""
    return _build(cls, data, where, source)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parse error as one line: "line L, column C: <problem>" (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or next((x for x in str(exc).splitlines() if x.strip()), "parse error")
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "")


def read_yaml_chain(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name")
    parent = read_yaml_chain((path.parent / base), (*chain, path))
    return deep_merge(parent, data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
