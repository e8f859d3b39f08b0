"""What a tokenizer cannot represent: the characters of a text that it reads as its unknown token.

A vocabulary without a character (a BERT-style character vocabulary lacks rare characters, emoji, and every
character of a script it was not built for) encodes it as `[UNK]`: the model never learns which character it
was and can never write it. Predicting the one `[UNK]` is also far easier than predicting the characters it
stands for, while bits per character still divides by them: a model that loses most of the text looks best
(PITFALLS.md NU10; 0.33 bits/char against 7.77 for a real model). Byte-level and byte-fallback tokenizers have
bytes for every character and lose none. Whitespace a WordPiece tokenizer drops without a token is not counted:
it is not read as anything, and the model is not scored on it either way.
"""

from collections import Counter
from dataclasses import dataclass, field

# The most of a text a tokenizer may lose and its model still be ranked, or adopted without --tokenizer-allow-lossy:
# 0.1 % of the characters. A lost character costs the model one [UNK] instead of the character itself, ~15-20
# bits for a rare one, so at 0.1 % bits/char may flatter a model by up to ~0.02: the size of evaluate's own
# sampling error on a small held-out set (tests/test_evaluate.py: STAGE_3_TOLERANCE). Above it, what the
# tokenizer drops can reorder models; below it, a few rare characters of a large vocabulary (UER's misses
# some in most corpora) do not stop a comparison.
LOSSY_SHARE = 0.001
EXAMPLES = 8
BATCH = 1000  # texts per call into the Rust tokenizer: its speed, without every offset list held at once


def unknown_id(tokenizer, ids: dict[str, int]) -> int | None:
    """The id the tokenizer gives text it cannot represent; None where it never gives one (GPT-2's byte-level
    BPE names <|endoftext|>, its document separator, its unk token, but never produces it for text)."""
    unk = tokenizer.unk_token_id
    return None if unk is None or unk in (ids["eos"], ids["bos"]) else unk


@dataclass
class TextLoss:
    """What a tokenizer loses of some texts."""

    characters: int                 # of the texts
    unknown_tokens: int = 0         # occurrences of the unknown token
    lost: int = 0                   # characters those tokens stand for
    spans: Counter = field(default_factory=Counter)  # the text behind each unknown token, by occurrences

    @property
    def share(self) -> float:
        return self.lost / self.characters if self.characters else 0.0

    @property
    def lossy(self) -> bool:
        return self.share > LOSSY_SHARE

    def most_frequent(self, count: int = EXAMPLES) -> list[str]:
        return [span for span, _ in self.spans.most_common(count)]

    def examples(self, count: int = EXAMPLES) -> str:
        """`𠀀 ×12, 😀 ×3`: the most frequent lost spans, for one line."""
        return ", ".join(f"{span} ×{times:,}" for span, times in self.spans.most_common(count))


def lost_characters(tokenizer, texts: list[str], unk_id: int | None, encoded=None) -> TextLoss:
    """The characters of `texts` that `tokenizer` reads as `unk_id`, from the offsets of each unknown token
    (a WordPiece [UNK] stands for a whole word when any of its characters is missing: all of them are lost).
    encoded: the tokenizer's output for texts with return_offsets_mapping=True, when the caller has it."""
    loss = TextLoss(characters=sum(map(len, texts)))
    if unk_id is None:
        return loss
    if encoded is not None:
        _count_unknown(loss.spans, texts, encoded, unk_id)
    else:
        for start in range(0, len(texts), BATCH):
            batch = texts[start:start + BATCH]
            _count_unknown(loss.spans, batch, tokenizer(batch, add_special_tokens=False,
                                                        return_offsets_mapping=True, verbose=False), unk_id)
    loss.unknown_tokens = sum(loss.spans.values())
    loss.lost = sum(max(1, len(span)) * times for span, times in loss.spans.items())
    return loss


def _count_unknown(unknown: Counter, texts: list[str], encoded, unk_id: int) -> None:
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        unknown.update(text[start:end] for token, (start, end) in zip(ids, offsets, strict=True) if token == unk_id)
