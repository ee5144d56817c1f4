"""One small generic registry shared by the plug-in families (models, datasets, explainers,
metrics, probes): registration beside the definition, typed parameters validated from config.

A plug-in is a dataclass; its fields are its typed parameters (with defaults), each declared with
`param(default, help=..., ge=...)`, so the config validator, `xai list` and the docs all read one
source (the timm `@register_model` pattern). Simple numeric ranges live in the field metadata and
are checked by `coerce_params` (config) and `check_fields` (construction); cross-field checks live
in the plug-in's `__post_init__`, so every bad value fails when the plug-in is built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from .errors import ConfigError, did_you_mean, unknown

T = TypeVar("T")
BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def param(default: Any = dataclasses.MISSING, *, help: str, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A plug-in parameter: a dataclass field whose metadata holds its one-line `help` and its
    numeric bounds (`ge`, `gt`, `le`, `lt`; for a list, of each element). Strings (`auto`) and
    None are not bound-checked."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return field(default=default, default_factory=default_factory, metadata={"help": help, **bounds})


@dataclass
class Entry(Generic[T]):
    """A registered plug-in: its name, the dataclass (or factory) and its parameter fields."""

    name: str
    obj: Callable[..., T]
    doc: str = ""
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (type, default)
    help: dict[str, str] = field(default_factory=dict)  # name -> one-line help (field metadata "help")
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {"ge": 1, ...}


class Registry(Generic[T]):
    """A named collection of plug-ins of one family."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a plug-in; a dataclass's init fields are its typed parameters."""

        def decorate(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            doc = " ".join((obj.__doc__ or "").strip().split("\n\n")[0].split())
            self._entries[name] = Entry(name, obj, doc, param_fields(obj), param_help(obj), param_bounds(obj))
            if isinstance(obj, type):
                obj.registry_name = name  # type: ignore[attr-defined]
            return obj

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise ConfigError(unknown(self.kind, name, self._entries))
        return self._entries[name]

    def check(self, name: str, params: dict[str, Any] | None, where: str = "") -> dict[str, Any]:
        """Validate `params` for plug-in `name` (names, types, bounds); return them coerced to the
        declared types."""
        entry = self.get(name)
        return coerce_params(entry.params, params or {}, f"{where or self.kind}.{name}", entry.bounds)

    def build(self, name: str, **params: Any) -> T:
        """Check `params` and construct the plug-in; the constructor's ConfigErrors (cross-field
        checks) are prefixed with the plug-in's name."""
        entry = self.get(name)
        checked = self.check(name, params)
        try:
            return entry.obj(**checked)
        except ConfigError as e:
            raise ConfigError(f"{self.kind}.{name}: {e}") from e


def param_fields(spec: Any) -> dict[str, tuple[Any, Any]]:
    """The (type, default) of each init field of a dataclass; {} for anything else."""
    if not dataclasses.is_dataclass(spec):
        return {}
    hints = typing.get_type_hints(spec)
    out: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(spec):
        if not f.init or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        out[f.name] = (hints.get(f.name, Any), default)
    return out


def param_help(spec: Any) -> dict[str, str]:
    """The one-line help of each init field of a dataclass (`field(metadata={"help": ...})`)."""
    if not dataclasses.is_dataclass(spec):
        return {}
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(spec) if f.init and not f.name.startswith("_")}


def param_bounds(spec: Any) -> dict[str, dict[str, float]]:
    """The numeric bounds of each init field of a dataclass that has any (`param(..., ge=1)`)."""
    if not dataclasses.is_dataclass(spec):
        return {}
    out = {}
    for f in dataclasses.fields(spec):
        bounds = {k: f.metadata[k] for k in BOUNDS if k in f.metadata}
        if f.init and bounds:
            out[f.name] = bounds
    return out


def bound_text(bounds: dict[str, float]) -> str:
    """'>= 1', 'in (0, 1]', … for a bounds mapping."""
    low = next(((k, bounds[k]) for k in ("ge", "gt") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("le", "lt") if k in bounds), None)
    if low and high:
        return f"in {'[' if low[0] == 'ge' else '('}{low[1]}, {high[1]}{']' if high[0] == 'le' else ')'}"
    op, limit = low or high  # type: ignore[misc]
    return f"{BOUNDS[op]} {limit}"


def bound_problems(value: Any, bounds: dict[str, float]) -> list[tuple[str, str]]:
    """[(index suffix, 'must be >= 1, got 0')] for a number (or each number of a list) outside
    `bounds`; strings, None and other values are not bound-checked."""
    if isinstance(value, (list, tuple)):
        return [(f"[{i}]{sub}", msg) for i, v in enumerate(value) for sub, msg in bound_problems(v, bounds)]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    ok = {"ge": lambda b: value >= b, "gt": lambda b: value > b, "le": lambda b: value <= b, "lt": lambda b: value < b}
    if all(ok[k](b) for k, b in bounds.items()):
        return []
    return [("", f"must be {bound_text(bounds)}, got {value!r}")]


def check_fields(obj: Any) -> None:
    """Check the declared types (Literal choices included) and bounds of a constructed plug-in's
    fields (called by the families' `__post_init__`, so a plug-in built directly fails like one
    built from a config)."""
    for name, (tp, _) in param_fields(type(obj)).items():
        coerce(getattr(obj, name), tp, name)
    for name, bounds in param_bounds(type(obj)).items():
        for sub, msg in bound_problems(getattr(obj, name), bounds):
            raise ConfigError(f"{name}{sub} {msg}")


def coerce_params(fields: dict[str, tuple[Any, Any]], given: dict[str, Any], where: str,
                  bounds: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Check names, types and `bounds` (see `param`) of `given` against `fields`; raise a
    ConfigError naming the key, e.g. `explainers.msgcam.scales: must be >= 1, got 0`."""
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: parameters must be a mapping, got {type(given).__name__}")
    out = {}
    for key, value in given.items():
        if key not in fields:
            valid = ", ".join(fields) or "(none)"
            raise ConfigError(f"{where}: unknown parameter '{key}'.{did_you_mean(key, fields)} Valid: {valid}")
        out[key] = coerce(value, fields[key][0], f"{where}.{key}")
        for sub, msg in bound_problems(out[key], (bounds or {}).get(key, {})):
            raise ConfigError(f"{where}.{key}{sub}: {msg}")
    for key, (_, default) in fields.items():
        if key not in out and default is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required parameter '{key}'")
    return out


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"list of {type_name(get_args(tp)[0])}" if get_args(tp) else "list"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML value to `tp` (int, float, bool, str, Literal, Optional, list/tuple, Any)."""
    origin = get_origin(tp)
    bad = ConfigError(f"{where}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(
            f"{where}: {value!r} is not valid.{did_you_mean(value, map(str, get_args(tp)))} "
            f"Valid: {', '.join(map(str, get_args(tp)))}"
        )
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise bad
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad
