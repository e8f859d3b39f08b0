"""Stage 2's units of work: 1 MiB blocks that a worker reads itself, and pieces of whole-file blocks.

A compressed file or a JSON array cannot be entered at a byte offset, so the main process streams
it and hands it to the workers in bounded pieces: a worker's result, and memory, stay bounded
whatever the file's size. For line-based layouts (.txt one document per line, .jsonl) the main
process only decompresses: it cuts the stream at line ends and sends the bytes, which the workers
decode and read like any block, so reading compressed input costs little more than decompressing
it. Blank-line documents and JSON arrays are parsed in the main process and sent as documents.
"""

import dataclasses
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.compression import open_bytes, stream_position
from gpt2zh.corpus.fast_lines import LinePieces
from gpt2zh.corpus.formats import Block
from gpt2zh.corpus.lines import RangeReader
from gpt2zh.corpus.reader import raw_block_texts

CHUNK_CHARS = 1 << 20
LINE_LAYOUTS = ("line", "pku", "records")


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
            elif block.layout in LINE_LAYOUTS and block.encoding.ascii_compatible:
                yield from self._byte_pieces(block)
            else:
                yield from self._chunks(block, raw_block_texts(block, self.reader.data, self.reader.policy,
                                                               self.reader.stats.lines))

    def _credit(self, block: Block, credited: int) -> int:
        position = min(stream_position(block.source.path), block.source.size)
        self.sizes.append(position - credited)
        return position

    def _byte_pieces(self, block: Block) -> Iterator[Block | TextChunk]:
        """Whole lines of the decompressed stream, ~1 MiB at a time, as in-memory blocks."""
        with open_bytes(block.source.path) as stream:
            pieces, credited = LinePieces(stream), 0
            for offset, data, last in pieces:
                if last:  # carries the rest of the file's size
                    self.sizes.append(block.source.size - credited)
                else:
                    credited = self._credit(block, credited)
                yield dataclasses.replace(block, start=offset, end=offset + len(data), data=data)
            if pieces.rest is not None:  # a line longer than any piece should be: the main process reads on
                reader = RangeReader(block.source.path, block.encoding, self.reader.policy, self.reader.stats.lines)
                yield from self._chunks(block, pieces.rest_lines(reader), credited)

    def _chunks(self, block: Block, texts_in: Iterator[str], credited: int = 0) -> Iterator[TextChunk]:
        """Documents read by the main process (its line counts are counted here, not in the workers)."""
        texts, characters = [], 0
        for text in texts_in:
            texts.append(text)
            characters += len(text)
            if characters >= CHUNK_CHARS:
                credited = self._credit(block, credited)
                yield TextChunk(tuple(texts))
                texts, characters = [], 0
        self.sizes.append(block.source.size - credited)
        yield TextChunk(tuple(texts))
