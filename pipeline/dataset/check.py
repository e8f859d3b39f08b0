"""Stage 2's check, made before the command's first stage runs (pipeline/preflight.py): the tokenizer it would
read, a finished dataset it would replace, and, when it rebuilds from the corpus, whether the corpus can fill
the blocks of its held-out split (estimated from the file sizes: nothing is read yet).
"""

import logging
import math
from dataclasses import dataclass

from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus.sources import Source, text_bytes
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import dataset_inputs, expected_tokenizer_fingerprint
from gpt2zh.manifests import DatasetManifest, TokenizerManifest
from gpt2zh.report import human_bytes
from gpt2zh.rundir import fingerprint, refuse_replacing
from gpt2zh.stages import Command

log = logging.getLogger("gpt2zh")
# An upper bound on tokens per corpus byte: UTF-8 Chinese has 3 bytes a character and a tokenizer rarely
# gives fewer than 1.3 characters a token (the demo corpus measures 6.7 bytes a token). Erring high means
# a corpus is refused only when its split surely comes out empty.
BYTES_PER_TOKEN = 4.0
# A base model's tokenizer (`--model-init-from`) may cut Chinese finer: GPT-2's byte-level BPE gives about two
# bytes a token, and no tokenizer gives fewer than one.
ADOPTED_BYTES_PER_TOKEN = 1.0
SMALL_VALIDATION_BLOCKS = 10  # below this the validation loss moves by noise as much as by learning


@dataclass(frozen=True)
class DatasetCheck:
    rebuilt: bool  # stage 2 builds its dataset in this command (forced, missing or made from other inputs)


def estimated_tokens(sources: list[Source], adopted_tokenizer: bool) -> float | None:
    """At most this many tokens; None where file sizes say little about the text (compressed files, parquet).
    adopted_tokenizer: stage 1 adopts a base model's tokenizer, which may give more tokens a byte than ours."""
    size = text_bytes(sources)
    return None if size is None else size / (ADOPTED_BYTES_PER_TOKEN if adopted_tokenizer else BYTES_PER_TOKEN)


def check_split_sizes(sources: list[Source], data: DataConfig, adopted_tokenizer: bool = False) -> None:
    """Refuse a corpus whose held-out (or training) split cannot fill one block; warn when it fills only a few.
    adopted_tokenizer: stage 1 adopts a base model's tokenizer, which may give more tokens a byte than ours."""
    tokens = estimated_tokens(sources, adopted_tokenizer)
    if tokens is None:
        return
    size = human_bytes(sum(source.size for source in sources))
    if tokens * (1 - data.validation_fraction) < data.block_size:
        raise UserError(f"the corpus ({size}, at most about {tokens:,.0f} tokens) cannot fill one training block of "
                        f"{data.block_size} tokens", "add text or use a smaller --data-block-size")
    if data.validation_fraction == 0:
        return
    held_out = tokens * data.validation_fraction
    blocks = held_out / data.block_size
    needed = min(0.5, math.ceil(100 * SMALL_VALIDATION_BLOCKS * data.block_size / tokens) / 100)
    raise_to = (f"use --data-validation-fraction {needed:g} (about {SMALL_VALIDATION_BLOCKS} blocks)"
                if needed * tokens / data.block_size >= 1 else "add text")
    what = (f"the corpus ({size}, at most about {tokens:,.0f} tokens) gives about {held_out:,.0f} held-out tokens at "
            f"--data-validation-fraction {data.validation_fraction:g}")
    if blocks < 1:
        raise UserError(f"{what}, less than one block of {data.block_size}: stage 2 would stop with an empty "
                        "validation split", f"{raise_to}, or a smaller --data-block-size")
    if blocks < SMALL_VALIDATION_BLOCKS:
        log.warning("%s, about %d block(s) of %d: the validation loss will be noisy; %s or a smaller "
                    "--data-block-size", what, int(blocks), data.block_size, raise_to)


def check_dataset(command: Command) -> DatasetCheck:
    """Refuses what stage 2 would refuse; its split sizes are judged here unless stage 3 runs too, whose check
    judges them together with its own need of training blocks (one refusal for both)."""
    from gpt2zh.dataset.stage import checked_tokenizer, output_folder

    request, config = command.request, command.request.config
    sources, run = command.sources, request.run_dir
    if not command.runs("train-tokenizer"):
        checked_tokenizer(run.tokenizer, config, sources)
    tokenizer = TokenizerManifest.read(run.tokenizer)
    if tokenizer is not None and tokenizer.fingerprint != expected_tokenizer_fingerprint(config, sources, tokenizer):
        tokenizer = None  # rebuilt by this command
    folder = output_folder(run.dataset, config.data)
    dataset = DatasetManifest.read(folder)
    parts = dataset_inputs(config, sources, tokenizer)
    if dataset is not None and not command.replaces:
        refuse_replacing(folder, dataset, parts)
    rebuilt = command.forced["tokenize"] or dataset is None or dataset.fingerprint != fingerprint(parts)
    if rebuilt and not command.runs("pretrain"):
        check_split_sizes(sources, config.data, adopted_tokenizer=bool(config.model.init_from))
    return DatasetCheck(rebuilt)
