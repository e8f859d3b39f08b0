"""The bounded training sample: sentences from training documents, reservoir-sampled.

SentencePiece trains on "sentences" and silently skips any longer than max_sentence_length bytes;
we split documents at sentence ends and cut what is still too long, so no text is dropped.
The sentences are the document cut in pieces, nothing stripped (PITFALLS.md NU1): a line break and
the indentation after it stay with the sentence they end, as stage 2 encodes them inside whole
documents, so the tokenizer learns `\n` (and `。\n`) instead of spelling it in byte pieces.
"""

import random
import re

# A sentence: text up to a sentence end (full-width stays full-width under data.normalization zh) or a
# line break, with the whitespace that follows it; the last one may end without either.
SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]|\n|$)\s*")


def split_sentences(text: str, max_bytes: int) -> tuple[list[str], int]:
    """Sentences of at most max_bytes UTF-8 bytes whose concatenation is `text`; returns them and how many
    had to be cut."""
    sentences, cut = [], 0
    step = max_bytes // 4  # 4 bytes is the longest UTF-8 character, so a piece of `step` chars always fits
    for sentence in SENTENCE.findall(text):
        if not sentence:
            continue
        if len(sentence) * 4 <= max_bytes or len(sentence.encode("utf-8")) <= max_bytes:
            sentences.append(sentence)
            continue
        cut += 1
        sentences += [sentence[i: i + step] for i in range(0, len(sentence), step)]
    return sentences, cut


class SentenceReservoir:
    """A uniform sample of at most `capacity` sentences from a stream (Algorithm R), seeded."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.items: list[str] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def add(self, sentence: str) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(sentence)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.capacity:
            self.items[slot] = sentence
