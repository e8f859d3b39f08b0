"""How a run's documents become ids: SentencePiece on whole cleaned documents, line breaks included.

Stage 2 encodes with it, and stage 1 measures its quality figures with it (PITFALLS.md NU1), so the
byte-fallback share stage 1 reports is the one the dataset gets. The saved Hugging Face tokenizer
gives the same ids on cleaned text (verified by stage 1, tokenizer/hf_convert.py:verify).
"""

from collections.abc import Callable


def document_encoder(model_file: str) -> Callable[[list[str]], list[list[int]]]:
    """A function: cleaned documents -> their ids (no separator; stage 2 appends <|endoftext|>)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=model_file).encode
