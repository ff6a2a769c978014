"""Command lines from dataclass configs: one ``--field-name`` option per field, and the config back from them.

Every script (trainers, benchmarks) keeps its settings in a dataclass with a docstring under each field. Deriving
the command line from it keeps options, defaults and help from drifting away from the config. Options left unset
stay out of the parsed namespace, so they override a preset (``--quick``) instead of resetting it to the defaults.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")
SCALARS = (int, float, str, Path)
"""Field types given to argparse as they are (``type=``)."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (as tyro reads them), whitespace collapsed."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _strip_none(hint: Any) -> Any:
    """``X | None`` -> ``X`` (an option that is given always has a value)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _value_kwargs(hint: Any, name: str) -> dict:
    """argparse ``type``/``choices`` for one value of type ``hint`` (a scalar or a Literal)."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return {"type": type(choices[0]), "choices": choices}
    if hint in SCALARS:
        return {"type": hint}
    raise TypeError(f"field {name!r}: no command-line form for {hint!r}; exclude it")


def _option_kwargs(hint: Any, name: str) -> dict:
    hint = _strip_none(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(set(args)) != 1:
            raise TypeError(f"field {name!r}: only homogeneous tuples and lists have a command-line form")
        return {"nargs": "+", **_value_kwargs(args[0], name)}
    return _value_kwargs(hint, name)


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "",
                            exclude: Collection[str] = ()) -> None:
    """One ``--prefix.field-name`` option per field of dataclass ``cls``, its docstring as help.

    Nested dataclass fields recurse with the prefix ``name.``; ``Literal`` types become choices, tuples and lists
    take one or more values, booleans get ``--name`` / ``--no-name``, ``X | None`` takes an ``X``. Fields named in
    ``exclude`` (dotted for nested ones: ``"model.max_len"``) get no option. Unset options stay out of the parsed
    namespace; ``dataclass_from_arguments`` puts the given ones back.
    """
    hints, docs, defaults = typing.get_type_hints(cls), field_docs(cls), cls()
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        if key in exclude:
            continue
        value = getattr(defaults, f.name)
        if is_dataclass(value):
            add_dataclass_arguments(parser, type(value), f"{key}.", exclude)
            continue
        shown = " ".join(map(str, value)) if isinstance(value, tuple | list) else value
        help_text = f"{docs.get(f.name, '')} (default: {shown})".strip().replace("%", "%%")
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=argparse.SUPPRESS, help=help_text,
                            **_option_kwargs(hints[f.name], key))


def dataclass_from_arguments(cls: type[T], args: argparse.Namespace | Mapping[str, Any], base: T | None = None,
                             prefix: str = "") -> T:
    """``base`` (default: ``cls()``) with the fields given in ``args`` (from ``add_dataclass_arguments``) replaced.

    Keys that are not fields of ``cls`` (other options of the same parser) are ignored; tuple fields get tuples.
    """
    given = vars(args) if isinstance(args, argparse.Namespace) else args
    base = cls() if base is None else base
    hints = typing.get_type_hints(cls)
    changes = {}
    for f in fields(cls):
        key, value = f"{prefix}{f.name}", getattr(base, f.name)
        if is_dataclass(value):
            nested = dataclass_from_arguments(type(value), given, value, f"{key}.")
            if nested is not value:
                changes[f.name] = nested
        elif key in given:
            is_tuple = typing.get_origin(_strip_none(hints[f.name])) is tuple
            changes[f.name] = tuple(given[key]) if is_tuple else given[key]
    return replace(base, **changes) if changes else base
