"""PITFALLS.md rows no other test proves: tiny real GPT-2 models, the real Trainer arguments and the real
`gpt2zh diagnose` history checks, on CPU in seconds."""

import dataclasses
import math

import pytest
import torch
from transformers import TrainingArguments

from gpt2zh.config import Config
from gpt2zh.config.schema import ModelConfig
from gpt2zh.diagnose import history_checks
from gpt2zh.diagnose.findings import OK, WARN
from gpt2zh.hardware.presets import resolve_preset
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.training.arguments import argument_values
from gpt2zh.training.model import build_model, gpt2_config
from gpt2zh.training.plan import plan_training
from gpt2zh.training.samples import generate_samples
from tests.conftest import fabricate

CHARACTERS = "今天中国经济这本书"
MANIFEST = TokenizerManifest(fingerprint="", vocab_size=3 + len(CHARACTERS), special_tokens={},
                             special_token_ids={"bos": 1, "eos": 1, "pad": 2})


def tiny_gpt2(attention: str = "sdpa"):
    torch.manual_seed(0)
    sizes = ModelConfig(n_layer=2, n_head=2, n_embd=16, n_positions=32)
    return build_model(gpt2_config(sizes, MANIFEST, attention))


def tiny_tokenizer():
    """One id per character, with the pipeline's special tokens: enough for generate_samples."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|endoftext|>": 1, "<|pad|>": 2, **{c: i + 3 for i, c in enumerate(CHARACTERS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|pad|>")


def plan_and_arguments(device: str, tmp_path, processes: int = 1, **training):
    facts = dataclasses.replace(fabricate(device, count=processes), world_size=processes)
    config = Config()
    preset, _ = resolve_preset("auto", False, facts)
    for key, value in {**preset.training, "global_batch_size": 480, **training}.items():
        setattr(config.training, key, value)
    plan = plan_training(config, facts, processes, None)
    return plan, argument_values(config, plan, tmp_path)


def ids(batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(3, MANIFEST.vocab_size, (batch, length), generator=torch.Generator().manual_seed(1))


# -- C: troubleshooting cases ----------------------------------------------------------------------------------

def test_every_gpt2_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search(tmp_path):
    """(C3) Fewer all-reduces (accumulation) and no per-step graph walk (find_unused_parameters)."""
    model = tiny_gpt2()
    batch = ids()
    model(input_ids=batch, labels=batch).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []  # else DDP with find_unused_parameters=False would stop with "did not receive grad"
    plan, values = plan_and_arguments("a100-40g", tmp_path, processes=2)
    assert values["ddp_find_unused_parameters"] is False
    # the preset asks 48, which fits 90 % of 39.4 GiB with DDP's buckets thanks to the chunked loss (PT12, PT15)
    assert (plan.per_device_batch_size, values["gradient_accumulation_steps"]) == (48, 5)  # one all-reduce per 5


def test_samples_are_drawn_with_temperature_0_8_and_top_k_50(monkeypatch):
    """(C5) samples.md uses the sampling settings saved in generation_config.json."""
    model, tokenizer = tiny_gpt2(), tiny_tokenizer()
    calls, generate = [], model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    samples = generate_samples(model, tokenizer, ["今天", "中国经济"], max_new_tokens=4, seed=0)
    assert [prompt for prompt, _ in samples] == ["今天", "中国经济"]
    assert all(isinstance(text, str) for _, text in samples)
    assert [(c["do_sample"], c["temperature"], c["top_k"]) for c in calls] == [(True, 0.8, 50)] * 2


def test_gradients_are_clipped_at_1_and_the_default_peak_is_below_1e_3(tmp_path):
    _, values = plan_and_arguments("cpu", tmp_path, global_batch_size=16, per_device_batch_size=16)
    assert values["max_grad_norm"] == 1.0
    assert values["learning_rate"] < 1e-3 and values["warmup_steps"] > 0


# -- F5: compile where the preset turns it on -------------------------------------------------------------------

@pytest.mark.parametrize("device, compiled", [("a100-80g", "reduce-overhead"), ("rtx4090", "max-autotune"),
                                              ("t4", None), ("cpu", None)])
def test_compile_reaches_the_trainer_where_the_preset_turns_it_on(device, compiled, tmp_path):
    _, values = plan_and_arguments(device, tmp_path)
    assert values.get("torch_compile_mode") == compiled
    assert values.get("torch_compile", False) is (compiled is not None)


# -- D12: underfitting -------------------------------------------------------------------------------------------

def _history(losses: list[float], final_eval: float, unigram: float = 6.0) -> list[dict]:
    rows = [{"step": i + 1, "loss": value, "grad_norm": 0.5, "learning_rate": 1e-3, "unigram_entropy": unigram,
             "skipped_steps": 0} for i, value in enumerate(losses)]
    rows[-1]["eval_loss"] = final_eval
    return rows


def _titles(rows: list[dict]) -> dict[str, str]:
    findings = history_checks.history_findings(history_checks.load_series(rows), 1.0, 1e-3)
    return {f.title: f.status for f in findings}


def test_underfitting_training_and_validation_both_high_is_named():
    """Both losses high: not better than the unigram baseline (a model that ignores context)."""
    falling = [8.0 - 1.5 * (1 - math.exp(-i / 15)) for i in range(60)]  # ends near 6.6, above unigram 6.0
    underfit = _titles(_history(falling, final_eval=6.7))
    assert underfit["not yet better than the unigram baseline"] == WARN
    assert underfit["training loss decreases"] == OK
    learned = _titles(_history([v - 2.0 for v in falling], final_eval=4.7))
    assert "not yet better than the unigram baseline" not in learned


# -- N: NaN loss -----------------------------------------------------------------------------------------------

def test_gpt2_normalises_with_layer_norm_so_a_batch_of_one_gives_the_same_outputs():
    """No BatchNorm: in training mode (dropout is 0 by default) a sequence's logits do not depend on the batch
    it is in or its size, so batch statistics cannot go wrong with a batch of 1 or uneven data per GPU."""
    model = tiny_gpt2().train()
    kinds = {type(m).__name__ for m in model.modules()}
    assert "LayerNorm" in kinds and not any("BatchNorm" in kind for kind in kinds)
    batch = ids(batch=4)
    with torch.no_grad():
        together = model(input_ids=batch).logits
        alone = torch.cat([model(input_ids=batch[i:i + 1]).logits for i in range(4)])
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention, dtype", [("sdpa", torch.float32), ("sdpa", torch.bfloat16),
                                              ("eager", torch.float32)])
def test_extreme_attention_scores_give_a_finite_loss_without_clamping(attention, dtype):
    model = tiny_gpt2(attention).to(dtype)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(300.0)  # query and key scaled: scores of order 1e4 and more
    batch = ids()
    outputs = model(input_ids=batch, labels=batch, output_attentions=attention == "eager")
    assert torch.isfinite(outputs.loss)
    if attention == "eager":
        probabilities = outputs.attentions[0]
        assert probabilities.max() > 0.99  # saturated, as clamping to [-10, 10] would forbid, yet finite
        assert torch.isfinite(probabilities).all()
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_no_label_smoothing_so_the_loss_is_the_cross_entropy_perplexity_and_bits_per_char_need(tmp_path):
    _, values = plan_and_arguments("cpu", tmp_path, global_batch_size=16, per_device_batch_size=16)
    assert TrainingArguments(**values).label_smoothing_factor == 0.0
    model, batch = tiny_gpt2(), ids()
    outputs = model(input_ids=batch, labels=batch)
    plain = torch.nn.functional.cross_entropy(outputs.logits[:, :-1].reshape(-1, outputs.logits.shape[-1]),
                                              batch[:, 1:].reshape(-1))
    torch.testing.assert_close(outputs.loss, plain)
