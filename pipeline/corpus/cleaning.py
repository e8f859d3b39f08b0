"""Cleaning one document, exact-duplicate removal and the held-out split.

Cleaning is part of the data contract: the tokenizer is trained, verified and applied on cleaned
text, so decode(encode(x)) == x holds for every cleaned x.
- NFKC: full-width Latin letters and digits become half-width (１９９８ -> 1998), so the same word
  does not cost two sets of pieces.
- Control characters (C0 but tab and newline, DEL, C1, BOM, NUL) are removed.
- Literal special-token strings are removed: a Hugging Face tokenizer turns `<|endoftext|>` inside
  text into the document separator, SentencePiece does not, and the two must give the same ids.
- U+2581 (▁) is replaced by a space: it is SentencePiece's space marker and decodes as one.
"""

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from pipeline.corpus.tally import Tally

# A character class scans in C: 13x faster than str.translate with a deletion table on Chinese text.
CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
SPM_SPACE = "\u2581"


@dataclass
class CleaningCounts(Tally):
    documents_in: int = 0
    nfkc_changed: int = 0
    control_chars_removed: int = 0
    special_strings_removed: int = 0
    space_markers_replaced: int = 0
    empty_dropped: int = 0
    duplicates_dropped: int = 0


class TextCleaner:
    def __init__(self, reserved_strings: tuple[str, ...] = ()):
        self.reserved_strings = tuple(s for s in reserved_strings if s)
        self.counts = CleaningCounts()

    def clean(self, text: str) -> str:
        counts = self.counts
        counts.documents_in += 1
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
            counts.nfkc_changed += 1
        text, removed = CONTROL_CHARS.subn("", text)
        counts.control_chars_removed += removed
        for reserved in self.reserved_strings:
            if reserved in text:
                counts.special_strings_removed += text.count(reserved)
                text = text.replace(reserved, "")
        if SPM_SPACE in text:
            counts.space_markers_replaced += text.count(SPM_SPACE)
            text = text.replace(SPM_SPACE, " ")
        text = text.strip()
        if not text:
            counts.empty_dropped += 1
        return text


def document_digest(text: str) -> bytes:
    """16-byte digest of a cleaned document: the first 8 bytes pick its split, all 16 dedupe it."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def is_validation(digest: bytes, fraction: float) -> bool:
    """Hash-based held-out split: stable across runs, file order and sharding; duplicates share a split."""
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


class Deduplicator:
    """Exact duplicates by digest; memory grows with distinct documents (~100 bytes each)."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def is_duplicate(self, digest: bytes) -> bool:
        if digest in self.seen:
            return True
        self.seen.add(digest)
        return False
