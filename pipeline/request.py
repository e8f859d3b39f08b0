"""What a command works on: its settings resolved once (PITFALLS.md RS15) from the command line, --config or the
run's saved settings (RS1), the GPU preset and a base model's sizes, and the run directory. The CLI calls it for
every command; `gpt2zh plan` and `gpt2zh evaluate` call it again for other presets or process counts."""

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config import find_config
from gpt2zh.config.loader import read_yaml_mapping
from gpt2zh.config.options import overrides_from
from gpt2zh.models.source import absolute_reference
from gpt2zh.run_settings import SavedSettings, absolute_corpus_paths, is_settings, read_settings, settings_from
from gpt2zh.rundir import RunDir
from gpt2zh.stages import StageRequest

log = logging.getLogger("gpt2zh")


@dataclass(frozen=True)
class Layers:
    base: tuple[str, dict]           # the config mapping everything starts from
    command_line: dict               # what command lines typed: saved ones, then this one's
    run_dir: Path
    source: str                      # where the base came from, for --help and the log
    saved: SavedSettings | None      # the run's saved settings, when they are the base
    earlier: frozenset = frozenset()  # command-line keys that earlier commands typed (saved), not this one


def settings_layers(config_flag: str | None, run_dir_flag: str | None, typed: dict) -> Layers:
    """A command without --config on a run directory with saved settings starts from them (RS1): a forgotten
    --data-files must not mean the demo corpus."""
    config_path = find_config(config_flag)
    mapping = read_yaml_mapping(config_path)
    if is_settings(mapping):  # --config <run>/settings.yaml: that run's settings, from any directory
        saved = settings_from(config_path, mapping)
        run_dir = Path(run_dir_flag) if run_dir_flag else config_path.parent
    else:
        run_dir = Path(run_dir_flag) if run_dir_flag else Path("runs") / config_path.stem
        saved = read_settings(run_dir) if config_flag is None else None
    if saved is not None:
        return Layers((str(saved.path), saved.groups), {**saved.command_line, **typed}, run_dir,
                       saved.path.name, saved, frozenset(saved.command_line) - set(typed))
    return Layers((str(config_path), mapping), typed, run_dir, config_path.name, None)


def typed_overrides(args: argparse.Namespace) -> dict:
    typed = overrides_from(args)
    if "data.files" in typed:
        typed["data.files"] = absolute_corpus_paths(typed["data.files"])
    if "model.init_from" in typed:
        typed["model.init_from"] = absolute_reference(typed["model.init_from"])
    return typed


def command_request(args: argparse.Namespace, what_if: bool = False, processes: int | None = None,
             preset: str | None = None) -> StageRequest:
    """The config resolved once, preset included (RS15), and the run directory a command works on.
    what_if, processes, preset: `gpt2zh plan` on another preset's card, process count or preset."""
    from gpt2zh.hardware.facts import collect_facts
    from gpt2zh.resolution import resolve

    typed = {**typed_overrides(args), **({"training.preset": preset} if preset else {})}
    layers = settings_layers(args.config, args.run_dir, typed)
    resolved = resolve(layers.base, layers.command_line, collect_facts(), what_if, processes, layers.earlier)
    for config in (resolved.config, resolved.settings):  # the saved settings work from any directory
        config.data.files = absolute_corpus_paths(config.data.files)
        config.model.init_from = absolute_reference(config.model.init_from)
    for note in resolved.notes:
        log.info("settings: %s", note)
    if resolved.config.model.init_from:
        from gpt2zh.models.base_sizes import with_base_sizes

        resolved = with_base_sizes(resolved, layers.run_dir)
    return StageRequest(resolved=resolved, run_dir=RunDir(layers.run_dir),
                        force=getattr(args, "force", False), replace=getattr(args, "force", False),
                        overrides=layers.command_line, dry_run=getattr(args, "dry_run", False),
                        saved_settings=f"{saved.path} (saved by {saved.saved_by})" if (saved := layers.saved) else "")
