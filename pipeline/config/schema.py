"""The configuration groups: typed dataclasses with defaults and a one-line help per field.

Every field is reachable as `--<group>-<field>` on the command line (see options.py) and as
`<group>: {<field>: …}` in YAML (see loader.py). Defaults describe a GPT-2-small-sized run;
configs/demo.yaml shrinks them for a 2-core CPU.
"""

from dataclasses import dataclass, field, fields
from typing import Literal


def setting(default, help: str, *, only_for: tuple[str, ...] | None = None, in_fingerprint: bool = True,
            alias: str | None = None, once: bool = False):
    """A config field. only_for limits the stages whose reuse fingerprint includes the field;
    in_fingerprint=False leaves it out everywhere (hardware-only choices, or effects fingerprinted
    another way); alias is a short extra command-line flag (e.g. --preset); once = an instruction for
    one command (--resume never), never saved in the run's settings for the next one."""
    metadata = {"help": help, "only_for": only_for, "in_fingerprint": in_fingerprint, "alias": alias, "once": once}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """Corpus: which files, how they are decoded and cleaned, and the held-out split."""

    files: list[str] = setting(
        [], "corpus files, directories, globs or hf://datasets/<owner>/<name>[@<revision>]/<glob> "
            "(.txt, .jsonl, .json, .parquet; .gz/.bz2/.xz/.zst compressed too); empty = the embedded demo corpus",
        in_fingerprint=False)  # the resolved files (names, content digests or Hub blob ids) are fingerprinted
    text_field: str = setting("text", "field holding the text in .jsonl/.json records and .parquet columns")
    title_field: str = setting(
        "", "field holding a title in .jsonl/.json records and .parquet columns; it becomes the document's first "
            "line (not added again when the text already starts with that line)")
    document_boundary: Literal["auto", "line", "blank-line"] = setting(
        "auto", ".txt documents: line = one per line, blank-line = blank lines separate documents (their lines "
                "joined with \\n), auto = blank-line where blank lines separate groups of lines, else line")
    normalization: Literal["zh", "nfkc", "none"] = setting(
        "zh", "zh = NFKC but Chinese punctuation stays full-width (，。！？), nfkc = plain NFKC (，-> ,), none")
    chinese_script: Literal["keep", "simplified", "traditional"] = setting(
        "keep", "convert Chinese characters with OpenCC: simplified (t2s), traditional (s2t), or keep as written")
    min_chars: int = setting(0, "drop documents shorter than this many characters after cleaning")
    encoding: str = setting(
        "auto", "text encoding of .txt/.jsonl/.json files (decompressed): auto (UTF-8, else GB18030/Big5 detected) "
                "or a codec name")
    decode_errors: Literal["strict", "replace", "skip"] = setting(
        "strict", "undecodable bytes: strict = stop with file/line/offset, replace = U+FFFD, skip = drop the line")
    max_line_chars: int = setting(
        1_000_000, "longest document (a line, or a blank-line document), in characters; longer ones follow "
                   "long_lines")
    long_lines: Literal["split", "skip", "error"] = setting(
        "split", "documents over max_line_chars: split into pieces, skip (counted) or stop with an error")
    dedupe: bool = setting(False, "drop exact duplicate documents (keeps ~100 bytes per distinct document in memory)")
    validation_fraction: float = setting(
        0.01, "share of documents held out for validation, chosen by a hash of the text (deterministic)")
    block_size: int = setting(1024, "tokens per training block (<= model.n_positions)", only_for=("dataset",))
    map_batch_size: int = setting(
        2000, "documents tokenized per batch inside a worker (PITFALLS.md G10: bounded, not 5000+)",
        in_fingerprint=False)
    num_proc: int = setting(0, "tokenizer worker processes; 0 = min(8, CPU count)", in_fingerprint=False)
    num_shards: int = setting(
        1, "split stage 2 across this many machines/jobs, each building one shard", only_for=("dataset",))
    shard_index: int = setting(0, "which shard this job builds, 0 .. num_shards-1", only_for=("dataset",))


@dataclass
class TokenizerConfig:
    """Stage 1: SentencePiece training (G9) and conversion to a Hugging Face fast tokenizer."""

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
    allow_lossy: bool = setting(
        False, "adopt the base model's tokenizer (model.init_from) even when it reads more than 0.1% of the corpus's "
               "characters as its unknown token (lost to the model; PITFALLS.md NU11)", in_fingerprint=False)


@dataclass
class ModelConfig:
    """GPT-2 architecture (vocabulary size and special-token ids come from the tokenizer)."""

    init_from: str = setting(
        "", "start from an existing GPT-2 instead of random weights: a folder (a run's model/, any GPT-2 with "
            "its tokenizer) or a Hub model id <owner>/<name>[@<revision>]; stage 1 adopts its tokenizer, the sizes "
            "below come from its config.json, stage 3 loads its weights. Not a resume: a run's own checkpoints "
            "still come first (PITFALLS.md BM1)",
        in_fingerprint=False)  # its identity (Hub commit, or the folder's file hashes) is fingerprinted instead
    n_layer: int = setting(12, "transformer blocks")
    n_head: int = setting(12, "attention heads per block")
    n_embd: int = setting(768, "hidden size")
    n_positions: int = setting(1024, "longest sequence the model accepts (must be >= the block size)")
    dropout: float = setting(0.0, "dropout on embeddings, attention and residuals (0 is usual for pretraining)")
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = setting(
        "auto", "attention kernel; auto = FlashAttention-2 where installed, SM >= 8.0 and fp16/bf16, else SDPA",
        in_fingerprint=False)


@dataclass
class TrainingConfig:
    """Stage 3: the pretraining run. Hardware-specific fields are what GPU presets set."""

    max_steps: int = setting(20_000, "optimizer steps to train; raising it on a run with checkpoints trains on from "
                                     "the last one (the learning-rate schedule is re-planned, PITFALLS.md RA2)")
    global_batch_size: int = setting(
        480, "sequences per optimizer step over all devices: per-device batch x accumulation x processes")
    per_device_batch_size: int = setting(
        8, "most sequences per device per forward pass (presets set this); the plan takes the largest that "
           "divides the global batch and fits the GPU's memory", in_fingerprint=False)
    preset: str = setting("auto", "hardware preset from configs/presets/ (auto = detect, none = no preset)",
                          in_fingerprint=False, alias="--preset")
    force_preset: bool = setting(False, "use the preset even if it does not match the detected hardware",
                                 in_fingerprint=False, alias="--force-preset", once=True)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting(
        "auto", "auto = bf16 on SM >= 8.0, fp16 with loss scaling on older GPUs, fp32 on CPU")
    tf32: bool = setting(True, "TF32 matmuls where the GPU supports them (SM >= 8.0)", in_fingerprint=False)
    torch_compile: bool = setting(False, "compile the model with torch.compile", in_fingerprint=False)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = setting(
        "default", "torch.compile mode", in_fingerprint=False)
    activation_checkpointing: bool = setting(
        False, "recompute activations in the backward pass to save memory (off when compiling)", in_fingerprint=False)
    chunked_loss: bool = setting(
        True, "compute the LM head and loss in chunks of tokens, never holding every token's logits (the same loss "
              "and gradients in less memory: larger per-device batches); false = transformers' own loss",
        in_fingerprint=False)
    gpu_memory_fraction: float = setting(
        0.9, "share of the GPU's memory the per-device batch may fill by the memory model's estimate (the rest "
             "covers the CUDA context and fragmentation); raise it only after the measured peak (training "
             "summary) showed room", in_fingerprint=False)
    dataloader_workers: int = setting(-1, "DataLoader worker processes; -1 = min(8, CPU count)", in_fingerprint=False)
    report_to: list[str] = setting(
        ["tensorboard"], "experiment trackers, the Trainer's integrations: tensorboard (into <run-dir>/logs/"
                         "tensorboard), swanlab, wandb, mlflow, comet_ml, clearml, neptune, dvclive, trackio, ...; "
                         "the run directory's name is the run name; none = no tracker", in_fingerprint=False)
    logging_steps: int = setting(10, "log loss, learning rate, grad norm and tokens/s every N steps",
                                 in_fingerprint=False)
    eval_steps: int = setting(500, "evaluate, plot and sample every N steps", in_fingerprint=False)
    eval_max_blocks: int = setting(0, "validation blocks per evaluation; 0 = all", in_fingerprint=False)
    max_nonfinite_steps: int = setting(
        10, "stop after this many consecutive steps with a non-finite loss or gradient (each is skipped)",
        in_fingerprint=False)
    seed: int = setting(42, "seed of python, numpy, torch and the data order")
    full_determinism: bool = setting(False, "deterministic kernels everywhere (slower; for debugging)")
    sample_prompts: list[str] = setting(
        [], "prompts sampled into logs/samples.md at each evaluation; empty = the openings of the first 4 "
            "held-out (validation) documents, so the prompts come from this run's own corpus",
        in_fingerprint=False)
    sample_max_new_tokens: int = setting(48, "tokens generated per sample prompt; 0 = no samples",
                                         in_fingerprint=False)


@dataclass
class OptimizationConfig:
    """Optimizer and learning-rate schedule: linear warmup, then cosine, wsd or constant."""

    optimizer: Literal["adamw", "adamw_8bit"] = setting(
        "adamw", "adamw (fused where supported) or adamw_8bit (bitsandbytes, probed for real, else adamw)")
    learning_rate: float = setting(6e-4, "peak learning rate")
    lr_schedule: Literal["cosine", "wsd", "constant"] = setting(
        "cosine", "after warmup: cosine decay to min_lr_ratio; wsd = stable at the peak, then a linear decay over "
                  "the last decay_ratio of the steps (a larger max_steps before the decay only moves it later); "
                  "constant")
    min_lr_ratio: float = setting(0.1, "final learning rate as a share of the peak")
    decay_ratio: float = setting(0.2, "wsd: the share of max_steps spent decaying to min_lr_ratio")
    warmup_steps: int = setting(200, "linear warmup steps")
    weight_decay: float = setting(0.1, "AdamW weight decay")
    adam_beta1: float = setting(0.9, "AdamW beta1")
    adam_beta2: float = setting(0.95, "AdamW beta2")
    max_grad_norm: float = setting(1.0, "gradient clipping norm (0 = off)")


@dataclass
class CheckpointConfig:
    """Checkpoints under <run-dir>/checkpoints/ and how a run resumes from them."""

    save_steps: int = setting(1000, "save a checkpoint every N optimizer steps", in_fingerprint=False)
    save_total_limit: int = setting(3, "checkpoints kept on disk (oldest deleted first)", in_fingerprint=False)
    resume: str = setting(
        "auto", "auto = newest complete checkpoint, local or (with hub.push_checkpoints) the Hub repository's "
                "last-checkpoint/, fresh start if none; hub = a local checkpoint first, else the Hub's, which must "
                "exist; never = start over; or a checkpoint path",
        in_fingerprint=False, alias="--resume", once=True)


@dataclass
class HubConfig:
    """Stage 4 and checkpoint pushing: the Hugging Face Hub or ModelScope. The token comes from HF_TOKEN or
    `hf auth login` (MODELSCOPE_API_TOKEN or `modelscope login` for ModelScope), never from config."""

    repo_id: str = setting("", "model repository, e.g. user/gpt2-zh-demo; empty = do not push")
    provider: Literal["huggingface", "modelscope"] = setting(
        "huggingface", "where --hub-repo-id lives: the push, --hub-push-checkpoints and resuming from them on a new "
                       "machine (modelscope: token from MODELSCOPE_API_TOKEN)", in_fingerprint=False)
    private: bool = setting(False, "create the repository as private")
    license: str = setting(
        "", "licence id for the model card (apache-2.0, mit, cc-by-4.0, ...); empty = the card says none was stated: "
            "the weights carry the terms of the corpus they learned from, which only you know (PITFALLS.md NU6)")
    dataset_description: str = setting(
        "", "what the corpus is (source, licence, how it was collected), written as is into the model card's "
            "Training data section above the file list", in_fingerprint=False)
    max_retries: int = setting(4, "retries of an upload after a 5xx or a dropped connection", in_fingerprint=False)
    retry_wait_seconds: float = setting(2.0, "first wait before a retry; doubles each time", in_fingerprint=False)
    push_checkpoints: bool = setting(
        False, "also push each complete checkpoint during training to the repository's last-checkpoint/ (with the "
               "tokenizer), so another machine can resume the run (--resume auto looks there)",
        in_fingerprint=False)


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
