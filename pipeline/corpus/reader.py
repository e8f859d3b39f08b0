"""The corpus reader shared by stage 1 (tokenizer) and stage 2 (dataset).

All files are checked before reading starts (missing, empty, binary, encoding), then read as
blocks: in order (`documents`, every byte) or in a seeded random order (`sampled_documents`, so a
caller can stop after enough text while still seeing all parts of a huge corpus). Memory is bounded
by one block and one line piece, plus the dedupe set when data.dedupe is on.
"""

import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus.blank_lines import detect_boundary
from gpt2zh.corpus.cleaning import CleaningCounts, Deduplicator, TextCleaner, document_digests, held_out_mask
from gpt2zh.corpus.compression import compression_of
from gpt2zh.corpus.encoding import FileEncoding, sniff_encoding
from gpt2zh.corpus.formats import Block, Fields, block_texts, plan_blocks
from gpt2zh.corpus.lines import LineCounts, LinePolicy
from gpt2zh.corpus.sources import Source

log = logging.getLogger("gpt2zh")
LAYOUT_WORDS = {"blank-line": "blank-line documents", "line": "one document per line", "array": "one JSON array",
                "records": "JSON lines", "rows": "parquet rows", "pku": "tagged lines"}


def _kind(paths: list[str]) -> str:
    suffixes = {"".join(Path(path).suffixes[-2:]) if compression_of(Path(path)) else Path(path).suffix
                for path in paths}
    return "/".join(sorted(suffixes))


@dataclass
class Document:
    text: str
    validation: bool


@dataclass
class SplitCounts:
    documents: int = 0
    characters: int = 0


@dataclass
class CorpusStats:
    files: int = 0
    empty_files: list[str] = field(default_factory=list)
    detected_encodings: dict[str, str] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)  # file -> its Block layout (line, blank-line, array…)
    layout_reasons: dict[str, tuple[str, str]] = field(default_factory=dict)  # .txt file -> (reason, figures)
    bytes_total: int = 0
    bytes_read: int = 0
    blocks_total: int = 0
    blocks_read: int = 0
    train: SplitCounts = field(default_factory=SplitCounts)
    validation: SplitCounts = field(default_factory=SplitCounts)
    lines: LineCounts = field(default_factory=LineCounts)
    cleaning: CleaningCounts = field(default_factory=CleaningCounts)

    def as_dict(self) -> dict:
        return {
            "files": self.files, "empty_files": self.empty_files, "detected_encodings": self.detected_encodings,
            "document_boundaries": {path: f"{self.layouts[path]}: {reason} ({figures})".replace(" ()", "")
                                    for path, (reason, figures) in self.layout_reasons.items()},
            "bytes_total": self.bytes_total, "bytes_read": self.bytes_read,
            "blocks_total": self.blocks_total, "blocks_read": self.blocks_read,
            "train": vars(self.train).copy(), "validation": vars(self.validation).copy(),
            "lines": self.lines.as_dict(), "cleaning": self.cleaning.as_dict(),
        }

    def documents_line(self, held_out: str) -> str:
        """The "documents" row of a stage summary; held_out names the second split ("validation", "held out")."""
        return (f"{self.train.documents:,} training, {self.validation.documents:,} {held_out} "
                f"({self.train.characters + self.validation.characters:,} characters)")

    def layout_line(self) -> str | None:
        """The "layout" row: how each kind of file was read and, for .txt files, why (a file's own figures
        when it is the only one with its reason, else how many files had each reason)."""
        parts = []
        for layout, words in LAYOUT_WORDS.items():
            chosen = [path for path, used in self.layouts.items() if used == layout]
            if not chosen:
                continue
            reasons = Counter(self.layout_reasons[path][0] for path in chosen if path in self.layout_reasons)
            if len(chosen) == 1 and reasons:
                reason, figures = self.layout_reasons[chosen[0]]
                why = f" ({reason}: {figures})" if figures else f" ({reason})"
            elif len(reasons) == 1:
                why = f" ({next(iter(reasons))})"
            else:
                why = " (" + ", ".join(f"{count:,}: {reason}" for reason, count in reasons.items()) + ")" \
                    if reasons else ""
            parts.append(f"{words} in {len(chosen):,} {_kind(chosen)} file(s){why}")
        return "; ".join(parts) or None

    def cleaning_line(self) -> str:
        """The "cleaning" row of a stage summary: every line and cleaning count that is not zero."""
        changes = {**self.cleaning.as_dict(), **self.lines.as_dict()}
        changes.pop("documents_in"), changes.pop("lines")
        noted = ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in changes.items() if value)
        return noted or "nothing to change"


@dataclass
class CleanBatch:
    """Cleaned, non-empty documents in file order, their 16-byte digests (concatenated) and split."""

    texts: list[str]
    digests: bytes
    held_out: np.ndarray  # bool per document


def raw_block_texts(block: Block, data: DataConfig, policy: LinePolicy, line_counts: LineCounts) -> Iterator[str]:
    return block_texts(block, Fields.of(data), policy, line_counts)


def clean_batches(raw_texts: Iterable[str], data: DataConfig, cleaner: TextCleaner,
                  max_documents: int = 2000, max_chars: int = 2_000_000) -> Iterator[CleanBatch]:
    """Raw documents cleaned, hashed and split a bounded batch at a time.

    Shared by the reader and stage 2's worker processes, so both clean and split identically.
    """
    raw_texts = iter(raw_texts)
    while documents := list(itertools.islice(raw_texts, max_documents)):
        for batch in _bounded_by_characters(documents, max_chars):
            texts = cleaner.clean_batch(batch)
            digests = document_digests(texts)
            yield CleanBatch(texts, digests, held_out_mask(digests, data.validation_fraction))


def _bounded_by_characters(documents: list[str], max_chars: int) -> Iterator[list[str]]:
    if sum(map(len, documents)) <= max_chars:  # the usual case
        yield documents
        return
    batch, characters = [], 0
    for text in documents:
        if batch and characters + len(text) > max_chars:
            yield batch
            batch, characters = [], 0
        batch.append(text)
        characters += len(text)
    yield batch


class CorpusReader:
    def __init__(self, sources: list[Source], data: DataConfig, reserved_strings: tuple[str, ...] = ()):
        self.data = data
        self.policy = LinePolicy(data.decode_errors, data.max_line_chars, data.long_lines)
        self.cleaner = TextCleaner.for_data(data, reserved_strings)
        self.deduplicator = Deduplicator() if data.dedupe else None
        self.stats = CorpusStats(files=len(sources), bytes_total=sum(s.size for s in sources))
        self.stats.cleaning = self.cleaner.counts
        self.blocks: list[Block] = []
        for source in sources:  # every file is checked before any long work starts
            encoding = self._encoding_of(source)
            planned = plan_blocks(source, encoding, Fields.of(data), self._layout_of(source, encoding))
            if planned:
                self.stats.layouts[str(source.path)] = planned[0].layout
            self.blocks += planned
        self.stats.blocks_total = len(self.blocks)
        self._row_groups = Counter(block.source for block in self.blocks if block.encoding is None)

    def _encoding_of(self, source: Source) -> FileEncoding | None:
        if source.format == "parquet":
            return None
        encoding = sniff_encoding(source.path, self.data.encoding)
        if encoding is None:
            self.stats.empty_files.append(str(source.path))
            log.warning("%s: empty file, skipped", source.path)
        elif encoding.detected:
            self.stats.detected_encodings[str(source.path)] = encoding.label
            log.warning("%s: not UTF-8; decoding it as %s (detected)", source.path, encoding.label)
        return encoding

    def _layout_of(self, source: Source, encoding: FileEncoding | None) -> str:
        if source.format != "txt":
            return {"jsonl": "records", "pku": "pku", "parquet": "rows"}.get(source.format, "records")
        if encoding is None:
            return "line"
        rule, reason, figures = detect_boundary(source.path, encoding, self.data.document_boundary)
        self.stats.layout_reasons[str(source.path)] = (reason, figures)
        return rule

    def block_bytes(self, block: Block) -> int:
        if block.encoding is None:  # parquet row group: its share of the file
            return block.source.size // self._row_groups[block.source]
        if block.whole_file:
            return block.source.size
        return block.end - block.start

    def _read(self, blocks: Iterable[Block], on_block: Callable[[int], None] | None) -> Iterator[Document]:
        stats = self.stats
        for block in blocks:
            raw = raw_block_texts(block, self.data, self.policy, stats.lines)
            # Small batches: stage 1 may stop reading after any document.
            for batch in clean_batches(raw, self.data, self.cleaner, max_documents=64):
                for index, text in enumerate(batch.texts):
                    digest = batch.digests[16 * index: 16 * index + 16]
                    if self.deduplicator is not None and self.deduplicator.is_duplicate(digest):
                        stats.cleaning.duplicates_dropped += 1
                        continue
                    held_out = bool(batch.held_out[index])
                    split = stats.validation if held_out else stats.train
                    split.documents += 1
                    split.characters += len(text)
                    yield Document(text, held_out)
            stats.blocks_read += 1
            size = self.block_bytes(block)
            stats.bytes_read += size
            if on_block is not None:
                on_block(size)

    def documents(self, on_block: Callable[[int], None] | None = None) -> Iterator[Document]:
        """Every document, in file order."""
        return self._read(self.blocks, on_block)

    def sampled_documents(self, seed: int, on_block: Callable[[int], None] | None = None) -> Iterator[Document]:
        """Every document, blocks in a seeded random order: stop early for a uniform sample of a huge corpus."""
        order = list(self.blocks)
        random.Random(seed).shuffle(order)
        return self._read(order, on_block)
