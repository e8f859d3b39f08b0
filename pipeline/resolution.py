"""A command's settings, resolved once at the entry point (PITFALLS.md RS15): defaults < --config (or the
run's saved settings) < the GPU preset for this machine < the command line, with where each field came
from. `show-config` prints this, the stages receive it, and none of them reads YAML again.
"""

import copy
from dataclasses import dataclass, replace

from gpt2zh.config.loader import Adaptation, Layer, load_layers
from gpt2zh.config.schema import Config, all_keys
from gpt2zh.hardware.decisions import MINIMUM_VERSIONS
from gpt2zh.hardware.facts import HardwareFacts
from gpt2zh.hardware.presets import AUTO, NO_PRESET, Preset, load_preset, preset_layer, resolve_preset

DEFAULT = "the default"
COMMAND_LINE = "the command line"


@dataclass(frozen=True)
class Resolved:
    config: Config             # every layer
    settings: Config           # without the preset or adaptations: what the run directory saves (each machine
                               # picks its own preset; a later command adapts again)
    sources: dict[str, str]    # 'training.per_device_batch_size' -> 'preset cpu (configs/presets/cpu.yaml)'
    base: Layer | None
    preset: Preset | None
    preset_note: str           # which preset and why, in a line
    facts: HardwareFacts
    what_if: bool = False      # facts are a preset's card, not this machine's (`gpt2zh plan --preset`)
    notes: tuple[str, ...] = ()  # what loading adapted and the command says once (a warmup scaled to the run)

    def origin(self, dotted: str) -> str:
        """Who set a value; a preset's value names the config value it replaced."""
        source = self.sources.get(dotted, DEFAULT)
        if self.preset is None or not source.startswith("preset ") or self.base is None:
            return source
        group, field = dotted.split(".", 1)
        in_base = self.base[1].get(group) if isinstance(self.base[1].get(group), dict) else {}
        if field in in_base and in_base[field] != self.preset.training.get(field):
            replaced = str(in_base[field]).lower() if isinstance(in_base[field], bool) else in_base[field]
            return f"preset {self.preset.name}, which replaced {replaced} from {self.base[0]}"
        return f"preset {self.preset.name}"


def field_sources(base: Layer | None, preset: Preset | None, command_line: dict,
                  earlier: frozenset = frozenset()) -> dict[str, str]:
    """earlier: command-line keys an earlier command typed, saved in the run's settings (the base)."""
    sources = dict.fromkeys(all_keys(), DEFAULT)
    for group, values in (base[1] if base else {}).items():
        for field in values if isinstance(values, dict) else ():
            sources[f"{group}.{field}"] = base[0]
    for field in (preset.training if preset else {}):
        sources[f"training.{field}"] = f"preset {preset.name} ({preset.path.relative_to(preset.path.parents[2])})"
    for dotted in command_line:
        sources[dotted] = f"an earlier command line (saved in {base[0]})" if dotted in earlier and base \
            else COMMAND_LINE
    return sources


def what_if_facts(preset: Preset, facts: HardwareFacts, processes: int) -> HardwareFacts:
    """The preset's card on a machine set up with the gpu extra (flash-attn, bitsandbytes,
    Triton), whatever this machine has: `gpt2zh plan --preset a100-80g` on a laptop."""
    common = dict(python_version=facts.python_version, cpu_count=facts.cpu_count, torch_version=facts.torch_version,
                  cxx_compiler=True, world_size=processes, versions=facts.versions)
    if preset.card is None:
        return HardwareFacts(**common)
    return HardwareFacts(**common, cuda_available=True, gpus=(preset.card,) * processes,
                         flash_attn_version=MINIMUM_VERSIONS["flash-attn"], bitsandbytes_version="assumed",
                         triton_available=True)


def with_processes(facts: HardwareFacts, processes: int) -> HardwareFacts:
    """This machine launched with `processes` processes (torchrun), one GPU each."""
    return replace(facts, world_size=processes, gpus=facts.gpus[:1] * processes if facts.gpus else ())


def resolve(base: Layer | None, command_line: dict, facts: HardwareFacts, what_if: bool = False,
            processes: int | None = None, earlier: frozenset = frozenset()) -> Resolved:
    """training.preset is resolved against facts: a preset named for other hardware is refused unless forced
    or, with what_if (`gpt2zh plan`), planned on that preset's card instead of this machine."""
    adaptations: list[Adaptation] = []
    settings = load_layers(base, command_line, adaptations=adaptations)
    name = settings.training.preset
    if processes is not None:
        facts = with_processes(facts, processes)
    if what_if and name not in (AUTO, NO_PRESET) and not (preset := load_preset(name)).matches(facts)[0]:
        why = preset.matches(facts)[1]
        facts = what_if_facts(preset, facts, processes or 1)
        card = f"{preset.card.name}, {preset.card.memory_gib:g} GiB" if preset.card else "a CPU"
        preset_note = (f"preset {name}: planned for {card} instead of this machine ({why}), as if set up with "
                       "the gpu extra (`pip install flash-attn bitsandbytes`)")
        what_if = True
    else:
        preset, preset_note = resolve_preset(name, settings.training.force_preset, facts)
        what_if = False
    layer = preset_layer(preset)
    config = load_layers(base, command_line, layer) if layer else settings
    sources = field_sources(base, preset, command_line, earlier)
    return Resolved(config, as_configured(settings, adaptations), sources, base, preset, preset_note, facts, what_if,
                    tuple(adapted.note for adapted in adaptations))


def as_configured(settings: Config, adaptations: list[Adaptation]) -> Config:
    """What the run directory saves: the values the layers gave, not those adapted to this command; a warmup scaled
    to a 10-step look would otherwise stay with the run's later, longer runs (PITFALLS.md NU5)."""
    if not adaptations:
        return settings
    saved = copy.deepcopy(settings)
    for adapted in adaptations:
        group, field_name = adapted.key.split(".", 1)
        setattr(getattr(saved, group), field_name, adapted.original)
    return saved


def resolve_file(path, command_line: dict | None = None) -> Resolved:
    """A YAML file and typed overrides on this machine, as the command line resolves them (for scripts)."""
    from gpt2zh.config.loader import read_yaml_mapping
    from gpt2zh.hardware.facts import collect_facts

    return resolve((str(path), read_yaml_mapping(path)), command_line or {}, collect_facts())
