"""Typed configuration: schema (dataclasses), loading/validation (YAML) and command-line options."""

from gpt2zh.config.loader import (
    config_to_dict,
    dump_config,
    find_config,
    fingerprint_fields,
    load_config,
)
from gpt2zh.config.schema import GROUPS, Config

__all__ = ["Config", "GROUPS", "config_to_dict", "dump_config", "find_config", "fingerprint_fields", "load_config"]
