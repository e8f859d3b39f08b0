"""A run directory's settings: the config the last command on it resolved, saved at its root.

A command on an existing run directory without --config starts from them, with what its own command
line adds on top, so no flag has to be repeated: a forgotten --data-files must never rebuild a run
on the demo corpus (RS1). The file is also a plain config
(`--config <run-dir>/settings.yaml` works from any directory: corpus paths are saved absolute).
"""

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpt2zh.config import config_to_dict
from gpt2zh.config.loader import read_yaml_mapping
from gpt2zh.config.schema import GROUPS, Config
from gpt2zh.corpus.hub_files import is_hub_path
from gpt2zh.errors import UserError

SETTINGS_FILE = "settings.yaml"
COMMAND_LINE_KEY = "command_line"  # not a config group: what was typed, re-applied above a GPU preset
ABOUT_KEY = "saved_by"
RECORDED_CONFIGS = ("model/run_config.yaml", "dataset/config.yaml", "tokenizer/config.yaml")  # newest stage first


@dataclass(frozen=True)
class SavedSettings:
    path: Path
    groups: dict[str, Any]         # the resolved config, {group: {field: value}}
    command_line: dict[str, Any]   # {'group.field': value} given on command lines so far
    saved_by: str                  # e.g. "gpt2zh run, 2026-12-01 21:30 UTC"


def absolute_corpus_paths(files: list[str]) -> list[str]:
    """Local corpus paths and globs made absolute (hf:// paths kept), so they mean the same from any directory."""
    return [entry if is_hub_path(entry) else os.path.abspath(os.path.expanduser(entry)) for entry in files]


def settings_path(root: Path) -> Path:
    return root / SETTINGS_FILE


def read_settings(root: Path) -> SavedSettings | None:
    """The run's saved settings; for a run directory made before they were saved, the config its newest
    stage recorded beside its output (one-command instructions reset)."""
    path = settings_path(root)
    if path.is_file():
        return settings_from(path, read_yaml_mapping(path))
    for recorded in RECORDED_CONFIGS:
        if (root / recorded).is_file():
            groups = _without_once_fields(read_yaml_mapping(root / recorded))
            return SavedSettings(path=root / recorded, groups=groups, command_line={},
                                 saved_by=f"the stage that wrote {recorded}")
    return None


def is_settings(mapping: dict) -> bool:
    """Whether a YAML mapping is a saved settings file (given as --config) rather than a plain config."""
    return COMMAND_LINE_KEY in mapping


def settings_from(path: Path, mapping: dict) -> SavedSettings:
    if not is_settings(mapping):  # an emptied file would silently mean the built-in defaults
        raise UserError(f"{path} is not a gpt2zh settings file (it has no {COMMAND_LINE_KEY}: section)",
                        "delete it: the next command starts from --config or the config the stages recorded")
    mapping = dict(mapping)
    command_line = mapping.pop(COMMAND_LINE_KEY, None) or {}
    saved_by = str(mapping.pop(ABOUT_KEY, "an earlier command"))
    if not isinstance(command_line, dict):
        raise UserError(f"{path}: {COMMAND_LINE_KEY} must be a mapping of group.field: value",
                        f"fix it, or delete {path} to start from --config again")
    unknown = [key for key in command_line if str(key).split(".", 1)[0] not in GROUPS]
    if unknown:
        raise UserError(f"{path}: {COMMAND_LINE_KEY} has unknown key {unknown[0]!r}",
                        f"fix it, or delete {path} to start from --config again")
    return SavedSettings(path=path, groups=mapping, command_line=dict(command_line), saved_by=saved_by)


def once_fields() -> dict[str, Any]:
    """{'group.field': default} of the instructions for one command (metadata once=True)."""
    defaults = Config()
    return {f"{group}.{f.name}": getattr(getattr(defaults, group), f.name)
            for group, cls in GROUPS.items() for f in dataclasses.fields(cls) if f.metadata.get("once")}


def _without_once_fields(groups: dict) -> dict:
    """The groups with each one-command instruction back at its default."""
    for dotted, default in once_fields().items():
        group, name = dotted.split(".")
        if isinstance(groups.get(group), dict) and name in groups[group]:
            groups[group][name] = default
    return groups


def write_settings(root: Path, command: str, config: Config, command_line: dict[str, Any]) -> Path:
    """Written aside, then renamed: a command killed mid-write leaves the previous settings whole.
    One-command instructions (--resume never) are saved at their defaults: the next command must not
    start over again."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    groups = _without_once_fields(config_to_dict(config))
    once = once_fields()
    remembered = {key: value for key, value in command_line.items() if key not in once}
    document = {ABOUT_KEY: f"gpt2zh {command}, {stamp}", COMMAND_LINE_KEY: remembered, **groups}
    header = ("# The settings of this run directory, saved by the last command that built something in it. A\n"
              "# command on this run directory without --config starts from them, its own flags on top. To change\n"
              "# a setting, pass its flag: a value below is overridden by the same key under command_line.\n")
    root.mkdir(parents=True, exist_ok=True)
    path = settings_path(root)
    temporary = path.with_name(f".{SETTINGS_FILE}.{os.getpid()}.tmp")
    temporary.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    temporary.replace(path)
    return path
