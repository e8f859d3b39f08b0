"""The negative log-likelihood of a token stream under a causal LM, read through a sliding window.

A stream longer than the model's context W (n_positions) is read in windows of W tokens whose starts are
`stride` S tokens apart. Window k feeds tokens [kS, kS+W) and predicts tokens kS+1 .. kS+W; only the targets
no earlier window scored count, so every token after the first is scored exactly once, each with at least
W - S + 1 tokens of context (the first window's targets: all tokens before them).

S = W reads fixed blocks, as stage 3's evaluation does (the first target of a block sees one token of context);
S = 1 gives every token a full context at W times the compute. The default, W / 2, costs twice the blocks'
compute and gives every token at least half a context.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby

from gpt2zh.inference.loading import autocast

# Windows per forward pass: as many as keep the fp32 logits of their scored positions at 4,096 rows (x a 50,257-
# token vocabulary: 0.8 GB, what a CPU or a small GPU holds beside the model), and at most 16 (their activations:
# 16 x 1,024 tokens). --stride 1 scores one position per window, so it batches 16 windows.
LOGIT_ROWS, MAX_WINDOWS = 4096, 16


@dataclass(frozen=True)
class Window:
    begin: int   # first input token
    end: int     # one past the last input token; the last target is token `end`
    scored: int  # targets counted here: the last `scored` of begin+1 .. end


def default_stride(context: int) -> int:
    return max(1, context // 2)


def windows(length: int, context: int, stride: int) -> list[Window]:
    """The windows over a stream of `length` tokens that score tokens 1 .. length-1 once each."""
    if not 1 <= stride <= context:
        raise ValueError(f"stride {stride} is outside 1 .. {context}")
    found, begin, covered = [], 0, 0  # covered: the last target scored so far
    while covered < length - 1:
        end = min(begin + context, length - 1)
        found.append(Window(begin, end, end - covered))
        covered, begin = end, begin + stride
    return found


def _batches(all_windows: list[Window]) -> Iterator[list[Window]]:
    """Consecutive windows of one shape (input length, scored targets), as many at a time as fit."""
    for (_, scored), group in groupby(all_windows, key=lambda w: (w.end - w.begin, w.scored)):
        alike, size = list(group), min(MAX_WINDOWS, max(1, LOGIT_ROWS // scored))
        for start in range(0, len(alike), size):
            yield alike[start:start + size]


def stream_nats(model, stream: list[int], context: int, stride: int, device,
                on_scored: Callable[[int], None] | None = None) -> tuple[float, int]:
    """(total nats, tokens scored) of stream[1:] given what precedes each token, in float64."""
    import torch
    import torch.nn.functional as F

    ids = torch.as_tensor(stream, dtype=torch.long)
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(windows(len(stream), context, stride)):
            scored = batch[0].scored
            inputs = torch.stack([ids[w.begin:w.end] for w in batch]).to(device)
            targets = torch.stack([ids[w.end - scored + 1:w.end + 1] for w in batch]).to(device)
            with autocast(device):
                logits = model(input_ids=inputs, logits_to_keep=scored).logits
            nats = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   reduction="sum")
            total += float(nats.double())
            count += targets.numel()
            if on_scored is not None:
                on_scored(targets.numel())
    return total, count
