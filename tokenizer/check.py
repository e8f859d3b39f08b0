"""Stage 1's check, made before the command's first stage runs (pipeline/preflight.py): a finished tokenizer
that this command's corpus or settings would replace is refused now, and whether it is kept is said to the
checks after it (stage 3 plans for its vocabulary)."""

from dataclasses import dataclass

from gpt2zh.fingerprints import recorded_base_model, tokenizer_inputs
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.rundir import fingerprint, refuse_replacing
from gpt2zh.stages import Command


@dataclass(frozen=True)
class TokenizerCheck:
    kept: TokenizerManifest | None  # the tokenizer on disk when stage 1 will keep it (up to date, not forced)


def check_tokenizer(command: Command) -> TokenizerCheck:
    request, config = command.request, command.request.config
    sources = command.sources
    folder = request.run_dir.tokenizer
    tokenizer = TokenizerManifest.read(folder)
    inputs = tokenizer_inputs(config, sources, recorded_base_model(config, tokenizer))
    if tokenizer is None:
        return TokenizerCheck(None)
    if not command.replaces:
        refuse_replacing(folder, tokenizer, inputs)
    up_to_date = not command.forced["train-tokenizer"] and tokenizer.fingerprint == fingerprint(inputs)
    return TokenizerCheck(tokenizer if up_to_date else None)
