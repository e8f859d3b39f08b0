"""The memory model against what autograd really saves, and the per-device batch it decides for every
shipped model size on every preset's GPU (fabricated facts, the real plan)."""

import dataclasses
import statistics

import pytest
import torch

from gpt2zh.config import load_config
from gpt2zh.config.loader import read_yaml_mapping
from gpt2zh.errors import UserError
from gpt2zh.hardware.facts import GpuFacts
from gpt2zh.hardware.presets import available_presets, load_preset
from gpt2zh.resolution import resolve
from gpt2zh.training.batch_fit import batch_split, divisors_up_to
from gpt2zh.training.memory_model import (
    ModelShape,
    Setup,
    estimate_memory,
    loss_saved_bytes_per_token,
    model_saved_bytes_per_token,
)
from gpt2zh.training.plan import model_shape, plan_training
from tests.conftest import REPO, fabricate

MODEL_CONFIGS = ["demo", "gpt2-small", "gpt2-medium", "gpt2-large"]
GPU_PRESETS = [name for name in available_presets() if name != "cpu"]
# The per-GPU batches of PITFALLS.md G15's table, for GPT-2 small at block 1024.
GUIDE_BATCHES = {"a100-40g": 48, "a100-80g": 64, "rtx4090": 32, "rtx5090": 48, "t4": 8}


def _saved_bytes(config, batch: int, precision: str, checkpointing: bool, body_only: bool) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one real forward pass (parameters excluded)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()  # what the Trainer calls: non-reentrant by default
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.randint(0, config.vocab_size, (batch, config.n_positions))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.transformer(ids) if body_only else model(ids, labels=ids)
    return sum(size for pointer, size in seen.items() if pointer not in parameters)


@pytest.mark.parametrize(("layers", "hidden", "heads", "block", "attention", "precision", "dropout", "checkpointing",
                          "activation"), [
    (2, 128, 4, 64, "sdpa", "bf16", 0.0, False, "gelu_pytorch_tanh"),
    (3, 192, 6, 128, "sdpa", "fp32", 0.0, False, "gelu_pytorch_tanh"),
    (2, 128, 4, 128, "eager", "bf16", 0.0, False, "gelu_pytorch_tanh"),
    (2, 128, 8, 256, "eager", "fp32", 0.1, False, "gelu_pytorch_tanh"),
    (2, 128, 4, 64, "eager", "bf16", 0.1, False, "gelu_pytorch_tanh"),
    (4, 128, 4, 128, "sdpa", "bf16", 0.0, True, "gelu_pytorch_tanh"),
    (2, 128, 4, 128, "sdpa", "bf16", 0.0, False, "gelu_new"),
])
def test_the_activation_estimate_matches_the_bytes_autograd_saves_within_10_percent(
        layers, hidden, heads, block, attention, precision, dropout, checkpointing, activation):
    """Per extra sequence (2 sequences minus 1 cancels autocast's cached weight copies), for the model body
    and for the loss, in a real forward pass under bf16 autocast (or fp32)."""
    from transformers import GPT2Config

    vocab = 600
    config = GPT2Config(vocab_size=vocab, n_positions=block, n_embd=hidden, n_layer=layers, n_head=heads,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, attn_implementation=attention,
                        activation_function=activation, bos_token_id=0, eos_token_id=0)
    shape = ModelShape(layers, heads, hidden, block, vocab, dropout, activation)
    setup = Setup(block, precision, attention, False, checkpointing)
    per_token = {part: (_saved_bytes(config, 2, precision, checkpointing, part == "body")
                        - _saved_bytes(config, 1, precision, checkpointing, part == "body")) / block
                 for part in ("body", "whole")}
    lm_head_input = (2 if precision == "bf16" else 4) * hidden  # saved by the head, outside model.transformer
    body_estimate = model_saved_bytes_per_token(shape, setup) - lm_head_input
    assert body_estimate == pytest.approx(per_token["body"], rel=0.1)  # measured: within 1 %
    loss_estimate = loss_saved_bytes_per_token(shape) + lm_head_input
    assert loss_estimate == pytest.approx(per_token["whole"] - per_token["body"], rel=0.1)


def test_the_models_built_here_use_the_fused_gelu_that_saves_fewer_activations():
    from gpt2zh.config.schema import ModelConfig
    from gpt2zh.manifests import TokenizerManifest
    from gpt2zh.training.model import gpt2_config

    tokenizer = TokenizerManifest(fingerprint="", vocab_size=4000, special_tokens={},
                                  special_token_ids={"bos": 1, "eos": 1, "pad": 2})
    config = gpt2_config(ModelConfig(), tokenizer, "sdpa")
    assert config.activation_function == "gelu_pytorch_tanh"
    shape = ModelShape(12, 12, 768, 1024, 4000)
    setup = Setup(1024, "bf16", "sdpa", False, False)
    composite = dataclasses.replace(shape, activation="gelu_new")
    assert model_saved_bytes_per_token(composite, setup) > 1.5 * model_saved_bytes_per_token(shape, setup)


def _plan(model: str, facts, **command_line):
    """The plan stage 3 makes for configs/<model>.yaml on facts, with the preset that matches them."""
    path = REPO / "configs" / f"{model}.yaml"
    resolved = resolve((str(path), read_yaml_mapping(path)), command_line, facts)
    config = resolved.config
    return config, plan_training(config, facts, facts.world_size, None, resolved.origin)


@pytest.mark.parametrize("model", MODEL_CONFIGS)
@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_every_model_size_gets_the_largest_batch_that_fits_each_presets_gpu(model, preset):
    """Within the memory model at the preset's share, the global batch exact, and the next larger divisor
    (up to the preset's batch) over it: no batch copied from another size or card (PT12)."""
    facts = fabricate(preset)
    try:
        config, plan = _plan(model, facts)
    except UserError as err:  # the one impossible pairing: a model whose states alone overflow the card
        assert (model, preset) == ("gpt2-large", "t4"), err.one_line()
        assert "\n" not in err.one_line() and "adamw_8bit" in err.one_line()
        return
    gpu = facts.gpus[0]
    limit = gpu.memory_gib * config.training.gpu_memory_fraction
    assert plan.global_batch_size == config.training.global_batch_size
    assert plan.memory.total <= limit
    shape = model_shape(config)
    setup = Setup(config.data.block_size, plan.precision, plan.attention, False, plan.activation_checkpointing,
                  chunked_loss=True)
    assert plan.chunked_loss is True and plan.memory == estimate_memory(shape, setup, plan.per_device_batch_size)
    larger = [d for d in divisors_up_to(config.training.global_batch_size, config.training.per_device_batch_size)
              if d > plan.per_device_batch_size]
    if larger:
        assert estimate_memory(shape, setup, larger[0]).total > limit
        assert any(f"per-device batch {plan.per_device_batch_size} instead of" in note for note in plan.notes)


@pytest.mark.parametrize("chunked_loss", [True, False])
@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_gpt2_small_keeps_the_guides_per_gpu_batch_where_it_fits_and_says_why_where_not(preset, chunked_loss):
    """At 32,000 pieces the plain loss's logits keep GPT-2 small under the guide's batch on three cards (the
    README shows why); the chunked loss (the default) fits it on every card."""
    facts = fabricate(preset)
    config, plan = _plan("gpt2-small", facts, **{"training.chunked_loss": chunked_loss})
    wanted = GUIDE_BATCHES.get(preset, load_preset(preset).training["per_device_batch_size"])
    setup = Setup(1024, plan.precision, plan.attention, False, False, chunked_loss=chunked_loss)
    fits = estimate_memory(model_shape(config), setup, wanted).total <= facts.gpus[0].memory_gib * 0.9
    assert fits is (chunked_loss or preset not in ("a100-40g", "rtx4090", "rtx5090"))
    divides, _ = batch_split(config.training.global_batch_size, wanted, 1)  # 64 does not divide 480: 60
    if fits:
        assert plan.per_device_batch_size == divides
        assert not any("needs an estimated" in note for note in plan.notes)
    else:
        note = next(note for note in plan.notes if "instead of" in note)
        assert f"{plan.per_device_batch_size} instead of {wanted} (from preset {preset})" in note
        assert f"{wanted} needs an estimated" in note and facts.gpus[0].name in note and "PT12" in note


def test_a_batch_of_one_that_does_not_fit_turns_checkpointing_on_and_compile_off_saying_why():
    small_card = GpuFacts("NVIDIA GeForce RTX 3070", 7.8, (8, 6))
    facts = dataclasses.replace(fabricate("rtx4090"), gpus=(small_card,))
    config = load_config(REPO / "configs" / "gpt2-medium.yaml",
                         {"training.torch_compile": True, "training.per_device_batch_size": 8,
                          "training.precision": "bf16"})
    plan = plan_training(config, facts, 1, None)
    assert plan.activation_checkpointing is True and plan.torch_compile is False
    assert any(note.startswith("activation checkpointing on: batch 1 needs an estimated") for note in plan.notes)
    assert any("checkpointing wins here" in note and "PITFALLS.md G1" in note for note in plan.notes)
    assert plan.memory.total <= 7.8 * 0.9 < estimate_memory(
        model_shape(config), Setup(1024, "bf16", plan.attention, False, False), 1).total


def test_a_model_that_fits_nowhere_on_the_card_is_one_line_naming_the_estimate_and_what_would_fit():
    config = load_config(REPO / "configs" / "gpt2-large.yaml", {})
    with pytest.raises(UserError) as caught:
        plan_training(config, fabricate("t4"), 1, None)
    line = caught.value.one_line()
    assert "\n" not in line and "Tesla T4 (14.6 GiB)" in line and "even with activation checkpointing" in line
    assert "--optimization-optimizer adamw_8bit" in line and "a GPU with at least" in line
    eight_bit = load_config(REPO / "configs" / "gpt2-large.yaml", {"optimization.optimizer": "adamw_8bit"})
    from gpt2zh.training.plan import Probe

    plan = plan_training(eight_bit, fabricate("t4"), 1, Probe(True, "stepped"))
    assert plan.optimizer == "adamw_bnb_8bit" and plan.memory.total <= 14.6 * 0.9


def test_ddp_buckets_and_8bit_states_change_the_estimate_by_their_bytes_per_parameter():
    shape = ModelShape(12, 12, 768, 1024, 32000)
    one = estimate_memory(shape, Setup(1024, "bf16", "sdpa", False, False, 1), 8)
    many = estimate_memory(shape, Setup(1024, "bf16", "sdpa", False, False, 8), 8)
    eight_bit = estimate_memory(shape, Setup(1024, "bf16", "sdpa", True, False, 1), 8)
    n = shape.parameters
    assert many.gradients - one.gradients == pytest.approx(4 * n / 2**30)
    two = estimate_memory(shape, Setup(1024, "bf16", "sdpa", False, False, 2), 8)
    assert two.gradients == many.gradients  # DDP's buckets from the second process on
    assert one.optimizer_states - eight_bit.optimizer_states == pytest.approx(6 * n / 2**30)
    assert shape.parameters == 110_418_432  # GPT-2 small with a 32,000-piece vocabulary (lm_head tied)


def test_a_model_too_large_for_the_gpu_is_refused_before_stage_1_runs(tmp_path):
    """preflight makes stage 3's plan first: hours of stages 1-2 are not spent on a run that cannot train."""
    from gpt2zh.preflight import preflight
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import STAGES, StageRequest

    path = REPO / "configs" / "gpt2-large.yaml"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("今天天气很好，我们去公园散步。\n" * 20000, encoding="utf-8")
    # a global batch this corpus can fill (PITFALLS.md NU7 would refuse gpt2-large's 480 blocks first)
    command_line = {"data.files": [str(corpus)], "training.global_batch_size": 8}
    request = StageRequest(resolve((str(path), read_yaml_mapping(path)), command_line, fabricate("t4")),
                           RunDir(tmp_path / "run"), overrides=command_line)
    with pytest.raises(UserError, match="do not fit on Tesla T4"):
        preflight(request, [(info, False) for info in STAGES[:3]])
    assert not (tmp_path / "run").exists()



def test_the_parts_the_autograd_count_cannot_see_follow_their_stated_rules():
    """fp16 costs what bf16 costs; checkpointing adds one recomputed block; the loss peaks at 14 bytes a token
    per vocabulary entry in half precision and 12 in fp32; a CPU has no CUDA reserve."""
    from gpt2zh.training.batch_fit import BatchAsk, fit_batch
    from gpt2zh.training.memory_model import (
        activation_bytes_per_token,
        block_bytes_per_token,
        logits_peak_bytes_per_token,
    )

    shape = ModelShape(12, 12, 768, 1024, 32000)
    bf16, fp16 = Setup(1024, "bf16", "sdpa", False, False), Setup(1024, "fp16", "sdpa", False, False)
    assert estimate_memory(shape, bf16, 8) == estimate_memory(shape, fp16, 8)
    checkpointed = dataclasses.replace(bf16, activation_checkpointing=True)
    assert activation_bytes_per_token(shape, checkpointed) == \
        model_saved_bytes_per_token(shape, checkpointed) + block_bytes_per_token(shape, bf16)
    assert model_saved_bytes_per_token(shape, checkpointed) == 4 * 768 + 2 * 768 + 16 + 12 * 4 * 768
    assert logits_peak_bytes_per_token(shape, bf16) == 14 * 32000
    assert logits_peak_bytes_per_token(shape, Setup(1024, "fp32", "sdpa", False, False)) == 12 * 32000
    assert fit_batch(shape, bf16, BatchAsk(480, 16, None, 0.9), None).estimate.reserve == 0.0


def test_a_smaller_gpu_memory_fraction_gives_a_smaller_batch_within_it():
    config, full = _plan("gpt2-medium", fabricate("a100-80g"))
    _, half = _plan("gpt2-medium", fabricate("a100-80g"), **{"training.gpu_memory_fraction": 0.5})
    assert half.memory.total <= 79.2 * 0.5 < full.memory.total
    assert half.per_device_batch_size < full.per_device_batch_size
    assert "(at most 50 %)" in half.batch_reason


def test_the_error_names_the_gpu_size_that_would_fit_and_offers_8bit_adam_only_where_it_fits():
    import math

    from gpt2zh.training.batch_fit import BatchAsk, fit_batch

    shape = ModelShape(36, 20, 1280, 1024, 32000)
    checkpointed = Setup(1024, "bf16", "sdpa", False, True)
    need = estimate_memory(shape, checkpointed, 1).total
    tiny = GpuFacts("NVIDIA GeForce RTX 3060 Ti", 7.8, (8, 6))  # 751 M parameters' 8-bit states alone overflow it
    with pytest.raises(UserError) as caught:
        fit_batch(shape, Setup(1024, "bf16", "sdpa", False, False), BatchAsk(480, 8, None, 0.9), tiny)
    line = caught.value.one_line()
    assert f"a GPU with at least {math.ceil(need / 0.9)} GiB" in line and "adamw_8bit" not in line


def test_the_plan_uses_the_trained_tokenizers_vocabulary_not_the_configs(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from gpt2zh.hardware import facts
    from gpt2zh.manifests import TokenizerManifest
    from gpt2zh.plan_command import plan_for
    from gpt2zh.rundir import RunDir

    RunDir(tmp_path).tokenizer.mkdir()
    TokenizerManifest(fingerprint="x", vocab_size=8000, special_tokens={}, special_token_ids={}).write(
        RunDir(tmp_path).tokenizer)
    monkeypatch.setattr(facts, "collect_facts", lambda: fabricate("a100-80g"))
    path = REPO / "configs" / "gpt2-small.yaml"
    resolved = resolve((str(path), read_yaml_mapping(path)), {}, fabricate("a100-80g"))
    record = plan_for(SimpleNamespace(config=resolved.config, resolved=resolved, run_dir=RunDir(tmp_path)))
    assert record["vocab_size"] == 8000 and record["parameters"] == ModelShape(12, 12, 768, 1024, 8000).parameters


def test_stage_3_keeps_the_highest_measured_peak_in_its_history_and_summary(tmp_path, monkeypatch):
    """torch.cuda answers by hand (no CUDA here); the summary is built by stage 3's own summary_of."""
    from types import SimpleNamespace

    from gpt2zh.training.build import Training
    from gpt2zh.training.continuation import planned_schedule
    from gpt2zh.training.final import summary_of
    from gpt2zh.training.history import HistoryCallback, RunFigures, read_history

    figures = RunFigures(tokens_per_step=4096, train_blocks=100, samples_per_step=4, tokens_per_char=0.7, unigram=7.0,
                         flops_token=1e9, peak_tflops=312.0, num_gpus=1, memory_estimate_gib=41.234,
                         peak_note="A100 dense bf16 peak 312 TFLOP/s")
    history = HistoryCallback(tmp_path / "history.csv", figures, skipped=lambda: 0)
    state = SimpleNamespace(global_step=0)
    history.on_train_begin(None, state, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for step, peak in ((1, 30.0), (2, 38.5)):
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None, peak=peak: int(peak * 2**30))
        state.global_step = step
        history.on_log(None, state, None, logs={"loss": 5.0, "learning_rate": 1e-4, "grad_norm": 1.0})
    assert [row["gpu_peak_gib"] for row in read_history(tmp_path / "history.csv")] == [30.0, 38.5]
    config, plan = _plan("gpt2-small", fabricate("a100-80g"))
    model = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=2), nonfinite=SimpleNamespace(skipped=0),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m), model=model,
                              base_model=None, schedule=planned_schedule(config))
    request = SimpleNamespace(config=config, resolved=SimpleNamespace(facts=fabricate("a100-80g"), preset=None))
    inputs = SimpleNamespace(tokenizer=SimpleNamespace(vocab_size=32000), block_size=1024, dataset_folders=[])
    summary = summary_of(Training(request, inputs, plan, {}, {}), trainer, history, 1.0)
    assert summary["memory"]["measured_peak_gib"] == 38.5
    assert summary["memory"]["estimate_gib"] == plan.memory.as_dict()
    rows = read_history(tmp_path / "history.csv")
    assert [row["mfu"] for row in rows] == [round(row["tokens_per_second"] * 1e9 / 312e12, 4) for row in rows]
    assert summary["throughput"] == {
        "tokens_per_second": round(statistics.median(row["tokens_per_second"] for row in rows), 1),
        "mfu": round(statistics.median(row["mfu"] for row in rows), 4), "peak": "A100 dense bf16 peak 312 TFLOP/s"}


def test_the_chunked_loss_counts_two_gradients_and_one_chunk_instead_of_every_tokens_logits():
    from gpt2zh.training.memory_model import GIB, chunk_tokens

    shape = ModelShape(2, 4, 64, 128, 32000)
    chunk = chunk_tokens(32000)
    assert chunk == 64 * 2**20 // (4 * 32000) == 524
    for precision, copies, half in (("bf16", 6, 2), ("fp32", 4, 4)):
        plain = estimate_memory(shape, Setup(128, precision, "sdpa", False, False), 8)
        chunked = estimate_memory(shape, Setup(128, precision, "sdpa", False, False, chunked_loss=True), 8)
        tokens = 8 * 128
        assert chunked.logits_and_loss == pytest.approx(
            (4 * tokens * 64 + 4 * 32000 * 64 + chunk * 32000 * copies) / GIB)
        assert plain.activations - chunked.activations == pytest.approx(tokens * half * 64 / GIB)  # no lm_head input
        assert chunked.logits_and_loss < plain.logits_and_loss / 4
    small = estimate_memory(shape, Setup(128, "fp32", "sdpa", False, False, chunked_loss=True), 1)
    assert small.logits_and_loss == pytest.approx((4 * 128 * 64 + 4 * 32000 * 64 + 128 * 32000 * 4) / GIB)


def test_each_part_of_the_estimate_is_its_stated_bytes_per_parameter_and_per_token():
    """The module docstring's counts by hand, for 2 layers of h = 64 with 4 heads, block 128 (4 x 128 = 512
    scores a token), 1,000 pieces and a batch of 3 (384 tokens)."""
    from gpt2zh.training.memory_model import GIB, MemoryEstimate

    shape = ModelShape(2, 4, 64, 128, 1000)
    n, matmul = 172_288, 163_456  # V·h + s·h + L·(12h² + 13h) + 2h; L·(12h² + 9h) + V·h
    assert (shape.parameters, shape.matmul_weights) == (n, matmul)
    gelu_new, dropout = dataclasses.replace(shape, activation="gelu_new"), dataclasses.replace(shape, dropout=0.1)
    both = dataclasses.replace(gelu_new, dropout=0.1)
    # outside the blocks: 4h + (2 or 4)h + 16 (+ 4h with dropout); a block: 8h + 16·(2 or 4)·h, eager 14·(2 or 4)·h
    # + 512·(6 or 4), gelu_new + 12·(2 or 4)·h, dropout + 2·(2 or 4)·h (+ eager 512·(2 or 8))
    cases = [  # shape, setup, (bytes a parameter in weights, gradients, optimizer), activation bytes a token, loss
        (shape, Setup(128, "bf16", "sdpa", False, False), (4 * n + 2 * matmul, 4 * n, 8 * n), 400 + 2 * 2560, 14_000),
        (shape, Setup(128, "fp16", "sdpa", False, False), (4 * n + 2 * matmul, 4 * n, 8 * n), 400 + 2 * 2560, 14_000),
        (shape, Setup(128, "fp32", "sdpa", False, False), (4 * n, 4 * n, 8 * n), 528 + 2 * 4608, 12_000),
        (shape, Setup(128, "bf16", "eager", False, False), (4 * n + 2 * matmul, 4 * n, 8 * n), 400 + 2 * 5376, 14_000),
        (shape, Setup(128, "fp32", "eager", True, False), (4 * n, 4 * n, 2 * n), 528 + 2 * 6144, 12_000),
        (gelu_new, Setup(128, "bf16", "sdpa", False, False, 2), (4 * n + 2 * matmul, 8 * n, 8 * n), 400 + 2 * 4096,
         14_000),
        (both, Setup(128, "fp32", "sdpa", False, False), (4 * n, 4 * n, 8 * n), 784 + 2 * 8192, 12_000),
        (dropout, Setup(128, "bf16", "eager", False, False), (4 * n + 2 * matmul, 4 * n, 8 * n), 656 + 2 * 6656,
         14_000),
        (dropout, Setup(128, "fp32", "eager", False, False), (4 * n, 4 * n, 8 * n), 784 + 2 * 10752, 12_000),
        # checkpointing keeps each block's fp32 input (4h) and recomputes one whole block
        (shape, Setup(128, "bf16", "sdpa", False, True), (4 * n + 2 * matmul, 4 * n, 8 * n), 400 + 2 * 256 + 2560,
         14_000),
    ]
    for model, setup, (weights, gradients, optimizer), activations, loss in cases:
        assert estimate_memory(model, setup, 3) == MemoryEstimate(
            weights / GIB, gradients / GIB, optimizer / GIB, 384 * activations / GIB, 384 * loss / GIB, 0.75), setup


def test_the_estimate_as_a_record_lists_its_total_first_and_every_part_rounded_to_hundredths():
    from gpt2zh.training.memory_model import MemoryEstimate

    estimate = MemoryEstimate(1.231, 2.342, 3.453, 4.564, 5.676, 0.75)
    assert list(estimate.as_dict().items()) == [
        ("total", 18.02), ("weights", 1.23), ("gradients", 2.34), ("optimizer_states", 3.45), ("activations", 4.56),
        ("logits_and_loss", 5.68), ("reserve", 0.75)]


SMALL = ModelShape(12, 12, 768, 1024, 32000)  # GPT-2 small with a 32,000-piece vocabulary
MEDIUM = ModelShape(24, 16, 1024, 1024, 32000)
BF16 = Setup(1024, "bf16", "sdpa", False, False)
RTX4090 = GpuFacts("NVIDIA GeForce RTX 4090", 23.6, (8, 9))


def _fit(shape, setup, asked, gpu, asked_from=None, fraction=0.9, global_batch=480):
    from gpt2zh.training.batch_fit import BatchAsk, fit_batch

    fit = fit_batch(shape, setup, BatchAsk(global_batch, asked, asked_from, fraction), gpu)
    assert type(fit.accumulation) is int  # a count of steps, also where a division would give 24.0
    return fit


def test_the_batch_is_the_largest_divisor_that_fits_and_the_note_names_the_next_larger_ones_estimates():
    """GPT-2 small in bf16: 18.3 GiB at 20, 21.4 at 24 and 27.7 at 32 against 90 % of 23.6 GiB (21.2)."""
    from gpt2zh.training.batch_fit import BatchFit

    assert _fit(SMALL, BF16, 32, RTX4090, "preset rtx4090") == BatchFit(
        20, 24, False, estimate_memory(SMALL, BF16, 20),
        "the largest that fits: an estimated 18.3 GiB of 23.6 GiB (at most 90 %)",
        "per-device batch 20 instead of 32 (from preset rtx4090): 32 needs an estimated 27.7 GiB and 24, the next "
        "that divides 480, 21.4 GiB, more than 90 % (21.2 GiB) of the 23.6 GiB of NVIDIA GeForce RTX 4090 "
        "(PITFALLS.md PT12), so 20 x 24 accumulation x 1 = 480", None)
    two = dataclasses.replace(BF16, processes=2)  # 240 a process, which 32 does not divide: 30, with DDP's buckets
    assert _fit(SMALL, two, 32, RTX4090).note == (
        "per-device batch 20 instead of 32: 30 needs an estimated 26.5 GiB and 24, the next that divides 240, "
        "21.8 GiB, more than 90 % (21.2 GiB) of the 23.6 GiB of NVIDIA GeForce RTX 4090 (PITFALLS.md PT12), so "
        "20 x 12 accumulation x 2 = 480")
    half = _fit(SMALL, BF16, 32, RTX4090, fraction=0.5)
    assert (half.per_device, half.accumulation, half.reason) == (
        10, 48, "the largest that fits: an estimated 10.4 GiB of 23.6 GiB (at most 50 %)")
    assert "more than 50 % (11.8 GiB) of the 23.6 GiB" in half.note
    a100 = GpuFacts("NVIDIA A100-SXM4-40GB", 39.4, (8, 0))  # 40 fits, and 48, the one asked for, is the next
    assert _fit(SMALL, BF16, 48, a100, "preset a100-40g").note == (
        "per-device batch 40 instead of 48 (from preset a100-40g): 48 needs an estimated 40.2 GiB, more than 90 % "
        "(35.5 GiB) of the 39.4 GiB of NVIDIA A100-SXM4-40GB (PITFALLS.md PT12), so 40 x 12 accumulation x 1 = 480")


def test_a_batch_that_fits_as_asked_says_so_and_without_a_gpu_the_estimate_is_of_ram_without_the_reserve():
    from gpt2zh.training.batch_fit import BatchFit

    assert _fit(SMALL, BF16, 16, RTX4090, "preset rtx4090") == BatchFit(
        16, 30, False, estimate_memory(SMALL, BF16, 16), "16 fits: an estimated 15.1 GiB of 23.6 GiB (at most 90 %)",
        None, None)
    checkpointed = dataclasses.replace(BF16, activation_checkpointing=True)
    assert _fit(SMALL, checkpointed, 16, None) == BatchFit(
        16, 30, True, dataclasses.replace(estimate_memory(SMALL, checkpointed, 16), reserve=0.0),
        "no GPU: the batch is not limited by the memory model (an estimated 9.8 GiB of RAM)", None, None)


def test_an_estimate_exactly_at_the_limit_fits():
    """Within the limit means up to and including it (the whole card here: fraction 1)."""
    card = GpuFacts("NVIDIA GeForce RTX 4090", estimate_memory(SMALL, BF16, 16).total, (8, 9))
    assert _fit(SMALL, BF16, 16, card, fraction=1.0).per_device == 16


def test_a_batch_of_one_that_fits_only_with_activation_checkpointing_turns_it_on_and_says_why():
    """GPT-2 medium: batch 1 needs 7.8 GiB without checkpointing, 6.9 with it, 7.5 at batch 2; the limit is 7.2."""
    from gpt2zh.training.batch_fit import BatchFit

    card = GpuFacts("NVIDIA GeForce RTX 3070", 8.0, (8, 6))
    checkpointed = dataclasses.replace(BF16, activation_checkpointing=True)
    assert _fit(MEDIUM, BF16, 8, card, "the command line") == BatchFit(
        1, 480, True, estimate_memory(MEDIUM, checkpointed, 1),
        "the largest that fits: an estimated 6.9 GiB of 8 GiB (at most 90 %)",
        "per-device batch 1 instead of 8 (from the command line): 8 needs an estimated 10.9 GiB and 2, the next that "
        "divides 480, 7.5 GiB, more than 90 % (7.2 GiB) of the 8 GiB of NVIDIA GeForce RTX 3070 (PITFALLS.md PT12), "
        "so 1 x 480 accumulation x 1 = 480",
        "activation checkpointing on: batch 1 needs an estimated 7.8 GiB without it, more than 90 % of the 8 GiB of "
        "NVIDIA GeForce RTX 3070")


def _refusal(shape, setup, memory_gib, fraction=0.9) -> str:
    with pytest.raises(UserError) as caught:
        _fit(shape, setup, 8, GpuFacts("NVIDIA GeForce RTX 3070", memory_gib, (8, 6)), fraction=fraction)
    return caught.value.one_line()


def test_a_model_that_does_not_fit_is_told_each_way_that_would_fit_with_its_estimate():
    """GPT-2 medium at batch 1 (GiB, bf16): AdamW 6.95 with checkpointing (6.67 / 6.52 / 6.45 at blocks 512 / 256 /
    128); 8-bit Adam 5.88 without checkpointing, 5.07 with it. The comments give each limit (90 % of the card)."""
    head = ("336 M parameters at block 1024 do not fit on NVIDIA GeForce RTX 3070 ({} GiB): batch 1 needs an estimated "
            "6.9 GiB even with activation checkpointing (5.6 GiB of it weights, gradients and optimizer states), more "
            "than 90 % of it (PITFALLS.md PT12) — use ")
    assert _refusal(MEDIUM, BF16, 6.0) == head.format("6") + \
        "--optimization-optimizer adamw_8bit (5.1 GiB), or a GPU with at least 8 GiB, or a smaller model"  # 5.4 GiB
    assert _refusal(MEDIUM, BF16, 7.3) == head.format("7.3") + (  # 6.57 GiB: 8-bit Adam without checkpointing
        "--optimization-optimizer adamw_8bit (5.9 GiB), or --data-block-size 256 (stage 2 rebuilds the blocks), or a "
        "GPU with at least 8 GiB, or a smaller model")
    assert _refusal(MEDIUM, BF16, 7.2) == head.format("7.2") + (  # 6.48 GiB
        "--optimization-optimizer adamw_8bit (5.9 GiB), or --data-block-size 128 (stage 2 rebuilds the blocks), or a "
        "GPU with at least 8 GiB, or a smaller model")
    assert _refusal(MEDIUM, BF16, 5.0) == head.format("5") + "a GPU with at least 8 GiB, or a smaller model"
    # 8-bit Adam already used: the block or the card (5.1 GiB with checkpointing; 4.65 at 256, 4.58 at 128; 4.59)
    assert _refusal(MEDIUM, dataclasses.replace(BF16, eight_bit_adam=True), 5.1).endswith(
        "— use --data-block-size 128 (stage 2 rebuilds the blocks), or a GPU with at least 6 GiB, or a smaller model")


def test_ways_whose_estimate_is_exactly_the_limit_are_offered():
    eight_bit = estimate_memory(MEDIUM, dataclasses.replace(BF16, eight_bit_adam=True), 1).total  # 5.875 GiB
    assert "use --optimization-optimizer adamw_8bit (5.9 GiB), or a GPU" in _refusal(MEDIUM, BF16, eight_bit, 1.0)
    block_256 = estimate_memory(MEDIUM, Setup(256, "bf16", "sdpa", False, True), 1).total  # 6.52 GiB
    assert "or --data-block-size 256 (stage 2" in _refusal(MEDIUM, BF16, block_256, 1.0)


def test_the_refusal_rounds_the_parameter_count_to_millions():
    """337,500,160 parameters (a 33,340-piece vocabulary) are 338 M."""
    shape = dataclasses.replace(MEDIUM, vocab_size=33_340)
    assert shape.parameters == 337_500_160
    assert _refusal(shape, BF16, 5.0).startswith("338 M parameters at block 1024 do not fit")
