"""Packing token streams into blocks of exactly block_size tokens.

run_clm.py's group_texts drops the remainder of every map batch (and has produced short blocks that
crash collation). Here the remainder is carried into the next call; only the one final tail of the
whole stream is dropped, and it is reported: tokens in = blocks × block_size + tail.
"""

from collections.abc import Callable

import numpy as np

FLUSH_TOKENS = 1 << 20  # pending tokens that trigger a cut into blocks (bounds memory, keeps writes large)


class BlockPacker:
    def __init__(self, block_size: int, write_blocks: Callable[[np.ndarray], None], flush_tokens: int = FLUSH_TOKENS):
        self.block_size = block_size
        self.write_blocks = write_blocks  # receives (n, block_size) arrays
        self.flush_tokens = max(flush_tokens, block_size)
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.tokens_in = 0
        self.blocks_out = 0
        self.tail: int | None = None  # set by close()

    def add(self, tokens: np.ndarray) -> None:
        if not len(tokens):
            return
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        self.tokens_in += len(tokens)
        if self.pending_tokens >= self.flush_tokens:
            self._cut()

    def _cut(self) -> None:
        stream = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        full = len(stream) // self.block_size
        if full:
            self.write_blocks(stream[: full * self.block_size].reshape(full, self.block_size))
            self.blocks_out += full
        rest = stream[full * self.block_size:]
        self.pending = [rest] if len(rest) else []
        self.pending_tokens = len(rest)

    def close(self) -> int:
        """Write what fills whole blocks; return the size of the dropped final tail."""
        if self.pending:
            self._cut()
        self.tail = self.pending_tokens
        self.pending, self.pending_tokens = [], 0
        return self.tail
