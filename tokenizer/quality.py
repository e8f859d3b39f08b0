"""Tokenizer figures on held-out text: characters per token, byte-fallback share, <unk> count."""

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TokenizerQuality:
    documents: int
    characters: int
    tokens: int
    chars_per_token: float
    byte_fallback_rate: float  # share of tokens that are raw UTF-8 bytes (rare characters)
    unk_tokens: int
    held_out: bool  # False when the corpus had no held-out documents and training text was used

    def as_dict(self) -> dict:
        return asdict(self)


def measure(model_path: Path, texts: list[str], held_out: bool) -> TokenizerQuality:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    byte_ids = {i for i in range(processor.get_piece_size()) if processor.is_byte(i)}
    unk_id = processor.unk_id()
    encoded = processor.encode(texts)
    tokens = sum(len(ids) for ids in encoded)
    byte_tokens = sum(1 for ids in encoded for i in ids if i in byte_ids)
    unk = sum(ids.count(unk_id) for ids in encoded)
    characters = sum(len(t) for t in texts)
    return TokenizerQuality(
        documents=len(texts), characters=characters, tokens=tokens,
        chars_per_token=characters / tokens if tokens else 0.0,
        byte_fallback_rate=byte_tokens / tokens if tokens else 0.0,
        unk_tokens=unk, held_out=held_out)
