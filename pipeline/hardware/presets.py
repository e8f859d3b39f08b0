"""Per-GPU presets (configs/presets/*.yaml): which one fits the hardware, and refusing one that does not.

A preset changes only hardware choices (per-device batch, precision, TF32, compile, checkpointing);
the global batch stays what the config asks for, so a run means the same on an A100 and a T4.
Precedence: defaults < --config < preset < command line (pipeline/resolution.py).
"""

import difflib
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config.loader import apply_mapping, configs_dir, read_yaml_mapping
from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.hardware.facts import GpuFacts, HardwareFacts

HARDWARE_FIELDS = {"per_device_batch_size", "precision", "tf32", "torch_compile", "compile_mode",
                   "activation_checkpointing", "dataloader_workers"}
MATCH_FIELDS = {"gpu", "min_memory_gib", "max_memory_gib"}
NO_PRESET = "none"
AUTO = "auto"


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    gpu: str                 # substring of the GPU name, or "none" for CPU-only machines
    min_memory_gib: float
    max_memory_gib: float
    training: dict
    card: GpuFacts | None = None  # the GPU `gpt2zh plan --preset` plans for on another machine

    def matches(self, facts: HardwareFacts) -> tuple[bool, str]:
        if not facts.gpus:
            return (self.gpu == "none", "this machine has no CUDA GPU")
        gpu = facts.gpus[0]
        if self.gpu == "none":
            return False, f"this machine has a {gpu.name}"
        if self.gpu.lower() not in gpu.name.lower():
            return False, f"this machine has a {gpu.name}, not a {self.gpu}"
        if not self.min_memory_gib <= gpu.memory_gib <= self.max_memory_gib:
            return False, (f"{gpu.name} has {gpu.memory_gib:g} GiB, the preset is for "
                           f"{self.min_memory_gib:g}-{self.max_memory_gib:g} GiB")
        return True, f"matches {gpu.name} ({gpu.memory_gib:g} GiB)"


def presets_dir() -> Path:
    return configs_dir() / "presets"


def available_presets() -> list[str]:
    return sorted(path.stem for path in presets_dir().glob("*.yaml"))


def load_preset(name: str) -> Preset:
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        names = available_presets()
        close = difflib.get_close_matches(name.lower(), names, n=1)
        listed = f"auto, none or one of: {', '.join(names)}"
        hint = f"did you mean --preset {close[0]}? (presets: {listed})" if close else f"use {listed}"
        raise UserError(f"--preset: no preset named {name!r}", hint)
    mapping = read_yaml_mapping(path)
    problems = [f"{path}: unknown section {key!r} (a preset has match:, card: and training:)"
                for key in mapping if key not in ("match", "card", "training")]
    match, training = mapping.get("match") or {}, mapping.get("training") or {}
    problems += [f"{path}: match.{key} is not a match field ({', '.join(sorted(MATCH_FIELDS))})"
                 for key in match if key not in MATCH_FIELDS]
    allowed = ", ".join(sorted(HARDWARE_FIELDS))
    problems += [f"{path}: training.{key} is not a hardware field a preset may set ({allowed})"
                 for key in training if key not in HARDWARE_FIELDS]
    problems += apply_mapping(Config(), {"training": training}, str(path))  # types and choices
    if "gpu" not in match:
        problems.append(f"{path}: match.gpu is required (a GPU name substring, or none)")
    card = _card(mapping.get("card"), path, problems)
    if problems:
        raise UserError("; ".join(problems), "fix the preset file")
    return Preset(name=name, path=path, gpu=str(match["gpu"]), min_memory_gib=float(match.get("min_memory_gib", 0)),
                  max_memory_gib=float(match.get("max_memory_gib", 1e9)), training=dict(training), card=card)


def _card(card, path: Path, problems: list[str]) -> GpuFacts | None:
    if card is None:
        return None
    try:
        major, minor = card["capability"]
        return GpuFacts(str(card["name"]), float(card["memory_gib"]), (int(major), int(minor)))
    except (KeyError, TypeError, ValueError):
        problems.append(f"{path}: card needs name, memory_gib and capability: [major, minor]")
        return None


def auto_preset(facts: HardwareFacts) -> Preset | None:
    """The preset that matches this machine, if any (a GPU without a preset keeps the config's values)."""
    for name in available_presets():
        preset = load_preset(name)
        if preset.matches(facts)[0]:
            return preset
    return None


def resolve_preset(requested: str, force: bool, facts: HardwareFacts) -> tuple[Preset | None, str]:
    """(preset or None, one-line reason). A named preset that does not fit the hardware is an error unless forced."""
    if requested == NO_PRESET:
        return None, "no preset (--preset none): the config's hardware values are used"
    if requested == AUTO:
        preset = auto_preset(facts)
        if preset is None:
            gpu = facts.gpus[0].name if facts.gpus else "CPU"
            return None, f"no preset for {gpu}: the config's hardware values are used (see configs/presets/)"
        return preset, f"preset {preset.name} (auto: {preset.matches(facts)[1]})"
    preset = load_preset(requested)
    fits, why = preset.matches(facts)
    if fits:
        return preset, f"preset {preset.name} ({why})"
    if not force:
        raise UserError(f"--preset {preset.name} does not match this machine: {why}",
                        f"use --preset auto, or --force-preset to use it anyway; `gpt2zh plan --preset "
                        f"{preset.name}` shows the plan on that GPU from any machine")
    return preset, f"preset {preset.name} forced although {why}"


def preset_layer(preset: Preset | None) -> tuple[str, dict] | None:
    """(source, mapping) to apply between the config file and the command line."""
    return None if preset is None else (str(preset.path), {"training": dict(preset.training)})
