"""`gpt2zh show-config`: the config a command would use, resolved exactly as the stages receive it (GPU preset
included, PITFALLS.md RS15), as YAML; --sources names the layer of each field, --get one value or group."""

import argparse
import difflib

import yaml

from gpt2zh.config import config_to_dict
from gpt2zh.errors import UserError


def show_config(args: argparse.Namespace, request) -> int:
    values = config_to_dict(request.config)
    if args.get is not None:
        group, _, key = args.get.partition(".")
        keys = list(values) + [f"{g}.{k}" for g, fields in values.items() for k in fields]
        if group not in values or (key and key not in values[group]):
            close = difflib.get_close_matches(args.get, keys, n=1, cutoff=0.6)
            raise UserError(f"--get: no config key {args.get!r}",
                            f"did you mean {close[0]}?" if close else "use a group (data) or group.field (hub.repo_id)")
        if not key:
            values = {group: values[group]}
        elif args.sources:
            values = {group: {key: values[group][key]}}
        else:
            value = values[group][key]
            print(" ".join(map(str, value)) if isinstance(value, list) else value)
            return 0
    if args.sources:
        return print_sources(values, request.resolved)
    _header(request.resolved)
    print(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), end="")
    return 0


def _header(resolved) -> None:
    print(f"# {resolved.preset_note}")
    print("# training.per_device_batch_size is the most wanted: `gpt2zh plan` shows the batch that fits the memory")


def print_sources(values: dict, resolved) -> int:
    """The YAML of show-config with each field's layer as a comment: still a valid config file."""
    _header(resolved)
    for group, fields in values.items():
        print(f"{group}:")
        for key, value in fields.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, allow_unicode=True, width=10**6).strip()
            print(f"  {text[1:-1]}  # {resolved.origin(f'{group}.{key}')}")
    return 0
