"""The learning-rate schedule: linear warmup to the peak, then cosine decay to min_lr_ratio × peak.

Counted in optimizer steps from 1. transformers' warmup starts at factor 0, so step 1 trains at
learning rate 0: a step of compute spent on nothing, and a history whose first row says 0.0. Here
step k of the warmup trains at k / warmup_steps of the peak (step warmup_steps at the peak), and the
last step at exactly the minimum.
"""

import math
from functools import partial


def learning_rate_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """The share of the peak learning rate that optimizer step `step` (1-based) trains at."""
    if step <= warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _factor_for_index(index: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    # LambdaLR calls this with the number of scheduler steps taken so far: 0 while step 1 runs.
    return learning_rate_factor(index + 1, warmup_steps, max_steps, min_ratio)


def warmup_cosine_scheduler(optimizer, warmup_steps: int, max_steps: int, min_ratio: float):
    from torch.optim.lr_scheduler import LambdaLR

    # a partial, not a closure: LambdaLR's state_dict (saved in every checkpoint) can hold it
    return LambdaLR(optimizer, partial(_factor_for_index, warmup_steps=warmup_steps, max_steps=max_steps,
                                       min_ratio=min_ratio))
