"""Command-line flags generated from the settings dataclasses (their help text included)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from diffprune.bounds import span, within


def _scalar_type(annotation: Any) -> tuple[Any, bool]:
    """(type to parse with, whether it is a list) for a field annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, typing.List):  # noqa: UP006
        return args[0], True
    if origin in (typing.Union, types.UnionType):
        return _scalar_type(args[0])
    if origin is typing.Literal:
        return type(args[0]), False
    return annotation, False


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str,
                        only: tuple[str, ...] | None = None) -> None:
    """One ``--field-name`` flag per field (or per field named in ``only``); defaults, help and
    ranges come from the dataclass."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        kind, is_list = _scalar_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is \
            typing.Literal else None
        bounds = f.metadata.get("bounds")
        if bounds is not None:  # parsed against the range the dataclass checks
            kind = bounded(kind, *bounds)
        if kind is bool:
            group.add_argument(flag, dest=f.name, default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=kind, nargs="*" if is_list else None,
                               choices=choices, default=argparse.SUPPRESS, help=help_text)


def build_dataclass(cls: type, namespace: argparse.Namespace, base: dict | None = None):
    """The dataclass from ``base`` values (a config file) overridden by the flags given."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(base or {})
    values.update({k: v for k, v in vars(namespace).items() if k in names})
    return cls(**values)


def bounded(kind: type, low: float | None = None, high: float | None = None,
            open_low: bool = False, open_high: bool = False):
    """An argparse ``type`` that parses ``kind`` and refuses values outside its range (see
    ``diffprune.bounds``); argparse puts the flag's name in front of the message."""
    limits = (low, high, open_low, open_high)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not within(value, limits):
            raise argparse.ArgumentTypeError(f"must be a finite number {span(limits)}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
