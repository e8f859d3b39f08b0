"""Tokenizer figures on held-out documents: characters per token, byte-fallback share and the characters
that cause it, <unk> count.

The documents are encoded as stage 2 encodes them (tokenizer/encoding.py: whole documents, line breaks
included, PITFALLS.md NU1), so the figures are the dataset's. `gpt2zh diagnose` names the byte-fallback
characters of the dataset's blocks with the same function (PITFALLS.md NU2).
"""

import itertools
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gpt2zh.tokenizer.encoding import document_encoder
from gpt2zh.tokenizer.specials import END_OF_TEXT_ID

BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
NAMED_CHARACTERS = 10  # kept in stats.json; the summary line shows the first few


@dataclass
class TokenizerQuality:
    documents: int
    characters: int
    tokens: int
    chars_per_token: float
    byte_fallback_rate: float  # share of tokens that are raw UTF-8 bytes (rare characters)
    unk_tokens: int
    held_out: bool  # False when the corpus had no held-out documents and training documents were used
    byte_fallback_characters: dict[str, int]  # the most frequent characters spelled in bytes, with their counts

    def as_dict(self) -> dict:
        return asdict(self)


def byte_values(pieces: list[str]) -> np.ndarray:
    """Per id, the byte a byte-fallback piece (<0xE4>) stands for, -1 for every other piece."""
    values = np.full(len(pieces), -1, np.int16)
    for index, piece in enumerate(pieces):
        if match := BYTE_PIECE.fullmatch(piece):
            values[index] = int(match.group(1), 16)
    return values


def byte_fallback_characters(ids: np.ndarray, values: np.ndarray) -> Counter:
    """The characters spelled in byte pieces, counted: each run of byte pieces decoded as UTF-8. `ids` is
    one sequence or rows of them (blocks); a run never continues into the next row, and an incomplete
    character where a block cuts a run is left out."""
    rows = values[np.atleast_2d(ids)]
    stream = np.pad(rows, ((0, 0), (0, 1)), constant_values=-1).ravel()
    is_byte = stream >= 0
    ends_a_run = ~is_byte & np.concatenate(([False], is_byte[:-1]))
    kept = stream[is_byte | ends_a_run]
    # Runs separated by NUL: cleaning removes NUL from the text, so none is a byte-fallback character.
    text = np.where(kept >= 0, kept, 0).astype(np.uint8).tobytes().decode("utf-8", errors="ignore")
    counts = Counter(text)
    counts.pop("\x00", None)
    return counts


def describe_characters(counts: dict[str, int], limit: int = 5) -> str:
    """The most frequent characters with their counts, as `'\\n' ×1,204, '犇' ×35` (repr() shows whitespace
    and invisible characters as escapes)."""
    return ", ".join(f"{char!r} ×{count:,}" for char, count in list(counts.items())[:limit])


def measure(model_path: Path, documents: list[str], held_out: bool) -> TokenizerQuality:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    encoded = document_encoder(str(model_path))(documents)
    values = byte_values([processor.id_to_piece(i) if processor.is_byte(i) else ""
                          for i in range(processor.get_piece_size())])
    lengths = np.fromiter(map(len, encoded), np.int64, count=len(encoded))
    tokens = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(encoded), np.int64, count=tokens)
    stream = np.insert(flat, np.cumsum(lengths), END_OF_TEXT_ID)  # each document closed, as stage 2 packs them
    byte_tokens = int(np.count_nonzero(values[stream] >= 0))
    characters = sum(len(document) for document in documents)
    named = dict(byte_fallback_characters(stream, values).most_common(NAMED_CHARACTERS))
    return TokenizerQuality(
        documents=len(documents), characters=characters, tokens=tokens,
        chars_per_token=characters / tokens if tokens else 0.0,
        byte_fallback_rate=byte_tokens / tokens if tokens else 0.0,
        unk_tokens=int(np.count_nonzero(stream == processor.unk_id())), held_out=held_out,
        byte_fallback_characters=named)
