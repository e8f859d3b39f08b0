"""Command-line options generated from the config dataclasses (F9: flag names and booleans).

`tokenizer.vocab_size` becomes `--tokenizer-vocab-size N`; booleans get `--x` / `--no-x`. Options
default to SUPPRESS so that only what the user typed overrides the YAML; the help text shows the
value the command would actually use (from the chosen --config).
"""

import argparse
import dataclasses
import difflib
import sys
import typing
from collections.abc import Callable
from typing import Any, Literal

from gpt2zh.config.schema import GROUPS, Config
from gpt2zh.config.values import BadValue, describe, parse_text
from gpt2zh.errors import UserError

DEST_PREFIX = "config:"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that suggest the closest valid flag, and no prefix matching."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --tokenizer-vocab must not silently mean --tokenizer-vocab-size
        super().__init__(*args, **kwargs)

    argv: list[str] | None = None  # what is being parsed, so an error can name the command

    def command_in(self, argv: list[str]) -> str | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return next((word for word in argv if word in action.choices), None)
        return None

    def known_flags(self) -> list[str]:
        """Long flags of this parser and its subcommands (unknown flags are reported by the top parser)."""
        flags = []
        for action in self._actions:
            flags += [s for s in action.option_strings if s.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += sub.known_flags() if isinstance(sub, Parser) else []
        return list(dict.fromkeys(flags))

    def error(self, message: str):  # argparse calls this and expects no return
        if message.startswith("unrecognized arguments:"):
            unknown = [tok for tok in message.split(":", 1)[1].split() if tok.startswith("-")]
            if unknown:
                flag = unknown[0].split("=", 1)[0]
                command = self.command_in(sys.argv[1:] if self.argv is None else self.argv)
                if flag in self.known_flags() and command:
                    raise UserError(f"{self.prog} {command}: {flag} does nothing for this command",
                                    f"leave it out (see `{self.prog} {command} --help`)")
                close = difflib.get_close_matches(flag, self.known_flags(), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"see `{self.prog} --help`"
                raise UserError(f"{self.prog}: unknown option {flag}", hint)
            stray = message.split(":", 1)[1].split()[0]
            from gpt2zh.config.loader import available_configs

            if stray.removesuffix(".yaml") in available_configs() or stray.endswith((".yaml", ".yml")):
                raise UserError(f"{self.prog}: {stray!r} belongs to no option", f"use --config {stray}")
            raise UserError(f"{self.prog}: {stray!r} belongs to no option",
                            "a boolean takes no value (--data-dedupe or --no-data-dedupe); quote a value with spaces")
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def flag_name(group: str, field_name: str) -> str:
    return f"--{group}-{field_name.replace('_', '-')}"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(value) if value else "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if value == "" else str(value)


def _converter(tp, flag: str):
    def convert(text: str):
        try:
            return parse_text(text, tp)
        except BadValue as err:
            raise UserError(f"{flag}: {err}", "see --help for the expected type") from None
    convert.__name__ = describe(tp)  # argparse names the type in its own messages
    return convert


def add_config_options(parser: argparse.ArgumentParser, config: Config, origin: Callable[[str], str],
                       shown: tuple[str, ...] = tuple(GROUPS)) -> None:
    """Every group's options are accepted (they are all part of a run's settings); only `shown` are in --help,
    each with the value the command would use and origin(dotted), the layer that set it."""
    for group_name, cls in GROUPS.items():
        title = (cls.__doc__ or group_name).strip().splitlines()[0]
        section = parser.add_argument_group(f"{group_name} ({title})")
        visible = group_name in shown
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            flag = flag_name(group_name, f.name)
            flags = [flag, f.metadata["alias"]] if f.metadata.get("alias") else [flag]
            current = getattr(getattr(config, group_name), f.name)
            help_text = f"{f.metadata['help']} [{_show(current)} from {origin(f'{group_name}.{f.name}')}]" \
                .replace("%", "%%") \
                if visible else argparse.SUPPRESS
            common = dict(dest=f"{DEST_PREFIX}{group_name}.{f.name}", default=argparse.SUPPRESS, help=help_text)
            if tp is bool:
                section.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
            elif typing.get_origin(tp) is list:
                metavar = "PATH" if f.name == "files" else "TEXT"
                section.add_argument(*flags, nargs="+", metavar=metavar, **common)
            else:
                metavar = "{" + ",".join(map(str, typing.get_args(tp))) + "}" if typing.get_origin(tp) is Literal \
                    else f.name.split("_")[-1].upper()
                section.add_argument(*flags, type=_converter(tp, flag), metavar=metavar, **common)


def overrides_from(namespace: argparse.Namespace) -> dict[str, Any]:
    """{'group.field': value} for every config option given on the command line."""
    return {key[len(DEST_PREFIX):]: value for key, value in vars(namespace).items() if key.startswith(DEST_PREFIX)}
