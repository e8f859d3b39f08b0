"""Checking and converting one config value against its annotated type.

YAML gives typed values, the command line gives strings; both end up here so that a string where an
integer belongs is reported with the key, the expected type and the value — not a crash later.
"""

import difflib
import types
import typing
from typing import Any, Literal


class BadValue(ValueError):
    """The value does not fit the field's type; the message says what was expected."""


def _optional_inner(tp):
    """X for `X | None` / Optional[X], else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def describe(tp) -> str:
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{describe(inner)} or null"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(str(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return "a list of " + describe(typing.get_args(tp)[0]) + "s"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))


def _literal(value, choices) -> Any:
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise BadValue(f"expected one of {', '.join(map(str, choices))}, got {value!r}{hint}")


def _scalar(value, tp) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise BadValue(f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BadValue(f"expected an integer, got {value!r} ({type(value).__name__})")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # PyYAML follows YAML 1.1, where `1e-3` (no dot) is a string; accept what float() accepts.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise BadValue(f"expected a number, got {value!r} ({type(value).__name__})")
    if tp is str:
        if isinstance(value, str):
            return value
        raise BadValue(f"expected text, got {value!r} ({type(value).__name__})")
    raise TypeError(f"unsupported config type {tp}")  # a schema bug, not user input


def check_value(value, tp) -> Any:
    """Validate a YAML (already typed) value; returns it normalised (e.g. int -> float)."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else check_value(value, inner)
    if typing.get_origin(tp) is Literal:
        return _literal(value, typing.get_args(tp))
    if typing.get_origin(tp) is list:
        item_type = typing.get_args(tp)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single path is a one-element list
        if not isinstance(value, list):
            raise BadValue(f"expected {describe(tp)}, got {value!r}")
        return [check_value(item, item_type) for item in value]
    return _scalar(value, tp)


def parse_text(text: str, tp) -> Any:
    """Convert a command-line string to the field's type."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if text.lower() in ("none", "null") else parse_text(text, inner)
    if typing.get_origin(tp) is Literal:
        return _literal(text, typing.get_args(tp))
    if tp is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise BadValue(f"expected an integer, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise BadValue(f"expected a number, got {text!r}") from None
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise BadValue(f"expected true/false, got {text!r}")
    return text
