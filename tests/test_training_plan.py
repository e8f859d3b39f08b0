"""Hardware facts -> training decisions, with fabricated A100 / 4090 / 5090 / T4 / H100 / CPU facts."""

import dataclasses
import inspect
from pathlib import Path

import pytest
from transformers import TrainingArguments

from gpt2zh.config import Config, load_config
from gpt2zh.errors import UserError
from gpt2zh.hardware import presets as presets_module
from gpt2zh.hardware.facts import GpuFacts, HardwareFacts
from gpt2zh.hardware.presets import available_presets, load_preset, preset_layer, resolve_preset
from gpt2zh.training.arguments import argument_values
from gpt2zh.training.batch_fit import batch_split
from gpt2zh.training.plan import (
    Probe,
    check_launch,
    choose_attention,
    choose_compile,
    choose_dataloader,
    choose_optimizer,
    choose_precision,
    plan_training,
)
from tests.conftest import fabricate

# The per-GPU table of PITFALLS.md G15 ("GPU 配置") as the guide prints it (batch_size, compile_mode, 特殊优化),
# independent of our YAML; its T4 row names no compile mode. H100 and CPU have no row there: their presets
# are our own.
GUIDE_GPU_TABLE = {
    "a100-40g": (48, "reduce-overhead", "TF32"), "a100-80g": (64, "reduce-overhead", "TF32"),
    "rtx5090": (48, "max-autotune", None), "rtx4090": (32, "max-autotune", None), "t4": (8, None, "DataParallel"),
}
DEVICES = ["a100-40g", "a100-80g", "rtx4090", "rtx5090", "t4", "h100", "cpu"]  # each has a preset of that name


def config(**training) -> Config:
    cfg = Config()
    for key, value in training.items():
        setattr(cfg.training, key, value)
    return cfg


def with_world(facts: HardwareFacts, world: int) -> HardwareFacts:
    return HardwareFacts(**{**facts.__dict__, "world_size": world})


def test_every_shipped_preset_loads_and_says_what_it_was_verified_on():
    assert set(available_presets()) == set(DEVICES)
    for name in available_presets():
        assert "Verified on" in load_preset(name).path.read_text(encoding="utf-8"), name
    for name, (batch, mode, special) in GUIDE_GPU_TABLE.items():  # the guide's numbers, not our YAML's
        training = load_preset(name).training
        assert (training["per_device_batch_size"], training.get("compile_mode")) == (batch, mode), name
        assert training["torch_compile"] is (mode is not None), name
        if special == "TF32":
            assert training["tf32"] is True, name


@pytest.mark.parametrize("device", DEVICES)
def test_auto_preset_follows_gpu_name_and_memory(device):
    preset, note = resolve_preset("auto", False, fabricate(device))
    assert preset is not None and preset.name == device and "auto" in note


def test_a_gpu_without_a_preset_keeps_the_config_values(tmp_path):
    l4 = HardwareFacts(python_version="3.11", cpu_count=8, torch_version="2.13.0", cuda_available=True,
                       gpus=(GpuFacts("NVIDIA L4", 22.0, (8, 9)),), triton_available=True)
    preset, note = resolve_preset("auto", False, l4)
    assert preset is None and "no preset for NVIDIA L4" in note
    yaml = tmp_path / "l4.yaml"  # hardware values no preset uses
    yaml.write_text("training:\n  global_batch_size: 480\n  per_device_batch_size: 16\n  torch_compile: true\n"
                    "  compile_mode: max-autotune\n  tf32: false\n  dataloader_workers: 3\n", encoding="utf-8")
    plan = plan_training(load_config(yaml, {}, preset_layer(preset)), l4, 1, None)  # as the stage loads it
    assert (plan.per_device_batch_size, plan.gradient_accumulation_steps) == (16, 30)  # fits the L4's 22 GiB
    assert (plan.torch_compile, plan.compile_mode, plan.tf32, plan.dataloader_workers) == \
        (True, "max-autotune", False, 3)
    a100 = fabricate("a100-80g")  # the same file where a preset matches: the preset's values win
    preset, _ = resolve_preset("auto", False, a100)
    plan = plan_training(load_config(yaml, {}, preset_layer(preset)), a100, 1, None)
    assert (plan.per_device_batch_size, plan.compile_mode, plan.tf32) == (60, "reduce-overhead", True)


@pytest.mark.parametrize("preset, device", [("a100-40g", "t4"), ("a100-40g", "cpu"), ("a100-80g", "a100-40g"),
                                            ("cpu", "h100"), ("t4", "rtx4090")])
def test_a_preset_for_other_hardware_is_refused_unless_forced(preset, device):
    with pytest.raises(UserError, match=f"--preset {preset} does not match this machine"):
        resolve_preset(preset, False, fabricate(device))
    chosen, note = resolve_preset(preset, True, fabricate(device))
    assert chosen.name == preset and "forced" in note


def test_unknown_preset_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean --preset a100-40g"):
        resolve_preset("a100-40gb", False, fabricate("a100-40g"))


def test_a_preset_may_only_set_hardware_fields(tmp_path, monkeypatch):
    (tmp_path / "odd.yaml").write_text("match:\n  gpu: A100\ntraining:\n  max_steps: 10\n", encoding="utf-8")
    monkeypatch.setattr(presets_module, "presets_dir", lambda: tmp_path)
    with pytest.raises(UserError, match="training.max_steps is not a hardware field"):
        load_preset("odd")


@pytest.mark.parametrize("global_batch, per_device, world, expected", [
    (480, 48, 1, (48, 10)), (480, 64, 1, (60, 8)), (480, 32, 1, (32, 15)), (480, 8, 2, (8, 30)),
    (16, 16, 1, (16, 1)), (16, 64, 1, (16, 1)), (512, 48, 1, (32, 16)), (12, 5, 1, (4, 3)),
])
def test_accumulation_keeps_the_global_batch_exact(global_batch, per_device, world, expected):
    split = batch_split(global_batch, per_device, world)
    assert split == expected and split[0] * split[1] * world == global_batch
    assert all(type(value) is int for value in split)  # a count of sequences and of steps, not 15.0


def test_a_global_batch_that_processes_cannot_share_is_refused():
    with pytest.raises(UserError) as caught:
        batch_split(16, 8, 3)
    assert caught.value.one_line() == \
        "training.global_batch_size 16 is not divisible by 3 processes — use a multiple of 3"


@pytest.mark.parametrize("device", ["cpu", "a100-80g"])  # without a GPU, and fitted by the memory model
def test_on_two_processes_the_per_device_batch_divides_each_processs_share_of_the_global_batch(device):
    """480 over 2 processes is 240 each, which 32 does not divide (7.5 accumulation steps): 30 x 8 x 2 = 480.
    Fitted against the whole 480, which 32 divides, it would be 32 x (240 // 32 = 7) x 2 = 448, silently."""
    facts = with_world(fabricate(device, count=1 if device == "cpu" else 2), 2)
    plan = plan_training(config(global_batch_size=480, per_device_batch_size=32), facts, 2, None)
    assert (plan.per_device_batch_size, plan.gradient_accumulation_steps, plan.world_size) == (30, 8, 2)
    assert plan.global_batch_size == 480
    assert plan.notes[0].endswith("so 30 x 8 accumulation x 2 = 480"), plan.notes[0]


@pytest.mark.parametrize("device, expected", [("a100-40g", "bf16"), ("h100", "bf16"), ("rtx4090", "bf16"),
                                              ("rtx5090", "bf16"), ("t4", "fp16"), ("cpu", "fp32")])
def test_precision_follows_native_bf16_support(device, expected):
    assert choose_precision("auto", fabricate(device))[0] == expected


def test_precision_asked_for_is_kept_where_it_can_run_and_auto_says_why_it_falls_back_to_fp16():
    assert choose_precision("auto", fabricate("t4")) == ("fp16", "Tesla T4 has no native bf16: fp16 with loss scaling")
    assert choose_precision("auto", fabricate("a100-80g")) == ("bf16", None)
    assert choose_precision("auto", fabricate("cpu")) == ("fp32", None)
    assert choose_precision("bf16", fabricate("a100-80g")) == ("bf16", None)
    assert choose_precision("bf16", fabricate("cpu")) == ("bf16", None)  # CPU autocast has bf16
    assert choose_precision("fp16", fabricate("t4")) == ("fp16", None)
    assert choose_precision("fp32", fabricate("t4")) == ("fp32", None)


def test_impossible_precisions_are_refused():
    with pytest.raises(UserError) as caught:
        choose_precision("bf16", fabricate("t4"))
    assert caught.value.one_line() == ("--training-precision bf16: Tesla T4 (SM 7.5) has no native bf16 and would "
                                       "emulate it slowly — use --training-precision fp16 (loss scaling) or auto")
    with pytest.raises(UserError) as caught:
        choose_precision("fp16", fabricate("cpu"))
    assert caught.value.one_line() == \
        "--training-precision fp16 needs a CUDA GPU — use --training-precision fp32 (or auto) on CPU"


def test_flash_attention_only_where_it_can_run():
    a100 = fabricate("a100-80g")
    assert choose_attention("auto", a100, "bf16") == ("flash_attention_2", None)
    assert choose_attention("auto", a100, "fp16") == ("flash_attention_2", None)
    assert choose_attention("flash_attention_2", a100, "fp16") == ("flash_attention_2", None)
    assert choose_attention("auto", fabricate("a100-80g", flash=None), "bf16") == (
        "sdpa", "flash-attn is not installed or does not import: SDPA attention is used (pip install flash-attn)")
    assert choose_attention("auto", a100, "fp32") == ("sdpa", None)  # FlashAttention-2 could run, not in fp32
    assert choose_attention("auto", fabricate("t4"), "fp16") == (
        "sdpa", "Tesla T4 is SM 7.5; FlashAttention-2 needs SM >= 8.0: SDPA attention is used")
    assert choose_attention("auto", fabricate("cpu"), "fp32") == ("sdpa", None)
    assert choose_attention("eager", a100, "bf16") == ("eager", None)
    assert choose_attention("sdpa", a100, "bf16") == ("sdpa", None)
    with pytest.raises(UserError) as caught:
        choose_attention("flash_attention_2", fabricate("t4"), "fp16")
    assert caught.value.one_line() == ("--model-attention flash_attention_2 cannot run here: Tesla T4 is SM 7.5; "
                                       "FlashAttention-2 needs SM >= 8.0 — use --model-attention auto (SDPA)")
    with pytest.raises(UserError) as caught:
        choose_attention("flash_attention_2", fabricate("h100"), "fp32")
    assert caught.value.one_line() == ("--model-attention flash_attention_2 needs fp16 or bf16, the plan uses fp32 — "
                                       "use --training-precision bf16/fp16 or --model-attention auto")


def test_8bit_adam_is_used_only_after_a_successful_probe():
    gpu, cpu = fabricate("rtx4090"), fabricate("cpu")
    assert choose_optimizer("adamw_8bit", gpu, Probe(True, "stepped")) == ("adamw_bnb_8bit", None)
    assert choose_optimizer("adamw_8bit", gpu, Probe(False, "libbitsandbytes_cuda124.so: cannot open")) == (
        "adamw_torch_fused",
        "8-bit Adam unavailable (libbitsandbytes_cuda124.so: cannot open); using adamw_torch_fused")
    assert choose_optimizer("adamw", gpu, Probe(True, "stepped")) == ("adamw_torch_fused", None)
    assert choose_optimizer("adamw", cpu, None) == ("adamw_torch_fused", None)  # torch >= 2.4 has fused AdamW on CPU
    first = HardwareFacts(python_version="3.11", cpu_count=2, torch_version="2.4.0")
    assert choose_optimizer("adamw", first, None) == ("adamw_torch_fused", None)
    old_cpu = HardwareFacts(python_version="3.11", cpu_count=2, torch_version="2.3.1")
    assert choose_optimizer("adamw", old_cpu, None) == ("adamw_torch", None)
    old_gpu = dataclasses.replace(gpu, torch_version="2.3.1")  # on CUDA the fused kernel is older than 2.4
    assert choose_optimizer("adamw", old_gpu, None) == ("adamw_torch_fused", None)
    assert choose_optimizer("adamw_8bit", old_cpu, None) == (
        "adamw_torch", "8-bit Adam unavailable (not probed); using adamw_torch")


@pytest.mark.parametrize("world", [1, 2])
def test_compile_wins_over_activation_checkpointing_also_under_ddp(world):
    facts = with_world(fabricate("a100-80g"), world)
    choice = choose_compile(
        config(torch_compile=True, compile_mode="reduce-overhead", activation_checkpointing=True), facts)
    assert (choice.on, choice.mode, choice.activation_checkpointing) == (True, "reduce-overhead", False)
    assert "marked as ready twice" in choice.notes[0]
    assert choose_compile(config(activation_checkpointing=True), facts)[2] is True  # alone, it stays


def test_trainer_arguments_follow_the_plan_when_compile_turns_activation_checkpointing_off(tmp_path):
    both = config(global_batch_size=16, per_device_batch_size=16, torch_compile=True, activation_checkpointing=True)
    plan = plan_training(both, fabricate("cpu"), 1, None)
    assert (plan.torch_compile, plan.activation_checkpointing) == (True, False)
    arguments = TrainingArguments(**argument_values(both, plan, tmp_path))
    assert arguments.torch_compile is True and arguments.activation_checkpointing is False
    alone = config(global_batch_size=16, per_device_batch_size=16, activation_checkpointing=True)
    arguments = TrainingArguments(**argument_values(alone, plan_training(alone, fabricate("cpu"), 1, None), tmp_path))
    assert arguments.torch_compile is False and arguments.activation_checkpointing is True


def test_compile_without_a_toolchain_is_turned_off_with_a_reason():
    facts = HardwareFacts(python_version="3.11", cpu_count=2, torch_version="2.13.0", cxx_compiler=False)
    choice = choose_compile(config(torch_compile=True), facts)
    assert choice.on is False and "C++ compiler" in choice.notes[0]


def test_dataloader_has_min_8_cpus_workers_persistent_and_pinned_with_cuda():
    assert choose_dataloader(config(), fabricate("a100-80g")) == (8, True, True)  # 16 cores -> 8, pinned
    assert choose_dataloader(config(), fabricate("cpu")) == (2, True, False)      # 2 cores, no CUDA, no pinning
    assert choose_dataloader(config(dataloader_workers=0), fabricate("cpu")) == (0, False, False)
    assert choose_dataloader(config(dataloader_workers=1), fabricate("t4")) == (1, True, True)


def test_more_processes_than_gpus_names_the_world_size_and_the_gpus():
    with pytest.raises(UserError) as caught:
        check_launch(fabricate("t4", count=2), local_world_size=4)
    assert caught.value.one_line() == ("world_size is 4 on this node, but only 2 GPU(s) are available — launch with "
                                       "--nproc_per_node 2 (or fewer)")
    with pytest.raises(UserError, match="world_size is 2 on this node, but only 1 GPU"):
        check_launch(with_world(fabricate("t4"), 2), local_world_size=2)
    check_launch(with_world(fabricate("t4", count=2), 2), local_world_size=2)  # Kaggle 2 x T4 via torchrun
    check_launch(with_world(fabricate("cpu"), 2), local_world_size=2)        # gloo on CPU


def test_several_gpus_without_a_launcher_get_torchrun_advice():
    with pytest.raises(UserError) as caught:
        check_launch(fabricate("t4", count=2), local_world_size=1)
    assert caught.value.one_line() == (
        "2 GPUs found but no launcher: the Trainer would fall back to DataParallel, which is slow — use `torchrun "
        "--nproc_per_node 2 -m gpt2zh pretrain ...`, or CUDA_VISIBLE_DEVICES=0 for one GPU")
    check_launch(fabricate("t4"), local_world_size=1)  # one GPU needs no launcher


@pytest.mark.parametrize("device", DEVICES)
def test_full_plan_per_device_and_its_trainer_arguments(device, tmp_path):
    facts = fabricate(device)
    preset, _ = resolve_preset("auto", False, facts)
    cfg = config(global_batch_size=480, **preset.training)
    plan = plan_training(cfg, facts, 1, None)
    assert plan.global_batch_size == 480
    assert plan.tf32 is (device not in ("t4", "cpu"))
    assert plan.precision == {"t4": "fp16", "cpu": "fp32"}.get(device, "bf16")
    values = argument_values(cfg, plan, tmp_path)
    accepted = set(inspect.signature(TrainingArguments.__init__).parameters)
    assert set(values) <= accepted
    assert not {"gradient_checkpointing", "gradient_checkpointing_kwargs", "evaluation_strategy"} & set(values)
    assert ("tf32" in values) is plan.tf32  # tf32=True raises on CPU, so it is never passed there
    assert values["ignore_data_skip"] is True and values["dataloader_drop_last"] is False


def test_tf32_is_off_on_a_t4_without_a_preset_and_the_plan_says_why(tmp_path):
    asked = config(global_batch_size=16)  # tf32 defaults to on; no preset turns it off here
    assert asked.training.tf32 is True
    plan = plan_training(asked, fabricate("t4"), 1, None)
    assert plan.tf32 is False and "TF32 off: Tesla T4 is older than Ampere (PITFALLS.md G12)" in plan.notes
    assert "tf32" not in argument_values(asked, plan, tmp_path)
    ampere = plan_training(asked, fabricate("a100-40g"), 1, None)
    assert ampere.tf32 is True and argument_values(asked, ampere, tmp_path)["tf32"] is True
    assert not any("TF32" in note for note in ampere.notes)


def test_full_determinism_is_an_opt_in_switch(tmp_path):
    facts = fabricate("cpu")
    plan = plan_training(config(global_batch_size=16), facts, 1, None)
    assert argument_values(config(global_batch_size=16), plan, tmp_path)["full_determinism"] is False
    assert argument_values(config(global_batch_size=16, full_determinism=True), plan, tmp_path)["full_determinism"]


def test_cpu_trainer_arguments_build_without_any_warning(tmp_path, recwarn):
    facts = fabricate("cpu")
    plan = plan_training(config(global_batch_size=16, per_device_batch_size=16), facts, 1, None)
    TrainingArguments(**argument_values(config(global_batch_size=16), plan, tmp_path))
    assert [str(w.message) for w in recwarn] == []


def test_activation_checkpointing_reaches_the_trainer_under_its_current_name_without_a_warning(tmp_path, recwarn):
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; the old name warns."""
    wanted = config(global_batch_size=16, per_device_batch_size=16, activation_checkpointing=True)
    plan = plan_training(wanted, fabricate("cpu"), 1, None)
    arguments = TrainingArguments(**argument_values(wanted, plan, tmp_path))
    assert arguments.activation_checkpointing is True
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize(("device", "base", "command_line", "note"), [
    ("cpu", {"global_batch_size": 8, "per_device_batch_size": 8}, {},
     "per-device batch 8 instead of 16 (from preset cpu, which replaced 8 from configs/demo.yaml): the global "
     "batch 8 over 1 process(es) leaves 8 per process, so 8 x 1 accumulation x 1 = 8"),
    ("rtx4090", {"global_batch_size": 100}, {"training.per_device_batch_size": 24},
     "per-device batch 20 instead of 24 (from the command line): 24 does not divide the 100 sequences each process "
     "takes per step (global batch 100 over 1 process(es)), and 20 is the largest number below it that does, so "
     "20 x 5 accumulation x 1 = 100"),
    ("cpu", {"global_batch_size": 8, "per_device_batch_size": 12, "preset": "none"}, {},
     "per-device batch 8 instead of 12 (from configs/demo.yaml): the global batch 8 over 1 process(es) leaves 8 "
     "per process, so 8 x 1 accumulation x 1 = 8"),
    ("t4", {"global_batch_size": 4}, {},
     "per-device batch 4 instead of 8 (from preset t4): the global batch 4 over 1 process(es) leaves 4 per "
     "process, so 4 x 1 accumulation x 1 = 4"),
])
def test_a_changed_per_device_batch_names_who_asked_for_it_and_why_it_changed(device, base, command_line, note):
    """The preset by name (and the config value it replaced), the config file or the command line."""
    from gpt2zh.resolution import resolve
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import StageRequest
    from gpt2zh.training.check import make_plan

    layer = ("configs/demo.yaml", {"training": base})
    request = StageRequest(resolve(layer, command_line, fabricate(device)), RunDir(Path(".")), overrides=command_line)
    plan = make_plan(request)
    assert note in plan.notes


def _plan_on(model: str, device: str, **command_line):
    """The plan stage 3 makes for configs/<model>.yaml on a fabricated card, its preset applied."""
    from gpt2zh.config.loader import read_yaml_mapping
    from gpt2zh.resolution import resolve

    path = Path(__file__).parents[1] / "configs" / f"{model}.yaml"
    facts = fabricate(device)
    resolved = resolve((str(path), read_yaml_mapping(path)), command_line, facts)
    return plan_training(resolved.config, facts, 1, None, resolved.origin)


def test_compile_is_chosen_by_whether_it_pays_back_over_the_run():
    """PITFALLS.md NU15: the RTX 4090 preset asks for max-autotune (~5 min of autotuning)."""
    demo = _plan_on("demo", "rtx4090", **{"training.max_steps": 60})  # well under a second of compute
    assert (demo.torch_compile, demo.compile_mode) == (False, None)
    assert any(note.startswith("torch.compile off: a 60-step run") and "no mode pays back" in note
               for note in demo.notes), demo.notes
    short = _plan_on("gpt2-small", "rtx4090", **{"training.max_steps": 60})  # ~8 min: plain compile pays back
    assert (short.torch_compile, short.compile_mode) == (True, "default")
    assert short.compile_reason.startswith("a 60-step run, ~8 min at the reference speed, saves ~2 min for ~1 min")
    assert any("mode default instead of max-autotune" in note and "PITFALLS.md NU15" in note for note in short.notes)
    full = _plan_on("gpt2-small", "rtx4090")  # 4,500 steps, ~10 h: autotuning pays back many times over
    assert (full.torch_compile, full.compile_mode) == (True, "max-autotune") and "saves ~3.5 h" in full.compile_reason
    a100 = _plan_on("gpt2-small", "a100-80g", **{"training.max_steps": 100})  # reduce-overhead steps down too
    assert a100.compile_mode == "default"


def test_compile_typed_on_the_command_line_stays_even_where_it_does_not_pay_back():
    typed = _plan_on("gpt2-small", "rtx4090", **{"training.max_steps": 60, "training.compile_mode": "max-autotune"})
    assert (typed.torch_compile, typed.compile_mode) == (True, "max-autotune")
    assert any(note.startswith("torch.compile mode max-autotune kept as the command line asks") for note in typed.notes)


def test_compile_switched_on_by_the_command_line_stays_on_a_short_run_with_the_asked_mode():
    """--training-torch-compile typed, the mode from the preset: the command line asked for compiling."""
    typed = _plan_on("demo", "rtx4090", **{"training.max_steps": 60, "training.torch_compile": True})
    assert (typed.torch_compile, typed.compile_mode) == (True, "max-autotune")
    assert any(note.startswith("torch.compile mode max-autotune kept as the command line asks") for note in typed.notes)


def test_compile_without_a_speed_estimate_stays_as_asked():
    """No peak figure for an RTX 3080 (or a CPU): nothing to weigh the cost against."""
    card = HardwareFacts(python_version="3.11", cpu_count=8, torch_version="2.13.0", cuda_available=True,
                         gpus=(GpuFacts("NVIDIA GeForce RTX 3080", 10.0, (8, 6)),), triton_available=True)
    plan = plan_training(config(torch_compile=True, compile_mode="max-autotune", max_steps=10), card, 1, None)
    assert (plan.torch_compile, plan.compile_mode, plan.compile_reason) == (True, "max-autotune", "")


@pytest.mark.parametrize("kind", ["cosine", "wsd", "constant"])
def test_every_step_trains_at_the_schedules_rate_with_the_arguments_stage_3_passes(tmp_path, kind):
    """PretrainTrainer.create_scheduler builds pipeline/training/schedule.py's schedule: nothing in TrainingArguments
    (transformers' own scheduler setting included) moves the learning rate of any step."""
    from gpt2zh.training.continuation import planned_schedule
    from gpt2zh.training.trainer import PretrainTrainer
    from tests.tiny_models import tiny_gpt2

    cfg = config(global_batch_size=4, per_device_batch_size=4, max_steps=12, dataloader_workers=0)
    cfg.optimization.lr_schedule, cfg.optimization.warmup_steps = kind, 3
    plan = plan_training(cfg, fabricate("cpu"), 1, None)
    schedule = planned_schedule(cfg)
    args = TrainingArguments(**argument_values(cfg, plan, tmp_path))
    trainer = PretrainTrainer(model=tiny_gpt2(64, seed=0), args=args, eval_dataset=[{"input_ids": [1, 2]}],
                              stream_seed=0, samples_per_step=4, resume_step=0, max_nonfinite=1, schedule=schedule)
    trainer.create_optimizer_and_scheduler(num_training_steps=cfg.training.max_steps)
    rates = []
    for _ in range(cfg.training.max_steps):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])  # the rate this step trains at
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    peak = cfg.optimization.learning_rate
    assert rates == pytest.approx([peak * schedule.factor(step) for step in range(1, cfg.training.max_steps + 1)])
    assert rates[0] == pytest.approx(peak / 3)  # never a step at rate 0 (PITFALLS.md RJ6)


@pytest.mark.parametrize(("asked", "steps", "step_seconds", "typed", "expected"), [
    ("max-autotune", 60, None, False, ("max-autotune", "", None)),  # no speed estimate: nothing to weigh
    ("max-autotune", 60, 0.01, False, (None, "", (
        "torch.compile off: a 60-step run, under a second at the reference speed, would save under a second for ~5 min "
        "of compiling (max-autotune), and no mode pays back (PITFALLS.md NU15)"))),
    ("default", 100, 0.01, True, ("default", "a 100-step run, ~1 s at the reference speed, saves under a second for "
                                             "~1 min of compiling", (
        "torch.compile mode default kept as the command line asks, though a 100-step run, ~1 s at the reference speed, "
        "saves under a second for ~1 min of compiling (PITFALLS.md NU15)"))),
    # 0.30 x 200 s saves exactly the 60 s compiling costs: nothing gained, so off unless typed
    ("default", 200, 1.0, False, (None, "", (
        "torch.compile off: a 200-step run, ~3 min at the reference speed, would save ~1 min for ~1 min of compiling "
        "(default), and no mode pays back (PITFALLS.md NU15)"))),
    ("default", 200, 1.0, True, ("default", "a 200-step run, ~3 min at the reference speed, saves ~1 min for ~1 min of "
                                            "compiling", (
        "torch.compile mode default kept as the command line asks, though a 200-step run, ~3 min at the reference "
        "speed, saves ~1 min for ~1 min of compiling (PITFALLS.md NU15)"))),
    # 202 s: default nets 0.6 s, the only mode that gains anything
    ("default", 202, 1.0, False, ("default", "a 202-step run, ~3 min at the reference speed, saves ~1 min for ~1 min "
                                             "of compiling", None)),
    ("default", 202, 1.0, True, ("default", "a 202-step run, ~3 min at the reference speed, saves ~1 min for ~1 min "
                                            "of compiling", None)),
    ("max-autotune", 202, 1.0, False, ("default", "a 202-step run, ~3 min at the reference speed, saves ~1 min for ~1 "
                                                  "min of compiling", (
        "torch.compile mode default instead of max-autotune: a 202-step run, ~3 min at the reference speed, would save "
        "~1 min for ~5 min of compiling with max-autotune, and ~1 min for ~1 min of compiling with default "
        "(PITFALLS.md NU15)"))),
    # 5,400 s is 1.5 h; reduce-overhead saves 0.33 x 5,400 = 1,782 s, 29.7 min, for 90 s (1.5 min, rounded to even)
    ("reduce-overhead", 5400, 1.0, False, ("reduce-overhead", "a 5,400-step run, ~1.5 h at the reference speed, saves "
                                                              "~30 min for ~2 min of compiling", None)),
    # 8,100.9 s is 2.25025 h; 0.30 x 8,100.9 s = 40.5 min
    ("default", 9000, 0.9001, False, ("default", "a 9,000-step run, ~2.3 h at the reference speed, saves ~41 min for "
                                                 "~1 min of compiling", None)),
])
def test_compile_pays_back_when_what_it_saves_over_the_run_exceeds_what_compiling_costs(
        asked, steps, step_seconds, typed, expected):
    """PITFALLS.md NU15, (mode, reason, note) exactly: the figures in words at their rounding edges."""
    from gpt2zh.training.plan import compile_mode_that_pays

    assert compile_mode_that_pays(asked, steps, step_seconds, typed) == expected


def test_the_compile_choice_names_each_mode_and_checkpointing_decision_with_its_reason():
    from gpt2zh.training.plan import CompileChoice

    a100 = fabricate("a100-80g")
    asked = config(torch_compile=True, compile_mode="max-autotune", activation_checkpointing=True, max_steps=202)
    assert choose_compile(asked, a100, 1.0) == CompileChoice(True, "default", False, [
        "torch.compile mode default instead of max-autotune: a 202-step run, ~3 min at the reference speed, would save "
        "~1 min for ~5 min of compiling with max-autotune, and ~1 min for ~1 min of compiling with default "
        "(PITFALLS.md NU15)",
        "activation checkpointing off: with torch.compile (and under DDP) it fails with 'marked as ready twice' "
        "(PITFALLS.md G1); compile kept"], "a 202-step run, ~3 min at the reference speed, saves ~1 min for ~1 min of "
                                           "compiling")
    assert choose_compile(asked, a100, 0.01, typed=True) == CompileChoice(True, "max-autotune", False, [
        "torch.compile mode max-autotune kept as the command line asks, though a 202-step run, ~2 s at the reference "
        "speed, saves under a second for ~5 min of compiling (PITFALLS.md NU15)",
        "activation checkpointing off: with torch.compile (and under DDP) it fails with 'marked as ready twice' "
        "(PITFALLS.md G1); compile kept"], "a 202-step run, ~2 s at the reference speed, saves under a second for ~5 "
                                           "min of compiling")
    # where no mode pays back, checkpointing stays as asked
    assert choose_compile(asked, a100, 0.01) == CompileChoice(False, None, True, [
        "torch.compile off: a 202-step run, ~2 s at the reference speed, would save under a second for ~5 min of "
        "compiling (max-autotune), and no mode pays back (PITFALLS.md NU15)"], "")
    no_triton = dataclasses.replace(a100, triton_available=False)
    assert choose_compile(asked, no_triton, 1.0) == (False, None, True, ["torch.compile off: Triton is missing"], "")
    assert choose_compile(config(compile_mode="max-autotune", max_steps=202), a100, 1.0) == (False, None, False, [], "")


def test_the_model_shape_and_block_come_from_the_tokenizer_and_dataset_once_they_exist_else_the_config():
    from gpt2zh.training.memory_model import ModelShape
    from gpt2zh.training.plan import PlanSizes, model_shape, plan_sizes

    cfg = Config()
    cfg.model.dropout = 0.1
    assert model_shape(cfg) == ModelShape(12, 12, 768, 1024, 32000, 0.1, "gelu_pytorch_tanh")
    assert model_shape(cfg, 8000, "gelu_new") == ModelShape(12, 12, 768, 1024, 8000, 0.1, "gelu_new")
    assert plan_sizes(cfg) == PlanSizes(ModelShape(12, 12, 768, 1024, 32000, 0.1), 1024)
    assert plan_sizes(cfg, 8000, 512) == PlanSizes(ModelShape(12, 12, 768, 1024, 8000, 0.1), 512)


def _settings(**groups) -> Config:
    """A config with group__field values set, e.g. optimization__optimizer="adamw_8bit"."""
    cfg = Config()
    for dotted, value in groups.items():
        group, name = dotted.split("__")
        setattr(getattr(cfg, group), name, value)
    return cfg


def test_a_t4_plan_lists_every_adjustment_in_order_the_batch_first():
    """fp16 for bf16, TF32 off, SDPA for FlashAttention-2, AdamW for 8-bit Adam, and 24 a device not dividing 100."""
    from gpt2zh.training.memory_model import ModelShape, Setup, estimate_memory
    from gpt2zh.training.plan import PlanSizes, TrainingPlan

    shape = ModelShape(4, 4, 256, 256, 4000)
    cfg = _settings(training__global_batch_size=100, training__per_device_batch_size=24,
                    optimization__optimizer="adamw_8bit")
    origins = {"training.per_device_batch_size": "the command line"}
    plan = plan_training(cfg, fabricate("t4"), 1, Probe(False, "libbitsandbytes_cuda124.so: cannot open"),
                         lambda dotted: origins.get(dotted, "configs/x.yaml"), PlanSizes(shape, 256))
    assert plan == TrainingPlan(
        device="cuda", world_size=1, per_device_batch_size=20, gradient_accumulation_steps=5, precision="fp16",
        tf32=False, attention="sdpa", optimizer="adamw_torch_fused", torch_compile=False, compile_mode=None,
        activation_checkpointing=False, chunked_loss=True, dataloader_workers=8, persistent_workers=True,
        pin_memory=True, notes=[
            "per-device batch 20 instead of 24 (from the command line): 24 does not divide the 100 sequences each "
            "process takes per step (global batch 100 over 1 process(es)), and 20 is the largest number below it that "
            "does, so 20 x 5 accumulation x 1 = 100",
            "Tesla T4 has no native bf16: fp16 with loss scaling",
            "TF32 off: Tesla T4 is older than Ampere (PITFALLS.md G12)",
            "Tesla T4 is SM 7.5; FlashAttention-2 needs SM >= 8.0: SDPA attention is used",
            "8-bit Adam unavailable (libbitsandbytes_cuda124.so: cannot open); using adamw_torch_fused"],
        compile_reason="",
        memory=estimate_memory(shape, Setup(256, "fp16", "sdpa", False, False, chunked_loss=True), 20),
        gpu_memory_gib=14.6, batch_reason="20 fits: an estimated 1.1 GiB of 14.6 GiB (at most 90 %)",
        optimizer_reason="libbitsandbytes_cuda124.so: cannot open")
    # GPT-2 small at 16 a device needs 15.1 GiB with the plain loss: the memory model's note comes first, the
    # division's is not added
    memory_bound = plan_training(_settings(training__per_device_batch_size=16, training__chunked_loss=False),
                                 fabricate("t4"), 1, None, lambda dotted: "preset t4")
    assert memory_bound.per_device_batch_size == 12 and memory_bound.notes == [
        "per-device batch 12 instead of 16 (from preset t4): 16 needs an estimated 15.1 GiB and 15, the next that "
        "divides 480, 14.3 GiB, more than 90 % (13.1 GiB) of the 14.6 GiB of Tesla T4 (PITFALLS.md PT12), so 12 x 40 "
        "accumulation x 1 = 480",
        "Tesla T4 has no native bf16: fp16 with loss scaling",
        "TF32 off: Tesla T4 is older than Ampere (PITFALLS.md G12)",
        "Tesla T4 is SM 7.5; FlashAttention-2 needs SM >= 8.0: SDPA attention is used"]


def test_a_plan_for_two_a100s_uses_the_datasets_block_the_tokenizers_vocabulary_and_ddps_buckets():
    """8-bit Adam after a good probe, FlashAttention-2, compile at the asked mode where it pays back over 4,500 steps
    (~60 min at the reference speed for GPT-2 small at block 512), checkpointing off for it."""
    from gpt2zh.training.memory_model import ModelShape, Setup, estimate_memory
    from gpt2zh.training.plan import PlanSizes, TrainingPlan

    shape = ModelShape(12, 12, 768, 1024, 8000)  # the config says 32,000 pieces and block 1024
    cfg = _settings(training__per_device_batch_size=64, training__torch_compile=True,
                    training__compile_mode="reduce-overhead", training__activation_checkpointing=True,
                    optimization__optimizer="adamw_8bit", training__max_steps=4500, training__dataloader_workers=3)
    two = with_world(fabricate("a100-80g", count=2), 2)
    plan = plan_training(cfg, two, 2, Probe(True, "stepped"), lambda dotted: "preset a100-80g", PlanSizes(shape, 512))
    assert plan == TrainingPlan(
        device="cuda", world_size=2, per_device_batch_size=60, gradient_accumulation_steps=4, precision="bf16",
        tf32=True, attention="flash_attention_2", optimizer="adamw_bnb_8bit", torch_compile=True,
        compile_mode="reduce-overhead", activation_checkpointing=False, chunked_loss=True, dataloader_workers=3,
        persistent_workers=True, pin_memory=True, notes=[
            "per-device batch 60 instead of 64 (from preset a100-80g): 64 does not divide the 240 sequences each "
            "process takes per step (global batch 480 over 2 process(es)), and 60 is the largest number below it that "
            "does, so 60 x 4 accumulation x 2 = 480",
            "activation checkpointing off: with torch.compile (and under DDP) it fails with 'marked as ready twice' "
            "(PITFALLS.md G1); compile kept"],
        compile_reason="a 4,500-step run, ~60 min at the reference speed, saves ~20 min for ~2 min of compiling",
        memory=estimate_memory(shape, Setup(512, "bf16", "flash_attention_2", True, False, 2, True), 60),
        gpu_memory_gib=79.2, batch_reason="60 fits: an estimated 13.0 GiB of 79.2 GiB (at most 90 %)",
        optimizer_reason="stepped")


def test_where_only_activation_checkpointing_makes_batch_1_fit_it_wins_over_compile_and_the_plan_says_so():
    """GPT-2 large on a 16 GiB laptop RTX 4090: 15.5 GiB at batch 1 without checkpointing, 14.0 with it (limit
    14.4). Compile was asked with checkpointing, so compile had turned it off: that note goes, as does compile."""
    from gpt2zh.training.memory_model import ModelShape, Setup, estimate_memory
    from gpt2zh.training.plan import PlanSizes, TrainingPlan

    shape = ModelShape(36, 20, 1280, 1024, 32000)
    laptop = dataclasses.replace(fabricate("rtx4090"), gpus=(GpuFacts("NVIDIA GeForce RTX 4090 Laptop GPU", 16.0,
                                                                      (8, 9)),))
    cfg = _settings(training__torch_compile=True, training__compile_mode="max-autotune",
                    training__activation_checkpointing=True, training__chunked_loss=False)
    plan = plan_training(cfg, laptop, 1, None, None, PlanSizes(shape, 1024))
    assert plan == TrainingPlan(
        device="cuda", world_size=1, per_device_batch_size=1, gradient_accumulation_steps=480, precision="bf16",
        tf32=True, attention="flash_attention_2", optimizer="adamw_torch_fused", torch_compile=False,
        compile_mode=None, activation_checkpointing=True, chunked_loss=False, dataloader_workers=8,
        persistent_workers=True, pin_memory=True, notes=[
            "per-device batch 1 instead of 8: 8 needs an estimated 18.6 GiB and 2, the next that divides 480, 14.6 "
            "GiB, more than 90 % (14.4 GiB) of the 16 GiB of NVIDIA GeForce RTX 4090 Laptop GPU (PITFALLS.md PT12), "
            "so 1 x 480 accumulation x 1 = 480",
            "activation checkpointing on: batch 1 needs an estimated 15.5 GiB without it, more than 90 % of the 16 GiB "
            "of NVIDIA GeForce RTX 4090 Laptop GPU",
            "torch.compile off: activation checkpointing is needed to fit and the two together fail with 'marked as "
            "ready twice' (PITFALLS.md G1); checkpointing wins here"],
        compile_reason="", memory=estimate_memory(shape, Setup(1024, "bf16", "flash_attention_2", False, True), 1),
        gpu_memory_gib=16.0, batch_reason="the largest that fits: an estimated 14.0 GiB of 16 GiB (at most 90 %)",
        optimizer_reason="")


def test_a_cpu_plan_has_no_gpu_figures_and_names_no_one_for_a_batch_nobody_asked_for():
    from gpt2zh.training.memory_model import ModelShape, Setup, estimate_memory
    from gpt2zh.training.plan import TrainingPlan

    cfg = _settings(training__global_batch_size=8, training__per_device_batch_size=16,
                    training__activation_checkpointing=True)
    shape = ModelShape(12, 12, 768, 1024, 32000)
    assert plan_training(cfg, fabricate("cpu"), 1, None) == TrainingPlan(
        device="cpu", world_size=1, per_device_batch_size=8, gradient_accumulation_steps=1, precision="fp32",
        tf32=False, attention="sdpa", optimizer="adamw_torch_fused", torch_compile=False, compile_mode=None,
        activation_checkpointing=True, chunked_loss=True, dataloader_workers=2, persistent_workers=True,
        pin_memory=False, notes=[
            "per-device batch 8 instead of 16: the global batch 8 over 1 process(es) leaves 8 per process, so 8 x 1 "
            "accumulation x 1 = 8"], compile_reason="",
        memory=dataclasses.replace(
            estimate_memory(shape, Setup(1024, "fp32", "sdpa", False, True, chunked_loss=True), 8), reserve=0.0),
        gpu_memory_gib=None, batch_reason="no GPU: the batch is not limited by the memory model (an estimated 2.5 "
                                          "GiB of RAM)", optimizer_reason="")


def test_in_fp32_compile_is_weighed_at_the_tf32_peak_and_eager_attention_is_counted():
    """In fp32 the matmuls run on TF32 tensor cores (pipeline/hardware/peaks.py): the reference speed is a share of
    that peak, so a 60-step run is worth only the cheapest compile mode. Eager attention keeps its scores, which the
    memory model counts."""
    from gpt2zh.training.memory_model import Setup, estimate_memory
    from gpt2zh.training.plan import model_shape

    cfg = _settings(training__precision="fp32", model__attention="eager", training__torch_compile=True,
                    training__compile_mode="max-autotune", training__max_steps=60, training__per_device_batch_size=16)
    plan = plan_training(cfg, fabricate("a100-80g"), 1, None, lambda dotted: "configs/x.yaml")
    assert (plan.torch_compile, plan.compile_mode, plan.compile_reason, plan.attention, plan.notes) == (
        True, "default", "a 60-step run, ~8 min at the reference speed, saves ~2 min for ~1 min of compiling", "eager",
        ["torch.compile mode default instead of max-autotune: a 60-step run, ~8 min at the reference speed, would "
         "save ~3 min for ~5 min of compiling with max-autotune, and ~2 min for ~1 min of compiling with default "
         "(PITFALLS.md NU15)"])
    setup = Setup(1024, "fp32", "eager", False, False, chunked_loss=True)
    assert plan.memory == estimate_memory(model_shape(cfg), setup, 16)
