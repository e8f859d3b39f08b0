"""How much training a corpus can feed (PITFALLS.md NU7, NU8): at least one optimizer step, at most a few epochs.

Checked before stage 1 on an estimate of the corpus's tokens (pipeline/training/check.py) and again by stage 3's
plan on the dataset's real blocks, so a configuration far too large for the corpus is said before a tokenizer
is trained, not after.
"""

import math

from gpt2zh.errors import UserError

# Repeating data up to about 4 epochs trains almost as well as new data; beyond that the returns fall fast and the
# model memorises (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").
MANY_EPOCHS = 4


def refuse_less_than_one_step(train_blocks: float, global_batch: int, what: str) -> None:
    """train_blocks: the training split's blocks (an upper estimate before stage 2); what: where they come from."""
    if train_blocks >= global_batch:
        return
    raise UserError(f"{what} gives at most {math.floor(train_blocks):,} training block(s), fewer than one optimizer "
                    f"step of training.global_batch_size {global_batch}",
                    f"use a configuration sized for this corpus (--config demo), a --training-global-batch-size of "
                    f"at most {max(1, math.floor(train_blocks))}, a smaller --data-block-size, or more text")


def many_epochs_warning(max_steps: int, global_batch: int, train_blocks: float, estimated: bool) -> str | None:
    """A line when max_steps would repeat the training split more than MANY_EPOCHS times, else None.
    estimated: train_blocks is an upper estimate (before stage 2), so the epochs are at least this many."""
    epochs = max_steps * global_batch / train_blocks
    if epochs <= MANY_EPOCHS:
        return None
    steps = max(1, math.floor(MANY_EPOCHS * train_blocks / global_batch))
    return (f"{max_steps:,} steps are {'at least ' if estimated else ''}{epochs:,.0f} epochs of the training split: "
            f"beyond about {MANY_EPOCHS} a model memorises the repeated text instead of learning more; use "
            f"--training-max-steps {steps:,} (about {MANY_EPOCHS} epochs), a smaller configuration (--config demo), "
            "or more text (PITFALLS.md NU8)")
