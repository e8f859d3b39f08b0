"""The sliding-window scorer of `gpt2zh evaluate` (pipeline/inference/scoring.py), in process on a tiny random
GPT-2: its batches and sums against each window scored alone, its default stride and its windows' bounds."""

import pytest
import torch

from gpt2zh.inference.scoring import _batches, default_stride, stream_nats, windows
from tests.tiny_models import tiny_gpt2

CPU = torch.device("cpu")


def test_the_default_stride_is_half_the_context_rounded_down_and_at_least_one():
    assert [default_stride(context) for context in (1, 2, 3, 5, 1024)] == [1, 1, 1, 2, 512]


@pytest.mark.parametrize("stride", [0, 65])
def test_a_stride_outside_one_to_the_context_is_refused_naming_both(stride):
    with pytest.raises(ValueError) as raised:
        windows(100, 64, stride)
    assert str(raised.value) == f"stride {stride} is outside 1 .. 64"


def begins(batches) -> list[list[int]]:
    return [[window.begin for window in batch] for batch in batches]


def test_batches_are_consecutive_windows_of_one_shape_at_most_16_at_a_time():
    # 100 tokens, windows of 8 every 4: the first scores 8, the next 22 score 4, the last (7 tokens) scores 3.
    assert begins(_batches(windows(100, 8, 4))) == [[0], list(range(4, 68, 4)), list(range(68, 92, 4)), [92]]


def test_a_batch_keeps_the_logits_of_at_most_4096_scored_positions_and_at_least_one_window():
    assert begins(_batches(windows(6001, 2000, 2000))) == [[0, 2000], [4000]]  # 2 x 2,000 rows
    assert begins(_batches(windows(9001, 3000, 3000))) == [[0], [3000], [6000]]  # 3,000 rows alone


def nats_window_by_window(model, stream: list[int], context: int, stride: int) -> float:
    """Each window alone, with the logits of every position: what the batches must add up to."""
    total = 0.0
    for window in windows(len(stream), context, stride):
        logits = model(input_ids=torch.tensor([stream[window.begin:window.end]])).logits[0]
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        for position in range(window.end - window.begin - window.scored, window.end - window.begin):
            total -= float(log_probs[position, stream[window.begin + position + 1]])
    return total


def test_stream_nats_adds_up_each_token_once_as_its_window_alone_scores_it():
    model = tiny_gpt2(50, 0, n_positions=8).eval()
    stream = torch.randint(0, 50, (24,), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        expected = nats_window_by_window(model, stream, 8, 4)
    reported = []
    total, count = stream_nats(model, stream, 8, 4, CPU, reported.append)
    # 24 tokens, windows of 8 every 4: batches of the first window, the 3 that score 4, and the last (3).
    assert count == 23 and reported == [8, 3 * 4, 3]
    assert total == pytest.approx(expected, rel=1e-6)
    # The same figures with 32-bit ids (as a tokenizer's arrays may hold) and no progress callback.
    assert stream_nats(model, torch.tensor(stream, dtype=torch.int32), 8, 4, CPU) == (total, count)
