"""With `--model-init-from`, the model's sizes are the base model's: its weights have those shapes.

Applied to the resolved config at the entry point, so `show-config`, `gpt2zh plan` and the memory plan
before stage 1 see the sizes stage 3 will train. A size typed on the command line that differs is refused
in one line naming both; one from a config file (configs/demo.yaml sets a small model) gives way, and
`show-config --sources` says so. Dropout stays this run's choice.
"""

import copy
from dataclasses import replace
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.fingerprints import recorded_base_model
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.models.architecture import gpt2_fields
from gpt2zh.models.source import fetch_model, read_config
from gpt2zh.resolution import COMMAND_LINE, Resolved
from gpt2zh.rundir import RunDir

FLAG = "--model-init-from"
SIZES = ("n_layer", "n_head", "n_embd", "n_positions")


def typed_on_a_command_line(origin: str) -> bool:
    return origin == COMMAND_LINE or origin.startswith("an earlier command line")


def with_base_sizes(resolved: Resolved, run_dir: Path) -> Resolved:
    """resolved with the model's sizes and vocabulary from the base model's config.json: of the commit stage 1
    pinned for run_dir when there is one (read from the HF cache), else as the reference names it."""
    reference = resolved.config.model.init_from
    manifest = TokenizerManifest.read(RunDir(run_dir).tokenizer)
    recorded = recorded_base_model(resolved.config, manifest) or {}
    try:
        source = fetch_model(reference, FLAG, commit=recorded.get("commit"), weights=False)
        base, who = gpt2_fields(read_config(source, FLAG)), f"the base model {source.label}"
    except UserError:
        if not recorded or manifest.base_sizes is None:
            raise
        # a folder moved or deleted after stage 1: show-config, evaluate and diagnose still work on the run
        base, who = manifest.base_sizes, f"the base model {manifest.base_model['label']} (as stage 1 read it)"
    config, sources = copy.deepcopy(resolved.config), dict(resolved.sources)
    for field in SIZES:
        dotted, value = f"model.{field}", base[field]
        asked = getattr(config.model, field)
        if asked != value and typed_on_a_command_line(resolved.origin(dotted)):
            flag = f"--model-{field.replace('_', '-')}"
            raise UserError(f"{flag} {asked} conflicts with {FLAG} {reference}: its config.json has {field} {value}",
                            f"drop {flag}: the sizes of a model you start from are its own")
        setattr(config.model, field, value)
        sources[dotted] = who
    if config.data.block_size > config.model.n_positions:
        raise UserError(f"data.block_size {config.data.block_size} ({resolved.origin('data.block_size')}) is longer "
                        f"than the context of {FLAG} {reference}: n_positions {config.model.n_positions}",
                        f"pass --data-block-size {config.model.n_positions} or less")
    asked = config.tokenizer.vocab_size
    if asked != base["vocab_size"] and typed_on_a_command_line(resolved.origin("tokenizer.vocab_size")):
        raise UserError(f"--tokenizer-vocab-size {asked} conflicts with {FLAG} {reference}: its tokenizer and "
                        f"embeddings have {base['vocab_size']} entries", "drop --tokenizer-vocab-size: a model you "
                        "start from keeps its tokenizer (PITFALLS.md BM2)")
    config.tokenizer.vocab_size = base["vocab_size"]
    sources["tokenizer.vocab_size"] = who
    return replace(resolved, config=config, sources=sources)
