"""Loading, merging, validating and writing configs.

Precedence: dataclass defaults < the --config YAML < command-line overrides. Every problem found
(unknown keys, wrong types, impossible combinations) is collected and reported in one UserError,
so a user fixes a config in one round trip instead of one error per run (litgpt's validate_args).
"""

import dataclasses
import difflib
import importlib.util
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gpt2zh.config.schema import GROUPS, Config, all_keys
from gpt2zh.config.values import BadValue, check_value
from gpt2zh.errors import UserError

DEFAULT_CONFIG_NAME = "demo"
MIN_CHARACTER_COVERAGE = 0.98  # the lowest SentencePiece's trainer accepts
WARMUP_SHARE = 0.1  # of the run, when a short run scales a config's warmup (GPT-3's warmups are at most this)


def configs_dir() -> Path:
    """The shipped configs: package data gpt2zh.configs, which is the repository's configs/ folder in a
    checkout (pyproject.toml's package-dir) and gpt2zh/configs/ in an installed wheel."""
    return Path(importlib.util.find_spec("gpt2zh.configs").submodule_search_locations[0])


def available_configs() -> list[str]:
    folder = configs_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_config(name_or_path: str | None) -> Path:
    """A path to an existing YAML file, or a name from configs/ ('demo', 'gpt2-small')."""
    if name_or_path == "":
        raise UserError("--config: empty", f"name a YAML file or one of: {', '.join(available_configs())}")
    name_or_path = name_or_path or DEFAULT_CONFIG_NAME
    as_path = Path(name_or_path).expanduser()
    if as_path.is_file():
        return as_path
    if as_path.is_dir():
        raise UserError(f"--config {name_or_path}: a directory, not a YAML file",
                        f"name a file (a run's settings: {as_path / 'settings.yaml'})")
    candidate = configs_dir() / (name_or_path if name_or_path.endswith(".yaml") else f"{name_or_path}.yaml")
    if candidate.is_file() and as_path.parent == Path("."):
        return candidate
    names = available_configs()
    close = difflib.get_close_matches(as_path.stem, names, n=1)
    listed = ", ".join(names) or "(none found)"
    hint = f"did you mean --config {close[0]}?" if close else f"use a YAML path or one of: {listed}"
    raise UserError(f"--config: {name_or_path!r} not found", hint)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 (byte {err.start})", "save the config as UTF-8") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})", "check the path and permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise UserError(f"{path}:{where}: {problem}", "fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of groups ({', '.join(GROUPS)}), got {type(data).__name__}",
                        "see configs/demo.yaml for the layout")
    return data


def _suggest(unknown: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(unknown, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_mapping(config: Config, mapping: dict[str, Any], source: str) -> list[str]:
    """Apply {group: {field: value}} onto config in place; returns the problems found."""
    problems = []
    for group_name, values in mapping.items():
        if group_name not in GROUPS:
            problems.append(f"{source}: unknown group {group_name!r}{_suggest(str(group_name), GROUPS)}")
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"{source}: {group_name}: expected a mapping of fields, got {values!r}")
            continue
        group = getattr(config, group_name)
        types_by_name = _field_types(type(group))
        for key, value in values.items():
            dotted = f"{group_name}.{key}"
            if key not in types_by_name:
                problems.append(f"{source}: unknown key {dotted!r}{_suggest(dotted, all_keys())}")
                continue
            try:
                setattr(group, key, check_value(value, types_by_name[key]))
            except BadValue as err:
                problems.append(f"{source}: {dotted}: {err}")
    return problems


def validate(config: Config) -> list[str]:
    """Combinations no single type can express."""
    problems = []
    d, t, m = config.data, config.tokenizer, config.model
    if not 0.0 <= d.validation_fraction <= 0.5:
        problems.append(f"data.validation_fraction must be within [0, 0.5], got {d.validation_fraction}")
    if d.max_line_chars < 1:
        problems.append("data.max_line_chars must be >= 1")
    if d.min_chars < 0:
        problems.append("data.min_chars must be >= 0")
    if d.title_field and d.title_field == d.text_field:
        problems.append(f"data.title_field and data.text_field are both {d.text_field!r}")
    if d.block_size < 8:
        problems.append(f"data.block_size must be >= 8, got {d.block_size}")
    if d.block_size > m.n_positions:
        problems.append(f"data.block_size ({d.block_size}) exceeds model.n_positions ({m.n_positions}): "
                        "the model could not attend over a whole block")
    if d.map_batch_size < 1:
        problems.append("data.map_batch_size must be >= 1")
    if d.num_proc < 0:
        problems.append("data.num_proc must be >= 0 (0 = min(8, CPU count))")
    if d.num_shards < 1 or not 0 <= d.shard_index < d.num_shards:
        problems.append(f"data.shard_index must be within 0 .. data.num_shards-1 "
                        f"(got index {d.shard_index} of {d.num_shards})")
    if t.vocab_size < 300:
        problems.append(f"tokenizer.vocab_size must be >= 300 (256 byte pieces + specials), got {t.vocab_size}")
    if not MIN_CHARACTER_COVERAGE <= t.character_coverage <= 1.0:  # below, SentencePiece stops with a traceback
        problems.append(f"tokenizer.character_coverage must be within [{MIN_CHARACTER_COVERAGE}, 1], got "
                        f"{t.character_coverage}")
    for name in ("input_sentence_size", "verify_lines"):
        if getattr(t, name) < 1:
            problems.append(f"tokenizer.{name} must be >= 1")
    if t.max_sentence_bytes < 16:
        problems.append("tokenizer.max_sentence_bytes must be >= 16")
    if t.read_factor < 1.0:
        problems.append("tokenizer.read_factor must be >= 1")
    if t.num_threads < 0:
        problems.append("tokenizer.num_threads must be >= 0 (0 = all cores)")
    for name in ("n_layer", "n_head", "n_embd", "n_positions"):
        if getattr(m, name) < 1:
            problems.append(f"model.{name} must be >= 1")
    if m.n_head >= 1 and m.n_embd % m.n_head:
        problems.append(f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
    tr, opt = config.training, config.optimization
    for name in ("max_steps", "global_batch_size", "per_device_batch_size", "logging_steps", "eval_steps",
                 "max_nonfinite_steps"):
        if getattr(tr, name) < 1:
            problems.append(f"training.{name} must be >= 1")
    if tr.sample_max_new_tokens < 0:
        problems.append("training.sample_max_new_tokens must be >= 0 (0 = no samples)")
    if tr.eval_max_blocks < 0:
        problems.append("training.eval_max_blocks must be >= 0 (0 = all)")
    if not 0.1 <= tr.gpu_memory_fraction <= 1.0:
        problems.append(f"training.gpu_memory_fraction must be within [0.1, 1], got {tr.gpu_memory_fraction}")
    if tr.dataloader_workers < -1:
        problems.append("training.dataloader_workers must be >= -1 (-1 = min(8, CPU count))")
    if config.checkpoint.save_steps < 1:
        problems.append("checkpoint.save_steps must be >= 1")
    if config.checkpoint.save_total_limit < 1:
        problems.append("checkpoint.save_total_limit must be >= 1")
    if opt.learning_rate <= 0:
        problems.append("optimization.learning_rate must be > 0")
    if not 0.0 <= opt.min_lr_ratio <= 1.0:
        problems.append("optimization.min_lr_ratio must be within [0, 1]")
    if not 0.0 < opt.decay_ratio <= 1.0:
        problems.append("optimization.decay_ratio must be within (0, 1]")
    if opt.warmup_steps < 0 or opt.weight_decay < 0 or opt.max_grad_norm < 0:
        problems.append("optimization.warmup_steps, weight_decay and max_grad_norm must be >= 0")
    if opt.warmup_steps >= tr.max_steps >= 1:  # the rate would never reach its peak, and nothing would decay
        problems.append(f"optimization.warmup_steps ({opt.warmup_steps}) must be below training.max_steps "
                        f"({tr.max_steps}): use --optimization-warmup-steps {int(tr.max_steps * WARMUP_SHARE)} "
                        "or a larger --training-max-steps")
    if not (0.0 <= opt.adam_beta1 < 1.0 and 0.0 <= opt.adam_beta2 < 1.0):
        problems.append("optimization.adam_beta1 and adam_beta2 must be within [0, 1)")
    if config.hub.repo_id and not re.fullmatch(r"[\w.-]+/[\w.-]+", config.hub.repo_id):
        problems.append(f"hub.repo_id must look like user/name, got {config.hub.repo_id!r}")
    if config.hub.max_retries < 0 or config.hub.retry_wait_seconds < 0:
        problems.append("hub.max_retries and hub.retry_wait_seconds must be >= 0")
    if config.hub.push_checkpoints and not config.hub.repo_id:
        problems.append("hub.push_checkpoints needs hub.repo_id")
    if config.checkpoint.resume == "hub" and not config.hub.repo_id:
        problems.append("checkpoint.resume hub needs hub.repo_id: pass --hub-repo-id, the repository the checkpoints "
                        "were pushed to")
    if not 0.0 <= m.dropout < 1.0:
        problems.append("model.dropout must be within [0, 1)")
    return problems


def raise_problems(problems: list[str]) -> None:
    if len(problems) == 1:
        raise UserError(problems[0], "fix it (--help lists every key with its type and value)")
    if problems:
        numbered = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise UserError(f"{len(problems)} config problems: {numbered}",
                        "fix them (--help lists every key with its type and value)")


Layer = tuple[str, dict[str, Any]]  # (where it came from, {group: {field: value}})


class Adaptation(NamedTuple):
    """A value loading adapted to this command: said once, and never saved as the run's own (NU5)."""

    key: str        # 'optimization.warmup_steps'
    original: Any   # what the layers gave, which the run directory keeps
    note: str


def fit_warmup(config: Config, typed: Iterable[str]) -> Adaptation | None:
    """A max_steps at or below a warmup that nobody typed (the config file's, sized for its full run) scales the
    warmup to WARMUP_SHARE of the run: a quick `--training-max-steps 10` trains instead of being refused
    (PITFALLS.md NU5). A warmup typed on a command line is the user's choice and is checked as given."""
    opt, steps = config.optimization, config.training.max_steps
    if "optimization.warmup_steps" in typed or not opt.warmup_steps >= steps >= 1:
        return None
    scaled = int(steps * WARMUP_SHARE)
    note = (f"optimization.warmup_steps {opt.warmup_steps} is not below training.max_steps {steps}: warmup scaled "
            f"to {scaled} step(s), {WARMUP_SHARE:.0%} of the run (--optimization-warmup-steps sets it)")
    adaptation = Adaptation("optimization.warmup_steps", opt.warmup_steps, note)
    opt.warmup_steps = scaled
    return adaptation


def load_layers(base: Layer | None, overrides: dict[str, Any] | None = None, preset: Layer | None = None,
                adaptations: list[Adaptation] | None = None) -> Config:
    """Defaults, then a config mapping (a YAML file or a run's saved settings), then a hardware preset,
    then already-typed command-line overrides {'group.field': value}. `adaptations` receives what was adapted
    to this command."""
    config = Config()
    problems = []
    if base is not None:
        problems += apply_mapping(config, base[1], base[0])
    if preset is not None:
        problems += apply_mapping(config, preset[1], preset[0])
    for dotted, value in (overrides or {}).items():
        group, key = dotted.split(".", 1)
        problems += apply_mapping(config, {group: {key: value}}, "command line")
    if (adapted := fit_warmup(config, overrides or {})) is not None and adaptations is not None:
        adaptations.append(adapted)
    problems += validate(config)
    raise_problems(problems)
    return config


def load_config(config_path: Path | None, overrides: dict[str, Any] | None = None,
                preset: Layer | None = None) -> Config:
    """load_layers with the YAML file at config_path as the base."""
    base = (str(config_path), read_yaml_mapping(config_path)) if config_path is not None else None
    return load_layers(base, overrides, preset)


def config_to_dict(config: Config, groups: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    wanted = list(groups) if groups is not None else list(GROUPS)
    return {name: dataclasses.asdict(getattr(config, name)) for name in wanted}


def fingerprint_fields(config: Config, groups: Iterable[str], stage: str) -> dict[str, dict[str, Any]]:
    """The fields of `groups` that affect `stage`'s output (fields marked only_for other stages excluded)."""
    selected = {}
    for name in groups:
        group = getattr(config, name)
        selected[name] = {
            f.name: getattr(group, f.name)
            for f in dataclasses.fields(group)
            if f.metadata.get("in_fingerprint", True)
            and (f.metadata.get("only_for") is None or stage in f.metadata["only_for"])
        }
    return selected


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config; it holds no secret because no field does (tokens come from the environment)."""
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True), encoding="utf-8")
