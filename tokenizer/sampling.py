"""The bounded training sample: sentences from training documents, reservoir-sampled.

SentencePiece trains on "sentences" and silently skips any longer than max_sentence_length bytes;
we split documents at sentence ends and cut what is still too long, so no text is dropped.
"""

import random
import re

SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|\n")  # full-width stays full-width under data.normalization zh


def split_sentences(text: str, max_bytes: int) -> tuple[list[str], int]:
    """Sentences of at most max_bytes UTF-8 bytes; returns them and how many had to be cut."""
    sentences, cut = [], 0
    step = max_bytes // 4  # 4 bytes is the longest UTF-8 character, so a piece of `step` chars always fits
    for sentence in SENTENCE_END.split(text):
        sentence = sentence.strip()
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
