"""The building blocks of stage 3, one behaviour each."""

import math

import numpy as np
import pytest
import torch

from gpt2zh.errors import UserError
from gpt2zh.training.data import BlockCollator, GlobalStreamSampler, bits_per_character, unigram_entropy
from gpt2zh.training.guards import NonFiniteTally
from gpt2zh.training.model import strip_compile_prefix


def stream(sampler: GlobalStreamSampler, epochs: int) -> list[int]:
    return [index for _ in range(epochs) for index in sampler]


def test_the_stream_is_seeded_and_covers_every_block_each_pass():
    sampler = GlobalStreamSampler(num_samples=10, seed=3, samples_per_step=5)
    first = stream(sampler, 2)
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:]) == list(range(10))
    assert first[:10] != first[10:]  # a new order each pass
    assert stream(GlobalStreamSampler(10, 3, 5), 2) == first


def test_resuming_at_any_position_continues_the_same_stream():
    full = stream(GlobalStreamSampler(num_samples=23, seed=1, samples_per_step=4), 6)  # len 20 per pass
    for step in (1, 5, 7, 13):
        resumed = GlobalStreamSampler(23, 1, 4, start=step * 4)
        assert stream(resumed, 2) == full[step * 4: step * 4 + 40]


def test_resuming_far_into_training_builds_one_permutation_not_the_history():
    # (PT1) no replay of the data pipeline; the cost does not grow with the step number
    sampler = GlobalStreamSampler(num_samples=1000, seed=0, samples_per_step=10, start=10**12)
    first = next(iter(sampler))
    assert sampler.permutations_built == 1
    epoch, offset = divmod(10**12, 1000)
    assert first == int(np.random.default_rng([0, epoch]).permutation(1000)[offset])


def test_a_pass_is_a_whole_number_of_optimizer_steps():
    assert len(GlobalStreamSampler(num_samples=103, seed=0, samples_per_step=10)) == 100
    with pytest.raises(UserError, match="fewer than one optimizer step"):
        GlobalStreamSampler(num_samples=7, seed=0, samples_per_step=8)


def test_collator_widens_stored_ids_to_int64_and_labels_them():
    features = [{"input_ids": np.array([1, 65535, 3], np.uint16)}, {"input_ids": np.array([4, 5, 6], np.uint16)}]
    batch = BlockCollator()(features)
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"][0, 1] == 65535
    assert torch.equal(batch["labels"], batch["input_ids"])  # GPT-2 shifts the labels itself


def test_unigram_entropy_of_known_frequencies():
    blocks = [{"input_ids": np.array([0, 0, 1, 1], np.uint16)}, {"input_ids": np.array([2, 2, 2, 2], np.uint16)}]

    class Rows(list):
        def __getitem__(self, key):
            rows = list.__getitem__(self, key)
            return {"input_ids": [r["input_ids"] for r in rows]} if isinstance(key, slice) else rows

    expected = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert unigram_entropy(Rows(blocks), vocab_size=5) == pytest.approx(expected)


def test_bits_per_character_converts_nats_per_token():
    assert bits_per_character(math.log(2), tokens_per_character=1.0) == pytest.approx(1.0)
    assert bits_per_character(2.0, tokens_per_character=0.5) == pytest.approx(1.0 / math.log(2))


def test_compile_prefix_is_stripped_from_state_dict_keys():
    stripped = strip_compile_prefix({"_orig_mod.transformer.wte.weight": 1, "lm_head.weight": 2})
    assert stripped == {"transformer.wte.weight": 1, "lm_head.weight": 2}


def test_non_finite_steps_are_counted_and_stop_after_the_limit():
    tally = NonFiniteTally(limit=3)
    decisions = [tally.record(value, step) for step, value in enumerate([1.0, math.nan, math.inf, 0.5, math.nan,
                                                                         math.nan, math.nan], start=1)]
    assert decisions == [False, True, True, False, True, True, True]
    assert tally.skipped == 5 and tally.stopped_at == 7
    stopped = ("training stopped at step 7: 3 consecutive steps had a non-finite loss or gradient (5 skipped in all, "
               "none applied to the weights) — lower --optimization-learning-rate")
    then = "check the data with `gpt2zh diagnose`; then rerun to resume from the last checkpoint (PITFALLS.md N1)"
    assert tally.diagnosis(1e-3, "fp16").one_line() == (
        f"{stopped} (now 0.001; try 0.0001); fp16 overflows easily: loss scaling is on, try --training-precision fp32 "
        f"to confirm; {then}")
    assert tally.diagnosis(3e-4, "bf16").one_line() == f"{stopped} (now 0.0003; try 3e-05); {then}"


def test_the_model_config_takes_its_vocabulary_and_every_special_token_id_from_the_tokenizer():
    from gpt2zh.config.schema import ModelConfig
    from gpt2zh.manifests import TokenizerManifest
    from gpt2zh.training.model import gpt2_config

    manifest = TokenizerManifest(fingerprint="", vocab_size=4321, special_tokens={},
                                 special_token_ids={"bos": 5, "eos": 6, "pad": 7})
    config = gpt2_config(ModelConfig(), manifest, "sdpa")
    assert (config.vocab_size, config.bos_token_id, config.eos_token_id, config.pad_token_id) == (4321, 5, 6, 7)
