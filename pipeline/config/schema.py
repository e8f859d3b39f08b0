"""The configuration groups: typed dataclasses with defaults and a one-line help per field.

Every field is reachable as `--<group>-<field>` on the command line (see options.py) and as
`<group>: {<field>: …}` in YAML (see loader.py). Defaults describe a GPT-2-small-sized run;
configs/demo.yaml shrinks them for a 2-core CPU.
"""

from dataclasses import dataclass, field, fields
from typing import Literal


def setting(default, help: str, *, only_for: tuple[str, ...] | None = None, in_fingerprint: bool = True):
    """A config field. only_for limits the stages whose reuse fingerprint includes the field;
    in_fingerprint=False leaves it out everywhere (its effect is fingerprinted another way)."""
    metadata = {"help": help, "only_for": only_for, "in_fingerprint": in_fingerprint}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """Corpus: which files, how they are decoded and cleaned, and the held-out split."""

    files: list[str] = setting(
        [], "corpus files, directories or globs (.txt = one document per line, .jsonl, .parquet); "
            "empty = the embedded demo corpus",
        in_fingerprint=False)  # the resolved files (paths, sizes, mtimes) are fingerprinted instead
    text_field: str = setting("text", "field holding the text in .jsonl records and .parquet columns")
    encoding: str = setting(
        "auto", "text encoding of .txt/.jsonl files: auto (UTF-8, else GB18030/Big5 detected) or a codec name")
    decode_errors: Literal["strict", "replace", "skip"] = setting(
        "strict", "undecodable bytes: strict = stop with file/line/offset, replace = U+FFFD, skip = drop the line")
    max_line_chars: int = setting(1_000_000, "longest document line accepted, in characters")
    long_lines: Literal["split", "skip", "error"] = setting(
        "split", "lines over max_line_chars: split into pieces, skip (counted) or stop with an error")
    dedupe: bool = setting(False, "drop exact duplicate documents (keeps ~100 bytes per distinct document in memory)")
    validation_fraction: float = setting(
        0.01, "share of documents held out for validation, chosen by a hash of the text (deterministic)")
    block_size: int = setting(1024, "tokens per training block (<= model.n_positions)", only_for=("dataset",))
    map_batch_size: int = setting(
        2000, "documents tokenized per batch inside a worker (seed 002 §10: bounded, not 5000+)", in_fingerprint=False)
    num_proc: int = setting(0, "tokenizer worker processes; 0 = min(8, CPU count)", in_fingerprint=False)
    num_shards: int = setting(
        1, "split stage 2 across this many machines/jobs, each building one shard", only_for=("dataset",))
    shard_index: int = setting(0, "which shard this job builds, 0 .. num_shards-1", only_for=("dataset",))


@dataclass
class TokenizerConfig:
    """Stage 1: SentencePiece training (seed 002 §9) and conversion to a Hugging Face fast tokenizer."""

    model_type: Literal["bpe", "unigram"] = setting("bpe", "SentencePiece algorithm")
    vocab_size: int = setting(32000, "vocabulary size, special and byte-fallback tokens included")
    character_coverage: float = setting(0.9995, "share of characters covered by single-character pieces")
    byte_fallback: bool = setting(True, "encode unseen characters as UTF-8 bytes instead of <unk>")
    split_digits: bool = setting(True, "split numbers into single digits")
    input_sentence_size: int = setting(200_000, "sentences sampled for training (bounded sampling)")
    shuffle_input_sentence: bool = setting(True, "shuffle before sampling input_sentence_size sentences")
    num_threads: int = setting(0, "training threads; 0 = all CPU cores")
    max_sentence_bytes: int = setting(4192, "longer sentences are split into pieces of at most this many bytes")
    read_factor: float = setting(
        2.0, "stop reading the corpus once it yielded this many times input_sentence_size sentences "
             "(read in random 1 MiB blocks, so time stays bounded on huge corpora)")
    seed: int = setting(1234, "seed of the block order and the sentence sample")
    verify_lines: int = setting(2000, "lines compared between SentencePiece and the converted HF tokenizer")


@dataclass
class ModelConfig:
    """GPT-2 architecture."""

    n_layer: int = setting(12, "transformer blocks")
    n_head: int = setting(12, "attention heads per block")
    n_embd: int = setting(768, "hidden size")
    n_positions: int = setting(1024, "longest sequence the model accepts (must be >= the block size)")


@dataclass
class TrainingConfig:
    """Stage 3: the pretraining run."""

    max_steps: int = setting(20_000, "optimizer steps to train")
    seed: int = setting(42, "seed of python, numpy and torch generators")


@dataclass
class OptimizationConfig:
    """Optimizer and learning-rate schedule."""

    learning_rate: float = setting(6e-4, "peak learning rate")
    weight_decay: float = setting(0.1, "AdamW weight decay")
    max_grad_norm: float = setting(1.0, "gradient clipping norm")


@dataclass
class CheckpointConfig:
    """Checkpoints under <run-dir>/checkpoints/."""

    save_steps: int = setting(1000, "save a checkpoint every N optimizer steps")
    save_total_limit: int = setting(3, "checkpoints kept on disk (oldest deleted first)")


@dataclass
class HubConfig:
    """Stage 4: upload to the Hugging Face Hub. The token comes from HF_TOKEN or `hf auth login`, never from config."""

    repo_id: str = setting("", "model repository, e.g. user/gpt2-zh-demo; empty = do not push")
    private: bool = setting(False, "create the repository as private")
    license: str = setting("mit", "license written into the model card")


GROUPS: dict[str, type] = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "optimization": OptimizationConfig,
    "checkpoint": CheckpointConfig,
    "hub": HubConfig,
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    hub: HubConfig = field(default_factory=HubConfig)


def all_keys() -> list[str]:
    """Every valid dotted key, e.g. 'tokenizer.vocab_size'."""
    return [f"{group}.{f.name}" for group, cls in GROUPS.items() for f in fields(cls)]
