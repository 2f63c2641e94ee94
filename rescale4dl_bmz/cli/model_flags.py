"""Command-line options generated from a pydantic config model, so the two cannot drift.

A `Flag` names a field by its dotted path in the model (`tau_s`, `training.epochs`,
`training.architecture.base_filters`). Everything else comes from the field: the option
`--field-name`, the argparse type from its annotation (a `Literal` gives the choices, a list
takes several values, a bool becomes a switch), and the help from its description. Every option
defaults to None, "not given", so a config file's value stands unless the option is given.
"""

from __future__ import annotations

import argparse
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Flag:
    """One option mirroring a model field; `option`, `metavar` and `type` only where the field's
    own name or type would not do (`--tau` for `tau_s`, `SHARE|auto` for a float-or-"auto")."""

    field: str
    option: str | None = None
    metavar: str | None = None
    type: Callable[[str], Any] | None = None

    @property
    def dest(self) -> str:
        """The attribute on the parsed arguments: the field's own name (its last part)."""
        return self.field.rsplit(".", 1)[-1]


def field_info(model: type[BaseModel], path: str) -> FieldInfo:
    """The `FieldInfo` at a dotted path, through nested models, optional ones and unions of models
    (the first member that has the field, e.g. the U-Net's for `architecture.base_filters`)."""
    parts = path.split(".")
    for part, inner in zip(parts, parts[1:]):
        nested = [m for m in _members(model.model_fields[part].annotation)
                  if isinstance(m, type) and issubclass(m, BaseModel) and inner in m.model_fields]
        if not nested:
            raise KeyError(f"{path}: no model under {part!r} has a field {inner!r}")
        model = nested[0]
    return model.model_fields[parts[-1]]


def add_flags(parser: argparse.ArgumentParser, model: type[BaseModel], flags: Iterable[Flag],
              defaults: Mapping[str, str] | None = None) -> None:
    """Add one option per flag; `defaults` (field path -> words) adds "default: words" to the help
    of fields whose default the description does not state, or that this command changes."""
    for flag in flags:
        info = field_info(model, flag.field)
        help_text = info.description or ""
        if defaults and flag.field in defaults:
            said = f"default: {defaults[flag.field]}"  # joins a closing parenthesis: "(...; default: ...)"
            help_text = f"{help_text[:-1]}; {said})" if help_text.endswith(")") else f"{help_text} ({said})"
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": None}
        option = flag.option or "--" + flag.dest.replace("_", "-")
        kind = _argument_kind(info.annotation)
        if kind is bool:
            if info.default is True:  # on unless switched off
                option = flag.option or "--no-" + flag.dest.replace("_", "-")
                kwargs["action"], help_text = "store_false", "do not " + help_text
            else:
                kwargs["action"] = "store_true"
        elif isinstance(kind, tuple):
            kwargs["choices"] = kind
        elif isinstance(kind, list):
            kwargs["nargs"], kwargs["type"] = "+", flag.type or kind[0]
        else:
            kwargs["type"] = flag.type or kind
            if kwargs["type"] is None:
                raise TypeError(f"{flag.field}: give the Flag a type ({info.annotation} has no argparse type)")
        if flag.metavar and "action" not in kwargs:
            kwargs["metavar"] = flag.metavar
        parser.add_argument(option, help=help_text.replace("%", "%%"), **kwargs)


def given_fields(args: argparse.Namespace, flags: Iterable[Flag]) -> dict:
    """The options given on the command line as (nested) config fields: {"training": {"epochs": 5}}."""
    given: dict = {}
    for flag in flags:
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        *parents, name = flag.field.split(".")
        node = given
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return given


def _members(annotation) -> list:
    """The types an annotation allows, with None, `Annotated` and unions unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [] if annotation is type(None) else [annotation]


def _argument_kind(annotation):
    """bool, a tuple of choices, [item type] for a list, a scalar type, or None when it takes a Flag type."""
    members = _members(annotation)
    if len(members) != 1:
        return None
    only = members[0]
    if get_origin(only) is Literal:
        return get_args(only)
    if get_origin(only) is list:
        return [_members(get_args(only)[0])[0]]
    return only if only in (bool, int, float, str, Path) else None
