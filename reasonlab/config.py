"""Typed run configuration: dataclasses filled from a YAML recipe and `key.sub=value` overrides.

A stage's config is a (possibly nested) dataclass with a docstring under every field, as cleanrl
writes its `Args`:

    @dataclass
    class OptimConfig:
        lr: float = 1e-6
        \"\"\"Peak learning rate.\"\"\"

    cfg = load_config(TrainConfig, "configs/countdown.yaml", ["optim.lr=1e-5", "rewards=[format]"])

Everything is checked before anything heavy runs, and every error says where:
`FILE:LINE: field 'optim.lr': expected float, got 'fast' (str)`. Unknown keys get the nearest
valid name; Literal fields list their values; a dataclass's `__post_init__` or `validate()` runs
for cross-field checks and its ValueError comes back with the file and section.

Supported field types: int, float, str, bool, pathlib.Path, Any, Optional / unions, Literal[...],
list[...], tuple[...], dict[...] and nested dataclasses. YAML 1.1 reads `1e-5` as a string; a float
field accepts any string `float()` parses. An override's value is parsed as YAML (`a.b=[1, 2]`,
`a.b=null`); a mapping value replaces the whole section. `dump_config` writes the resolved config
back as YAML with each field's docstring as a comment, and `load_config` reads it again.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "ConfigError",
    "config_help",
    "config_to_yaml",
    "dump_config",
    "field_docs",
    "load_config",
    "undocumented_fields",
]

C = TypeVar("C")
_NONE = type(None)


class ConfigError(ValueError):
    """A bad config value. `str()` is "WHERE: field 'x.y': PROBLEM", WHERE being FILE:LINE (or the
    override that set the value); parts that are not known are left out, so `ConfigError(message)`
    is a plain message."""

    def __init__(self, problem: str, *, where: str | None = None, field: str | None = None):
        self.problem, self.where, self.field = problem, where, field
        parts = [where] if where else []
        if field:
            parts.append(f"field '{field}'")
        super().__init__(": ".join([*parts, problem]))


def _error(where: str, field: str | None, problem: str) -> ConfigError:
    return ConfigError(problem, where=where, field=field)


@dataclass
class _Raw:
    """A value read from YAML or an override, with where it was written."""

    value: Any
    """A scalar, list[_Raw] or dict[key, _Raw]."""
    where: str
    """FILE:LINE, or the override text."""


# ----------------------------------------------------------------------------- loading


def load_config(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """Build `cls` from the YAML mapping in `path` (None: from the defaults) and then `overrides`
    (`key.sub=value`, the value parsed as YAML), checking every key and type; raises ConfigError."""
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    root = _read_yaml(Path(path)) if path is not None else _Raw({}, "<defaults>")
    for override in overrides or []:
        _apply_override(root, override)
    return _Builder(cls).build(cls, root, "")


def config_from_dict(cls: type[C], data: dict[str, Any], where: str = "<dict>") -> C:
    """Build `cls` from a plain mapping (settings declared in code, e.g. an experiment's stage),
    checked as a recipe is; a ConfigError names `where` and the field."""
    return _Builder(cls).build(cls, _from_plain(data, where), "")


def _read_yaml(path: Path) -> _Raw:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise _error(str(path), None, f"cannot read config file: {err.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:  # an empty file
            return _Raw({}, str(path))
        root = _from_node(node, loader, str(path))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise _error(where, None, f"invalid YAML: {err.problem or err}") from None
    finally:
        loader.dispose()
    if not isinstance(root.value, dict):
        raise _error(root.where, None, "the top level of a config must be a mapping (key: value)")
    root.where = str(path)  # errors about the whole config name the file, not line 1
    return root


def _from_node(node: yaml.Node, loader: yaml.SafeLoader, file: str) -> _Raw:
    where = f"{file}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out: dict[Any, _Raw] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key_where = f"{file}:{key_node.start_mark.line + 1}"
            if not isinstance(key, str | int | float | bool):
                raise _error(key_where, None, f"a key must be a name or a number, got {key!r}")
            if key in out:
                raise _error(key_where, str(key), f"duplicate key (first at {out[key].where})")
            entry = _from_node(value_node, loader, file)
            entry.where = key_where  # a value (or section) is reported where its key is
            out[key] = entry
        return _Raw(out, where)
    if isinstance(node, yaml.SequenceNode):
        return _Raw([_from_node(item, loader, file) for item in node.value], where)
    return _Raw(loader.construct_object(node), where)


def _from_plain(value: Any, where: str) -> _Raw:
    if isinstance(value, dict):
        return _Raw({key: _from_plain(item, where) for key, item in value.items()}, where)
    if isinstance(value, list):
        return _Raw([_from_plain(item, where) for item in value], where)
    return _Raw(value, where)


def _apply_override(root: _Raw, text: str) -> None:
    where = f"override {text!r}"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(parts):
        raise _error(where, None, "expected key.sub=value (e.g. optim.lr=1e-5)")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as err:
        raise _error(where, key, f"the value is not valid YAML: {err}") from None
    section = root
    for part in parts[:-1]:
        child = section.value.get(part)
        if child is None or not isinstance(child.value, dict):
            child = _Raw({}, where)
            section.value[part] = child
        section = child
    section.value[parts[-1]] = _from_plain(value, where)


# ----------------------------------------------------------------------------- checking types


def _plain(raw: _Raw) -> Any:
    if isinstance(raw.value, dict):
        return {key: _plain(item) for key, item in raw.value.items()}
    if isinstance(raw.value, list):
        return [_plain(item) for item in raw.value]
    return raw.value


def _show(raw: _Raw) -> str:
    if isinstance(raw.value, dict):
        return "a mapping"
    if isinstance(raw.value, list):
        return "a list"
    text = repr(raw.value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(raw.value).__name__})"


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in args if arg is not _NONE]
        return " | ".join(names) + (" or null" if _NONE in args else "")
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Builder:
    """Turns a `_Raw` tree into instances of the root dataclass `root_cls`, or a ConfigError."""

    def __init__(self, root_cls: type):
        self.root_cls = root_cls

    def build(self, cls: type[C], raw: _Raw, prefix: str) -> C:
        if not isinstance(raw.value, dict):
            raise _error(raw.where, prefix or None, f"expected a mapping, got {_show(raw)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = _type_hints(cls)
        for key, entry in raw.value.items():
            if key not in fields:
                self._unknown(key, entry, list(fields), prefix)
        kwargs = {}
        for name, field in fields.items():
            path = f"{prefix}.{name}" if prefix else name
            if name in raw.value:
                kwargs[name] = self.convert(hints[name], raw.value[name], path)
            elif field.default is MISSING and field.default_factory is MISSING:
                if isinstance(hints[name], type) and is_dataclass(hints[name]):
                    kwargs[name] = self.build(hints[name], _Raw({}, raw.where), path)
                else:
                    raise _error(
                        raw.where, path, f"missing required field ({_type_name(hints[name])})"
                    )
        try:
            obj = cls(**kwargs)
            validate = getattr(obj, "validate", None)
            if callable(validate):
                validate()
        except ConfigError:
            raise
        except ValueError as err:
            raise _error(raw.where, prefix or None, str(err)) from err
        return obj

    def _unknown(self, key: Any, entry: _Raw, valid: list[str], prefix: str) -> None:
        full = f"{prefix}.{key}" if prefix else str(key)
        close = difflib.get_close_matches(str(key), valid, n=1)
        if close:
            hint = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
        else:  # maybe it belongs to another section: `lr` for `optim.lr`
            elsewhere = [p for p in _field_paths(self.root_cls) if p.rsplit(".", 1)[-1] == key]
            hint = f"did you mean '{elsewhere[0]}'?" if elsewhere else ""
        problem = "; ".join(
            filter(None, ["unknown key", hint, "valid keys here: " + ", ".join(valid)])
        )
        raise _error(entry.where, full, problem)

    def convert(self, tp: Any, raw: _Raw, path: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is Any:
            return _plain(raw)
        if isinstance(tp, type) and is_dataclass(tp):
            return self.build(tp, raw, path)
        if origin in (Union, types.UnionType):
            return self._union(tp, args, raw, path)
        if origin is Literal:
            for option in args:
                if raw.value == option and type(raw.value) is type(option):
                    return option
            close = difflib.get_close_matches(str(raw.value), [str(a) for a in args], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _error(raw.where, path, f"expected {_type_name(tp)}, got {_show(raw)}{hint}")
        if origin in (list, tuple) or tp in (list, tuple):
            return self._sequence(tp, origin or tp, args, raw, path)
        if origin is dict or tp is dict:
            return self._mapping(tp, args, raw, path)
        return self._scalar(tp, raw, path)

    def _union(self, tp: Any, args: tuple, raw: _Raw, path: str) -> Any:
        if raw.value is None and _NONE in args:
            return None
        options = [arg for arg in args if arg is not _NONE]
        if len(options) == 1:  # Optional[X]: X's own error is the precise one
            try:
                return self.convert(options[0], raw, path)
            except ConfigError as err:
                if raw.value is None or err.field != path:
                    raise
                raise _error(raw.where, path, f"{err.problem} (or null)") from None
        for option in options:
            try:
                return self.convert(option, raw, path)
            except ConfigError:
                continue
        raise _error(raw.where, path, f"expected {_type_name(tp)}, got {_show(raw)}")

    def _sequence(self, tp: Any, origin: type, args: tuple, raw: _Raw, path: str) -> Any:
        if not isinstance(raw.value, list):
            raise _error(raw.where, path, f"expected {_type_name(tp)}, got {_show(raw)}")
        items = raw.value
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _error(
                    raw.where,
                    path,
                    f"expected {len(args)} items ({_type_name(tp)}), got {len(items)}",
                )
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(items)
        out = [
            self.convert(t, item, f"{path}[{i}]")
            for i, (t, item) in enumerate(zip(item_types, items))
        ]
        return tuple(out) if origin is tuple else out

    def _mapping(self, tp: Any, args: tuple, raw: _Raw, path: str) -> dict:
        if not isinstance(raw.value, dict):
            raise _error(raw.where, path, f"expected {_type_name(tp)}, got {_show(raw)}")
        key_type, value_type = args if args else (Any, Any)
        return {
            self.convert(key_type, _Raw(key, item.where), f"{path} key"): self.convert(
                value_type, item, f"{path}.{key}"
            )
            for key, item in raw.value.items()
        }

    def _scalar(self, tp: Any, raw: _Raw, path: str) -> Any:
        value = raw.value
        if tp is bool and isinstance(value, bool):
            return value
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp is float:
            if _is_number(value):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)  # YAML 1.1 reads 1e-5 as a string
                except ValueError:
                    pass
        if tp is str and isinstance(value, str):
            return value
        if tp is Path and isinstance(value, str | Path):
            return Path(value)
        if isinstance(tp, type) and tp not in (bool, int, float, str, Path):
            if isinstance(value, tp):
                return value
        hint = ""
        if tp in (str, Path) and (_is_number(value) or isinstance(value, bool)):
            hint = " (quote it in YAML to pass a string)"
        raise _error(raw.where, path, f"expected {_type_name(tp)}, got {_show(raw)}{hint}")


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as err:
        raise TypeError(
            f"cannot resolve the field types of {cls.__name__}: {err} (config dataclasses must be "
            "defined at module level)"
        ) from err


def _nested_dataclass(tp: Any) -> type | None:
    """The dataclass a field holds (directly or as Optional[...]), else None."""
    if isinstance(tp, type) and is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        inner = [arg for arg in typing.get_args(tp) if arg is not _NONE]
        if len(inner) == 1:
            return _nested_dataclass(inner[0])
    return None


def _field_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    hints = _type_hints(cls)
    for field in dataclasses.fields(cls):
        path = f"{prefix}{field.name}"
        paths.append(path)
        nested = _nested_dataclass(hints[field.name])
        if nested is not None:
            paths.extend(_field_paths(nested, path + "."))
    return paths


# ----------------------------------------------------------------------------- docs and dumping


def field_docs(cls: type, *, recursive: bool = False) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (inherited fields included), in field
    order; with `recursive`, nested dataclass fields too, as dotted names ('optim.lr').
    Fields without a docstring are left out; classes whose source is unavailable give {}."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
        for statement, following in zip(body, body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    out: dict[str, str] = {}
    hints = _type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in docs:
            out[field.name] = docs[field.name]
        nested = _nested_dataclass(hints[field.name]) if recursive else None
        if nested is not None:
            for name, doc in field_docs(nested, recursive=True).items():
                out[f"{field.name}.{name}"] = doc
    return out


def undocumented_fields(cls: type) -> list[str]:
    """Dotted names of the fields (nested ones included) that have no docstring: a test that this
    is empty keeps every config field documented."""
    documented = field_docs(cls, recursive=True)
    return [path for path in _field_paths(cls) if path not in documented]


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not MISSING:
        return repr(_to_plain(field.default))
    if field.default_factory is not MISSING:
        return repr(_to_plain(field.default_factory()))
    return "(required)"


def config_help(cls: type) -> str:
    """One entry per field (nested ones dotted): `name: type = default` and its docstring, for a
    command's --help or `reasonlab train --show-config`."""
    docs = field_docs(cls, recursive=True)
    lines: list[str] = []

    def walk(klass: type, prefix: str) -> None:
        hints = _type_hints(klass)
        for field in dataclasses.fields(klass):
            path = prefix + field.name
            nested = _nested_dataclass(hints[field.name])
            if nested is not None:
                lines.append(f"{path}:  ({nested.__name__})")
            else:
                lines.append(f"{path}: {_type_name(hints[field.name])} = {_default_text(field)}")
            for doc_line in docs.get(path, "").splitlines():
                lines.append(f"    {doc_line}")
            if nested is not None:
                walk(nested, path + ".")

    walk(cls, "")
    return "\n".join(lines)


def _to_plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, dict):
        return {_to_plain(key): _to_plain(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_yaml(obj: Any) -> str:
    """The resolved config `obj` (a dataclass instance) as YAML, each field's docstring above it
    as a comment; `load_config(type(obj), ...)` of this text gives back an equal object."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"config_to_yaml needs a dataclass instance, got {obj!r}")
    lines = [f"# Resolved {type(obj).__name__}: every field, defaults included."]
    _emit(obj, 0, lines)
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Block style, except lists of scalars, which read best on one line: `rewards: [a, b]`."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.SequenceNode:
    flat = not any(isinstance(item, list | dict) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def _emit(obj: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    docs = field_docs(type(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if indent == 0:
            lines.append("")
        for doc_line in docs.get(field.name, "").splitlines():
            lines.append(f"{pad}# {doc_line}".rstrip())
        if is_dataclass(value) and not isinstance(value, type):
            lines.append(f"{pad}{field.name}:")
            _emit(value, indent + 2, lines)
            continue
        text = yaml.dump(
            {field.name: _to_plain(value)},
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=100,
        )
        lines.extend(pad + line for line in text.rstrip("\n").splitlines())


def dump_config(obj: Any, path: str | Path) -> Path:
    """Write `config_to_yaml(obj)` to `path` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(obj), encoding="utf-8")
    return path
