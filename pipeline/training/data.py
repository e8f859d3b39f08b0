"""Training data: stage 2's blocks, a resumable sample order, the collator, the unigram baseline."""

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from gpt2zh.dataset.check import SMALL_VALIDATION_BLOCKS
from gpt2zh.dataset.loading import load_blocks
from gpt2zh.errors import UserError

log = logging.getLogger("gpt2zh")


class GlobalStreamSampler(Sampler[int]):
    """One endless, seeded stream of sample indices: epoch e is permutation(seed, e) of the dataset.

    Position p of the stream is fully determined by (seed, p), so resuming at step s starts at
    p = s × samples_per_step in O(1): no replay of the data pipeline, no skipping of batches (PT1:
    users waited hours for that), and the resumed order is exactly the uninterrupted one. Each
    __iter__ (one Trainer "epoch") continues the stream for __len__ samples, a whole number of
    optimizer steps, so steps never straddle an epoch boundary differently after a resume.
    """

    def __init__(self, num_samples: int, seed: int, samples_per_step: int, start: int = 0):
        if num_samples < samples_per_step:
            raise UserError(f"the training split has {num_samples} blocks, fewer than one optimizer step "
                            f"({samples_per_step} blocks)", "lower --training-global-batch-size or add data")
        self.num_samples, self.seed = num_samples, seed
        self.length = (num_samples // samples_per_step) * samples_per_step
        self.cursor = start
        self.permutations_built = 0  # tests check that resuming never builds more than needed
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self.permutations_built += 1
        return self._cache[epoch]

    def __iter__(self):
        start, self.cursor = self.cursor, self.cursor + self.length
        for position in range(start, start + self.length):
            epoch, offset = divmod(position, self.num_samples)
            yield int(self._permutation(epoch)[offset])


class BlockCollator:
    """Stacks stored blocks (uint16/uint32) into int64 input_ids; labels are the same tokens (GPT-2 shifts)."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        blocks = np.stack([np.asarray(f["input_ids"]) for f in features]).astype(np.int64)
        input_ids = torch.from_numpy(blocks)
        return {"input_ids": input_ids, "labels": input_ids}


def load_training_data(dataset_dir: Path, eval_max_blocks: int):
    """(train, validation) datasets of blocks, formatted as numpy for the collator."""
    blocks = load_blocks(dataset_dir)
    train = blocks["train"].with_format("numpy")
    validation = blocks["validation"].with_format("numpy")
    if len(validation) == 0:
        raise UserError(f"{dataset_dir} has no validation blocks", "rerun stages 1-2 with a larger "
                        "--data-validation-fraction (`gpt2zh run --force` with it rebuilds stages 1-3)")
    if len(validation) < SMALL_VALIDATION_BLOCKS:
        tokens = len(validation) * len(validation[0]["input_ids"])
        log.warning("pretrain: the validation split has only %d block(s) (%d tokens): every block is evaluated, "
                    "but the validation loss will be noisy; add data, or rerun stages 1-2 with a larger "
                    "--data-validation-fraction (`gpt2zh run --force` with it rebuilds stages 1-3)", len(validation),
                    tokens)
    if eval_max_blocks and len(validation) > eval_max_blocks:
        validation = validation.select(range(eval_max_blocks))
    return train, validation


def unigram_entropy(blocks, vocab_size: int) -> float:
    """Entropy (nats/token) of the tokens' frequencies: the loss of a model that ignores context."""
    counts = np.zeros(vocab_size, np.int64)
    for start in range(0, len(blocks), 1024):
        chunk = np.asarray(blocks[start: start + 1024]["input_ids"]).reshape(-1)
        counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * np.log(probabilities)).sum())


def bits_per_character(loss_nats: float, tokens_per_character: float) -> float:
    return loss_nats * tokens_per_character / math.log(2)
