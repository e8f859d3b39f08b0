"""Stage 2's units of work: 1 MiB blocks that a worker reads itself, and chunks of whole-file blocks.

A compressed file or a JSON array cannot be entered at a byte offset. The main process streams it
(decompression and JSON parsing are what it costs) and hands its raw documents to the workers in
chunks of about CHUNK_CHARS characters, so a worker's result, and memory, stay bounded whatever
the file's size. Cleaning, hashing and tokenizing still happen in the workers.
"""

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.corpus import CorpusReader
from pipeline.corpus.compression import stream_position
from pipeline.corpus.formats import Block
from pipeline.corpus.reader import raw_block_texts

CHUNK_CHARS = 1 << 20


@dataclass(frozen=True)
class TextChunk:
    """Raw (uncleaned) documents of a whole-file block, in file order."""

    texts: tuple[str, ...]


class WorkItems:
    """The blocks of this job as work items, in order; `sizes` has each item's share of the input
    bytes (for progress and the summary), popped by the consumer as the results come back."""

    def __init__(self, blocks: list[Block], reader: CorpusReader):
        self.blocks, self.reader = blocks, reader
        self.sizes: deque[int] = deque()

    def __iter__(self) -> Iterator[Block | TextChunk]:
        for block in self.blocks:
            if not block.whole_file:
                self.sizes.append(self.reader.block_bytes(block))
                yield block
                continue
            yield from self._chunks(block)

    def _chunks(self, block: Block) -> Iterator[TextChunk]:
        data, stats = self.reader.data, self.reader.stats
        texts, characters, credited = [], 0, 0
        # Lines are counted here, in the main process; the workers see only documents.
        for text in raw_block_texts(block, data, self.reader.policy, stats.lines):
            texts.append(text)
            characters += len(text)
            if characters >= CHUNK_CHARS:
                position = min(stream_position(block.source.path), block.source.size)
                self.sizes.append(position - credited)
                credited = position
                yield TextChunk(tuple(texts))
                texts, characters = [], 0
        self.sizes.append(block.source.size - credited)
        yield TextChunk(tuple(texts))
