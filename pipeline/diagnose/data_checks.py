"""Checks on stage 2's blocks: ids, lengths, separators, byte fallback (and the characters that cause it),
duplicates, train/validation overlap.

Large datasets are sampled (a fixed, seeded sample), so the checks take seconds on any size.
"""

from dataclasses import dataclass

import numpy as np

from gpt2zh.diagnose.findings import FAIL, OK, WARN, Finding
from gpt2zh.tokenizer.quality import byte_fallback_characters, byte_values, describe_characters

SAMPLE_BLOCKS = 20_000
OVERLAP_WINDOW = 32  # tokens: a validation span this long found verbatim in training counts as overlap
# Byte fallback (PITFALLS.md NU2): the demo's 4,000 pieces at coverage 0.995 leave 1.6 % of tokens to bytes;
# coverage 0.9995 spells the rarest 0.05 % of characters in bytes (3 each: ~0.2 % of tokens); above 5 %,
# one token in twenty is a raw byte of a character the vocabulary lacks. Line breaks and tabs are pieces of
# their own since stage 1's text format 2 (NU1): spelled in bytes they are a tokenizer of the older format,
# worth retraining at any vocabulary (the demo text in 4-paragraph documents: 1.1 % of tokens).
BYTE_FALLBACK_WARN, BYTE_FALLBACK_FAIL = 0.05, 0.25
WHITESPACE_IN_BYTES_WARN = 0.01
LEARNED_WHITESPACE = "\n\t"


@dataclass
class Blocks:
    train: np.ndarray        # (n, block) sampled training blocks
    validation: np.ndarray   # (m, block) validation blocks (sampled when huge)
    train_total: int
    validation_total: int
    block_size: int          # what the dataset manifest says


def _sample(dataset, limit: int, seed: int) -> np.ndarray:
    count = len(dataset)
    indices = np.arange(count) if count <= limit else np.sort(np.random.default_rng(seed).choice(count, limit, False))
    rows = dataset.with_format("numpy")[indices]["input_ids"]
    array = np.asarray(rows)
    if array.dtype == object:  # ragged: lengths differ, keep them visible to the length check
        return np.array([np.asarray(row) for row in rows], dtype=object)
    return array


def load_sample(dataset_dir, block_size: int) -> Blocks:
    from gpt2zh.dataset.loading import load_blocks

    blocks = load_blocks(dataset_dir)
    return Blocks(train=_sample(blocks["train"], SAMPLE_BLOCKS, 0),
                  validation=_sample(blocks["validation"], SAMPLE_BLOCKS, 1),
                  train_total=len(blocks["train"]), validation_total=len(blocks["validation"]), block_size=block_size)


def _sampled(blocks: Blocks) -> str:
    return (f"{len(blocks.train):,} of {blocks.train_total:,} training blocks" if len(blocks.train) < blocks.train_total
            else f"all {blocks.train_total:,} training blocks")


def check_ids(blocks: Blocks, vocab_size: int) -> Finding:
    highest = max(int(np.max(part)) if len(part) else -1 for part in (blocks.train, blocks.validation))
    lowest = min(int(np.min(part)) if len(part) else 0 for part in (blocks.train, blocks.validation))
    if highest >= vocab_size or lowest < 0:
        return Finding("data", FAIL, "token ids outside the vocabulary",
                       f"ids range {lowest}..{highest}, vocabulary {vocab_size:,} ({_sampled(blocks)})",
                       "rebuild the dataset with this run's tokenizer: `gpt2zh tokenize --force`", "D1")
    return Finding("data", OK, "token ids inside the vocabulary",
                   f"ids {lowest}..{highest} < {vocab_size:,} ({_sampled(blocks)} + validation)")


def check_lengths(blocks: Blocks) -> Finding:
    lengths = {len(row) for part in (blocks.train, blocks.validation) for row in part}
    if lengths != {blocks.block_size}:
        return Finding("data", FAIL, "blocks of the wrong length",
                       f"lengths {sorted(lengths)[:5]}, expected {blocks.block_size}",
                       "rebuild the dataset: `gpt2zh tokenize --force`", "D2")
    return Finding("data", OK, "every block is full", f"{blocks.block_size} tokens each, no padding")


def check_separators(blocks: Blocks, eos_id: int, separator: str = "<|endoftext|>") -> Finding:
    tokens = blocks.train.size
    share = float(np.count_nonzero(blocks.train == eos_id)) / tokens if tokens else 0.0
    per_document = f" (~{1 / share:,.0f} tokens per document)" if share else ""
    evidence = f"{separator} is {share:.2%} of tokens{per_document}"
    if share == 0:
        return Finding("data", FAIL, f"no {separator} between documents", evidence,
                       "documents run into each other: rebuild with this pipeline's `gpt2zh tokenize`", "D3")
    if share > 0.2:
        return Finding("data", WARN, "documents are very short", evidence,
                       "check the corpus format: .txt is one document per line; many tiny lines mean split "
                       "documents (join them) or noise", "D3")
    return Finding("data", OK, f"documents separated by {separator}", evidence)


def check_unknown(blocks: Blocks, unk_id: int, unk: str) -> Finding:
    """A vocabulary without byte fallback (a base model's, PITFALLS.md BM3) turns unseen characters into unk."""
    tokens = blocks.train.size
    share = float(np.count_nonzero(blocks.train == unk_id)) / tokens if tokens else 0.0
    evidence = f"{share:.3%} of tokens are {unk}"
    if share > 0.01:
        return Finding("data", WARN, f"characters the vocabulary lacks are {unk}", evidence,
                       "the model can neither read nor write them: start from a model whose vocabulary covers the "
                       "corpus, or train a tokenizer on it (a model from scratch)", "D3")
    return Finding("data", OK, f"{unk} is rare", evidence)


def check_byte_fallback(blocks: Blocks, values: np.ndarray) -> Finding:
    """values: per id, the byte a byte-fallback piece stands for, -1 for other pieces (tokenizer/quality.py)."""
    tokens = blocks.train.size
    share = float(np.count_nonzero(values[blocks.train] >= 0)) / tokens if tokens else 0.0
    characters = byte_fallback_characters(blocks.train, values)
    evidence = f"{share:.2%} of tokens are byte-fallback pieces (<0x..>)"
    if characters:
        evidence += f"; most often {describe_characters(dict(characters.most_common(5)))}"
    whitespace = sum(characters[char] for char in LEARNED_WHITESPACE) / tokens if tokens else 0.0  # 1 byte each
    retrain = (f"{whitespace:.2%} of tokens are line breaks or tabs spelled in bytes by a tokenizer of the older "
               "format, which learnt from lines: retrain it (`gpt2zh run --from-stage train-tokenizer --force`, which "
               "rebuilds the dataset and model from it) to give them pieces")
    status = FAIL if share >= BYTE_FALLBACK_FAIL else WARN
    if share - whitespace > BYTE_FALLBACK_WARN:
        fix = ("the vocabulary misses characters the corpus uses often (named in the evidence): raise "
               "--tokenizer-vocab-size or --tokenizer-character-coverage, retrain the tokenizer")
        return Finding("data", status, "many characters fall back to bytes", evidence,
                       fix + (f"; {retrain}" if whitespace > WHITESPACE_IN_BYTES_WARN else ""), "D3")
    if whitespace > WHITESPACE_IN_BYTES_WARN:
        return Finding("data", status, "line breaks fall back to bytes", evidence, retrain, "NU2")
    return Finding("data", OK, "byte fallback is rare", evidence)


def _row_keys(array: np.ndarray) -> np.ndarray:
    contiguous = np.ascontiguousarray(array)
    return contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * contiguous.shape[1]))).ravel()


def check_duplicates(blocks: Blocks) -> Finding:
    keys = _row_keys(blocks.train)
    duplicates = len(keys) - len(np.unique(keys))
    share = duplicates / len(keys) if len(keys) else 0.0
    evidence = f"{duplicates:,} duplicate blocks in {_sampled(blocks)} ({share:.2%})"
    if share > 0.01:
        return Finding("data", WARN, "repeated blocks in the training data", evidence,
                       "turn on --data-dedupe (exact duplicate documents) or clean the corpus", "D4")
    return Finding("data", OK, "training blocks are distinct", evidence)


def _window_hashes(array: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Polynomial hashes (mod 2^64) of every `window`-token span starting at multiples of `stride`."""
    ids = array.astype(np.uint64)
    count = array.shape[1] - window + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    starts = np.arange(0, count, stride)
    powers = np.uint64(1_000_003) ** np.arange(window, dtype=np.uint64)
    hashes = np.zeros((array.shape[0], len(starts)), np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(window):
            hashes += ids[:, starts + offset] * powers[offset]
    return hashes.ravel()


def check_overlap(blocks: Blocks) -> Finding:
    if not len(blocks.validation) or not len(blocks.train):
        return Finding("data", WARN, "no validation split", "validation has 0 blocks",
                       "set --data-validation-fraction above 0 so the loss is measured on held-out text", "D5")
    exact = np.isin(_row_keys(blocks.validation), _row_keys(blocks.train)).sum()
    window = min(OVERLAP_WINDOW, blocks.train.shape[1])
    train_spans = _window_hashes(blocks.train, window, 1)
    validation_spans = _window_hashes(blocks.validation, window, window)
    shared = float(np.isin(validation_spans, train_spans).mean()) if validation_spans.size else 0.0
    evidence = (f"{exact:,} of {len(blocks.validation):,} validation blocks also in training; {shared:.1%} of "
                f"{window}-token validation spans occur verbatim in {_sampled(blocks)}")
    if exact or shared > 0.05:
        return Finding("data", WARN, "validation text also appears in training", evidence,
                       "the validation loss is optimistic: remove duplicates (--data-dedupe) or boilerplate, "
                       "and keep the held-out split by document", "D5")
    return Finding("data", OK, "validation is held out", evidence)


def data_findings(blocks: Blocks, vocab_size: int, ids: dict, pieces: list[str]) -> list[Finding]:
    """ids: the tokenizer manifest's special_token_ids; pieces: the vocabulary, by id."""
    findings = [check_ids(blocks, vocab_size), check_lengths(blocks)]
    if findings[1].status != OK:
        return findings
    values = byte_values(pieces)
    findings.append(check_separators(blocks, ids["eos"], pieces[ids["eos"]]))
    if (values >= 0).any():  # this pipeline's SentencePiece tokenizers
        findings.append(check_byte_fallback(blocks, values))
    elif ids.get("unk") is not None and ids["unk"] != ids["eos"]:  # GPT-2's BPE names <|endoftext|> its unk
        findings.append(check_unknown(blocks, ids["unk"], pieces[ids["unk"]]))
    return findings + [check_duplicates(blocks), check_overlap(blocks)]
