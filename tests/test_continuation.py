"""Training on: a higher max_steps continues from the last checkpoint with a re-planned schedule (RA2), and a
checkpoint of one process continues on two (RA3). Real runs of the tiny model through the real command line."""

import json
import logging
import math
import shutil
import typing

import pytest
import torch

from gpt2zh.cli import main
from gpt2zh.config.schema import Config, OptimizationConfig
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import weights_inputs
from gpt2zh.manifests import ModelManifest
from gpt2zh.training.checkpoints import read_marker, write_marker
from gpt2zh.training.continuation import (
    continued_schedule,
    keep_previous_model,
    only_the_plan_changed,
    planned_schedule,
    say_process_change,
)
from gpt2zh.training.schedule import Schedule
from tests.conftest import assert_same_weights, copy_run, one_error_line, pretrain_args, run_two_processes, weights
from tests.test_stage_pretrain import read_history

PEAK, FLOOR = 1e-3, 1e-4  # the demo config: learning rate 1e-3, min_lr_ratio 0.1


# -- the schedule, as pure functions ---------------------------------------------------------------------------


# every schedule the config accepts: a new one is held to the same invariants without editing this file
SCHEDULES = typing.get_args(typing.get_type_hints(OptimizationConfig)["lr_schedule"])


@pytest.mark.parametrize("kind", SCHEDULES)
def test_a_re_plan_never_changes_the_factors_of_steps_already_taken(kind):
    original = Schedule(kind, warmup_steps=10, max_steps=100, min_ratio=0.1, decay_ratio=0.2)
    extended = original.extended(60, 300).extended(200, 400)
    assert [extended.factor(s) for s in range(1, 61)] == [original.factor(s) for s in range(1, 61)]
    assert extended.factor(400) == pytest.approx(1.0 if kind == "constant" else 0.1)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_every_schedule_the_config_accepts_is_described_for_the_card_and_for_a_re_plan(kind):
    replanned = Schedule(kind, warmup_steps=10, max_steps=100, min_ratio=0.1).extended(95, 300)
    assert replanned.describe_extension().startswith("training.max_steps 100 -> 300 at step 95: ")
    assert replanned.in_words().startswith("linear warmup then ") and "re-planned at step 95" in replanned.in_words()


def test_a_constant_schedule_stays_at_the_peak_however_often_it_is_extended():
    extended = Schedule("constant", 10, 100, 0.1).extended(100, 110).extended(110, 130)
    assert [extended.factor(s) for s in range(11, 131)] == [1.0] * 120


def test_cosine_re_plans_its_decay_from_the_current_factor_without_a_jump():
    original = Schedule("cosine", 10, 100, 0.1)
    extended = original.extended(60, 200)
    assert extended.factor(61) == pytest.approx(original.factor(60), rel=1e-3)  # continuous at the re-plan
    factors = [extended.factor(s) for s in range(61, 201)]
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False)) and factors[-1] == pytest.approx(0.1)


def test_wsd_still_stable_just_decays_later_and_a_decayed_one_re_warms_before_decaying_again():
    original = Schedule("wsd", 10, 100, 0.1, decay_ratio=0.2)  # stable until 80, decays 81..100
    later = original.extended(50, 200)  # in its stable phase: the same as a 200-step plan from the start
    assert [later.factor(s) for s in range(1, 201)] == pytest.approx(
        [Schedule("wsd", 10, 200, 0.1, 0.2).factor(s) for s in range(1, 201)])
    decayed = original.extended(100, 200)  # finished at 0.1 x peak
    assert decayed.factor(101) == pytest.approx(0.1 + 0.9 / 10) and decayed.factor(110) == pytest.approx(1.0)
    assert decayed.factor(160) == 1.0 and decayed.factor(200) == pytest.approx(0.1)


def test_the_schedule_round_trips_through_the_checkpoint_marker():
    schedule = Schedule("wsd", 10, 100, 0.1, 0.2).extended(100, 200)
    assert Schedule.from_dict(json.loads(json.dumps(schedule.as_dict()))) == schedule


@pytest.mark.parametrize("kind", SCHEDULES)
def test_a_second_re_plan_continues_from_the_rate_the_first_one_reached(kind):
    """Trained on twice (100 -> 200 steps at step 60, then 200 -> 300 at step 150): the second re-plan starts where
    the first had brought the rate, not where a plan of 200 steps made at the start would be by then."""
    once = Schedule(kind, warmup_steps=10, max_steps=100, min_ratio=0.1, decay_ratio=0.2).extended(60, 200)
    twice = once.extended(150, 300)
    assert [twice.factor(s) for s in range(1, 151)] == [once.factor(s) for s in range(1, 151)]
    assert twice.factor(151) == pytest.approx(once.factor(150), abs=1e-3)  # cosine: 0.205 x peak, not 0.246


def _half_cosine(low: float, high: float, done: int, steps: int) -> float:
    return low + (high - low) * 0.5 * (1 + math.cos(math.pi * done / steps))


def test_each_planned_schedule_trains_every_step_at_its_exact_factor_and_past_the_end_at_the_last_one():
    cosine = [0.25, 0.5, 0.75, 1.0, *(_half_cosine(0.1, 1.0, k, 8) for k in range(1, 9)), 0.1, 0.1]
    assert [Schedule("cosine", 4, 12, 0.1).factor(s) for s in range(1, 15)] == pytest.approx(cosine, rel=1e-12)
    assert Schedule("cosine", 4, 5, 0.1).factor(5) == pytest.approx(0.1)  # one step of decay ends at the floor
    # wsd: 3 steps of decay (0.3 x 10) after a stable phase; past the end it stays at the minimum
    wsd = [0.5, *[1.0] * 6, 0.7, 0.4, 0.1, 0.1, 0.1]
    assert [Schedule("wsd", 2, 10, 0.1, 0.3).factor(s) for s in range(1, 13)] == pytest.approx(wsd, rel=1e-12)
    assert [Schedule("wsd", 2, 10, 0.1, 0.01).factor(s) for s in (9, 10)] == pytest.approx([1.0, 0.1])  # >= 1 step
    assert [Schedule("wsd", 8, 10, 0.1, 0.5).factor(s) for s in (8, 9, 10)] == pytest.approx([1.0, 0.55, 0.1])
    assert [Schedule("constant", 4, 12, 0.1).factor(s) for s in range(1, 14)] == [0.25, 0.5, 0.75] + [1.0] * 10


def test_a_re_plan_decays_from_the_factor_reached_to_the_minimum_at_the_new_end_exactly():
    cosine = Schedule("cosine", 4, 12, 0.1).extended(8, 13)  # step 8 trained at 0.55
    expected = [_half_cosine(0.1, 0.55, k, 5) for k in range(1, 6)] + [0.1, 0.1]
    assert [cosine.factor(s) for s in range(9, 16)] == pytest.approx(expected, rel=1e-12)
    assert Schedule("cosine", 4, 12, 0.1).extended(8, 9).factor(9) == pytest.approx(0.1)  # one step left
    # wsd after its decay began (0.4 at step 9): re-warms over 2 steps, stable, then 6 steps of decay (0.3 x 20)
    wsd = Schedule("wsd", 2, 10, 0.1, 0.3).extended(9, 20)
    expected = [0.7, 1.0, 1.0, 1.0, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1, 0.1, 0.1]
    assert [wsd.factor(s) for s in range(10, 23)] == pytest.approx(expected, rel=1e-12)
    assert [Schedule("wsd", 2, 10, 0.1, 0.05).extended(10, 15).factor(s) for s in range(11, 16)] == pytest.approx(
        [0.55, 1.0, 1.0, 1.0, 0.1])  # a one-step decay still ends at the minimum
    assert Schedule("wsd", 1, 10, 0.1, 0.3).extended(10, 20).factor(11) == 1.0  # one warmup step: at the peak


def test_a_wsd_run_re_planned_near_its_end_decays_on_from_its_rate_to_the_minimum_without_a_jump():
    """Too few steps left to re-warm and decay again (or a stable run whose new decay would have begun before
    the re-plan): the rate goes down from where it is to the minimum at the last step, never up, never stuck
    at the peak (PITFALLS.md OB17)."""
    wsd = Schedule("wsd", 10, 100, 0.1)  # decays over 81..100 (0.2 x 100)
    cases = {(50, 55): [0.82, 0.64, 0.46, 0.28, 0.1],  # stable at 50, 5 steps left: a 5-step decay from now
             (90, 95): [0.46, 0.37, 0.28, 0.19, 0.1]}  # 0.55 x peak at 90: decays on, no 10-step re-warm
    for (step, last), expected in cases.items():
        assert [wsd.extended(step, last).factor(s) for s in range(step + 1, last + 1)] == pytest.approx(expected)
    for last in (63, 64):  # one more step moves the 13-step decay by one step, nothing else
        factors = [wsd.extended(50, last).factor(s) for s in range(51, last + 1)]
        assert factors[-13:] == pytest.approx([1 - 0.9 * k / 13 for k in range(1, 14)]) and factors[:-13] == [1.0] * (
            last - 63)
    finished = Schedule("wsd", 3, 12, 0.1).extended(12, 16)  # at the minimum, 4 steps: no 3-step re-warm to a drop
    assert [finished.factor(s) for s in range(13, 17)] == pytest.approx([0.1] * 4)
    assert finished.describe_extension() == (
        "training.max_steps 12 -> 16 at step 12: wsd had begun its decay (0.1 x peak) and 4 steps are too few to "
        "re-warm over 3 and decay over 3: it decays on to 0.1 x peak at step 16")
    assert wsd.extended(50, 55).describe_extension() == (
        "training.max_steps 100 -> 55 at step 50: wsd stays at the peak and decays over the last 5 steps")


def test_a_re_plan_in_warmup_or_in_the_stable_phase_is_the_new_plan_from_the_start():
    in_warmup = Schedule("cosine", 10, 100, 0.1).extended(5, 200)
    assert [in_warmup.factor(s) for s in range(1, 201)] == [Schedule("cosine", 10, 200, 0.1).factor(s)
                                                             for s in range(1, 201)]
    shorter = Schedule("wsd", 10, 100, 0.1).extended(50, 70)  # still stable at 50: decays over 56..70
    assert [shorter.factor(s) for s in range(1, 71)] == [Schedule("wsd", 10, 70, 0.1).factor(s) for s in range(1, 71)]
    no_warmup = Schedule("constant", 0, 100, 0.1).extended(95, 99)
    assert [no_warmup.factor(s) for s in range(96, 100)] == [1.0] * 4


def test_a_re_plan_records_where_it_was_made_and_the_factor_that_step_trained_at():
    original = Schedule("cosine", 4, 12, 0.1)
    assert original.extended(12, 12) is original
    assert original.extended(6, 20) == Schedule("cosine", 4, 20, 0.1, replanned_at=6,
                                                start_factor=original.factor(6), previous=original)
    one_step_warmup = Schedule("cosine", 1, 12, 0.1)
    assert one_step_warmup.extended(1, 20).start_factor == 1.0
    no_warmup = Schedule("cosine", 0, 12, 0.1)  # before any step: nothing trained, and no warmup to divide by
    assert no_warmup.extended(0, 20) == Schedule("cosine", 0, 20, 0.1, replanned_at=0, start_factor=0.0,
                                                 previous=no_warmup)


def test_each_re_plan_is_said_in_exact_words_for_the_log_and_the_model_card():
    cosine = Schedule("cosine", 10, 1000, 0.1)
    assert (cosine.describe_extension(), cosine.in_words()) == ("cosine schedule over 1,000 steps",
                                                                "linear warmup then cosine decay")
    head = "training.max_steps 1,000 -> 2,000 at step"
    assert cosine.extended(10, 2000).describe_extension() == (  # warmup just done: the decay is re-planned
        f"{head} 10: cosine decay re-planned from the current 1 x peak to 0.1 x peak at step 2,000")
    assert cosine.extended(5, 2000).describe_extension() == (
        f"{head} 5: the cosine schedule continues unchanged (warmup is not repeated)")
    constant = Schedule("constant", 10, 1000, 0.1).extended(500, 2000)
    assert constant.describe_extension() == f"{head} 500: the constant schedule continues unchanged (warmup is not " \
                                            "repeated)"
    assert constant.in_words() == "linear warmup then a constant rate, re-planned at step 500 for a longer run"
    stable = Schedule("wsd", 10, 1000, 0.1, 0.2).extended(600, 2000)
    assert stable.describe_extension() == f"{head} 600: wsd stays at the peak and decays over the last 400 steps"
    decaying = stable.extended(1900, 3000)  # 300 of its 400 decay steps done: 0.325 x peak
    assert decaying.describe_extension() == (
        "training.max_steps 2,000 -> 3,000 at step 1,900: wsd had begun its decay (0.325 x peak): re-warms to the "
        "peak over 10 steps, then decays over the last 600")
    assert decaying.in_words() == ("linear warmup then a stable rate and a linear decay over the last 600 steps "
                                   "(wsd), re-planned at step 600, 1,900 for a longer run")
    with pytest.raises(ValueError, match="^no words for a re-planned linear schedule$"):
        Schedule("linear", 10, 1000, 0.1).extended(500, 2000).describe_extension()


def _trainer_resumed(tmp_path, schedule: Schedule, checkpoint):
    """PretrainTrainer with the arguments stage 3 passes, checkpoint's optimizer and scheduler loaded by the
    Trainer's own code (None: a fresh start)."""
    from transformers import TrainingArguments

    from gpt2zh.training.arguments import argument_values
    from gpt2zh.training.plan import plan_training
    from gpt2zh.training.trainer import PretrainTrainer
    from tests.conftest import fabricate
    from tests.test_training_plan import config
    from tests.tiny_models import tiny_gpt2

    cfg = config(global_batch_size=4, per_device_batch_size=4, max_steps=schedule.max_steps, dataloader_workers=0)
    cfg.optimization.lr_schedule, cfg.optimization.warmup_steps = schedule.kind, schedule.warmup_steps
    args = TrainingArguments(**argument_values(cfg, plan_training(cfg, fabricate("cpu"), 1, None), tmp_path))
    trainer = PretrainTrainer(model=tiny_gpt2(64, seed=0), args=args, eval_dataset=[{"input_ids": [1, 2]}],
                              stream_seed=0, samples_per_step=4, resume_step=0, max_nonfinite=1, schedule=schedule)
    trainer.create_optimizer_and_scheduler(num_training_steps=schedule.max_steps)
    trainer._load_optimizer_and_scheduler(str(checkpoint) if checkpoint else None)
    return trainer


def _rates_until_checkpoint(trainer, steps: int, checkpoint) -> list[float]:
    """The rate each of `steps` optimizer steps trains at; then the states saved as stage 3 saves them."""
    rates = []
    for _ in range(steps):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    checkpoint.mkdir()
    trainer._save_optimizer_and_scheduler(str(checkpoint))
    return rates


@pytest.mark.parametrize(("kind", "first_stop", "second_stop"), [
    ("cosine", 8, 12),  # stopped mid-run both times: the old plan's next rate differs from the new one's
    ("wsd", 11, 14),    # stopped mid-decay both times, too near the end to re-warm: each re-plan decays on
])
def test_every_step_of_a_run_trained_on_twice_trains_at_the_re_planned_rate(tmp_path, kind, first_stop,
                                                                            second_stop):
    """A checkpoint's optimizer state holds the rate its own plan gave the next step: resumed with a re-planned
    schedule (RA2), the first step must train at the new plan's rate, not the old one and then jump."""
    original = Schedule(kind, warmup_steps=3, max_steps=12, min_ratio=0.1)
    first = original.extended(first_stop, 16)
    second = first.extended(second_stop, 20)
    rates = _rates_until_checkpoint(_trainer_resumed(tmp_path, original, None), first_stop, tmp_path / "a")
    rates += _rates_until_checkpoint(_trainer_resumed(tmp_path, first, tmp_path / "a"), second_stop - first_stop,
                                     tmp_path / "b")
    rates += _rates_until_checkpoint(_trainer_resumed(tmp_path, second, tmp_path / "b"), 20 - second_stop,
                                     tmp_path / "c")
    peak = OptimizationConfig().learning_rate
    assert rates == pytest.approx([peak * second.factor(step) for step in range(1, 21)], rel=1e-9)


# -- what a resumed run continues with, decided from a checkpoint's marker ----------------------------------------


def _config(max_steps: int) -> Config:
    config = Config()
    config.training.max_steps = max_steps
    optimization = config.optimization
    optimization.lr_schedule, optimization.warmup_steps, optimization.min_lr_ratio = "cosine", 2, 0.1
    return config


def _checkpoint(tmp_path, name: str, inputs: dict | None = None, **extra):
    folder = tmp_path / name
    folder.mkdir()
    write_marker(folder, "fp", inputs or {}, extra)
    return folder


def test_the_planned_schedule_is_the_one_the_config_describes():
    config = _config(30)
    optimization = config.optimization
    optimization.lr_schedule, optimization.warmup_steps, optimization.min_lr_ratio = "wsd", 7, 0.2
    optimization.decay_ratio = 0.3
    assert planned_schedule(config) == Schedule("wsd", 7, 30, 0.2, 0.3)
    assert continued_schedule(config, None) == Schedule("wsd", 7, 30, 0.2, 0.3)


def test_a_resumed_run_re_plans_the_checkpoints_own_schedule_and_says_so(tmp_path, caplog):
    saved = Schedule("wsd", 3, 12, 0.2, 0.25)  # not the config's: the marker's schedule trained these steps
    checkpoint = _checkpoint(tmp_path, "checkpoint-8", schedule=saved.as_dict())
    caplog.set_level(logging.INFO, "gpt2zh")
    assert continued_schedule(_config(12), checkpoint) == saved  # the same max_steps: nothing to re-plan
    assert caplog.records == []
    assert continued_schedule(_config(16), checkpoint) == saved.extended(8, 16)
    assert [record.getMessage() for record in caplog.records] == [
        f"pretrain: {saved.extended(8, 16).describe_extension()} (PITFALLS.md RA2)"]


def test_a_checkpoint_from_before_re_planning_continues_the_cosine_schedule_of_its_recorded_max_steps(tmp_path):
    recorded = _checkpoint(tmp_path, "checkpoint-8", {"config": {"training": {"max_steps": 12}}})
    assert continued_schedule(_config(16), recorded) == Schedule("cosine", 2, 12, 0.1).extended(8, 16)
    unrecorded = _checkpoint(tmp_path, "checkpoint-6")  # no max_steps either: it ended at its own step
    assert continued_schedule(_config(16), unrecorded) == Schedule("cosine", 2, 6, 0.1).extended(6, 16)


def test_a_max_steps_below_the_checkpoints_step_is_refused_in_one_line(tmp_path):
    checkpoint = _checkpoint(tmp_path, "checkpoint-1200")
    with pytest.raises(UserError) as error:
        continued_schedule(_config(800), checkpoint)
    assert error.value.one_line() == (
        "--training-max-steps 800 is below step 1,200, where checkpoint-1200 of this run already is — pass "
        "--training-max-steps 1,200 or more to train on (or --resume never to start over with 800 steps)")
    assert continued_schedule(_config(1200), checkpoint).max_steps == 1200  # exactly at it: nothing more to train


def test_another_process_count_is_said_with_the_global_batch_it_keeps(tmp_path, caplog):
    one_process = _checkpoint(tmp_path, "checkpoint-8", world_size=1)
    before_ra3 = _checkpoint(tmp_path, "checkpoint-4")  # its marker has no process count
    caplog.set_level(logging.INFO, "gpt2zh")
    for resume, world_size in ((one_process, 2), (one_process, 1), (None, 2), (before_ra3, 2)):
        say_process_change(resume, world_size, 4)
    assert [record.getMessage() for record in caplog.records] == [
        "pretrain: checkpoint-8 was trained by 1 process(es), this run has 2: the global batch (4) and the data "
        "order are unchanged (PITFALLS.md RA3)"]


def test_only_another_max_steps_lets_a_run_train_on_from_its_own_model():
    inputs = {"config": {"training": {"max_steps": 12, "seed": 1}}, "tokenizer": "t1", "tokenizer_sha256": "a1",
              "dataset": ["d1"]}
    manifest = ModelManifest(fingerprint="run-12", inputs=inputs)
    longer = weights_inputs({**inputs, "config": {"training": {"max_steps": 16, "seed": 1}}})
    assert only_the_plan_changed(manifest, longer) is True
    assert only_the_plan_changed(None, longer) is False
    assert only_the_plan_changed(manifest, {**longer, "config": {"training": {"seed": 2}}}) is False
    for key, rebuilt in (("tokenizer", "t2"), ("tokenizer_sha256", "a2"), ("dataset", ["d2"])):
        assert only_the_plan_changed(manifest, {**longer, key: rebuilt}) is False, key  # another run (NU3)




def test_the_shorter_runs_model_is_kept_beside_as_model_step_n_never_replaced(tmp_path, ascii_locale):
    final = tmp_path / "model"
    final.mkdir()
    summary = json.dumps({"steps": 12, "samples": ["今天天气"]}, ensure_ascii=False)
    (final / "training_summary.json").write_text(summary, encoding="utf-8")
    assert keep_previous_model(final) == tmp_path / "model.step-12"
    assert not final.exists() and (tmp_path / "model.step-12" / "training_summary.json").read_text(
        encoding="utf-8") == summary
    final.mkdir()
    (final / "training_summary.json").write_text(summary, encoding="utf-8")
    assert keep_previous_model(final) is None and final.is_dir()  # model.step-12 is already taken
    for content in ("{not json", json.dumps({"step": 16})):
        (final / "training_summary.json").write_text(content, encoding="utf-8")
        assert keep_previous_model(final) is None and final.is_dir()
    (final / "training_summary.json").unlink()
    assert keep_previous_model(final) is None and final.is_dir()


# -- training on --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_finished_run_with_a_higher_max_steps_trains_on_from_its_last_checkpoint(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert main(pretrain_args(run_dir, "--training-max-steps", "16")) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "(step 12)" in err
    assert "training.max_steps 12 -> 16 at step 12: cosine decay re-planned" in err
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text())
    assert (summary["steps"], summary["resumed_from_step"]) == (16, 12)
    kept = run_dir / "model.step-12"  # the shorter run's finished model is kept, not replaced silently
    assert torch.equal(weights(kept)["transformer.wte.weight"], weights(trained[0] / "model")["transformer.wte.weight"])
    rows = {row["step"]: row for row in read_history(run_dir / "logs" / "training_history.csv")}
    schedule = Schedule("cosine", 2, 12, 0.1).extended(12, 16)
    for step in (14, 16):  # the re-planned rates (the steps before 12 trained at their own)
        assert rows[step]["learning_rate"] == pytest.approx(PEAK * schedule.factor(step), rel=1e-6)
    assert rows[14]["learning_rate"] == rows[16]["learning_rate"] == pytest.approx(FLOOR)  # a finished cosine
    # run goes on at its minimum: it neither restarts at the peak nor decays below the floor
    marker = read_marker(run_dir / "checkpoints" / "checkpoint-16")
    assert Schedule.from_dict(marker["schedule"]) == schedule


def test_a_max_steps_below_the_checkpoint_is_one_line_and_changes_nothing(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before = (run_dir / "model" / "manifest.json").read_bytes()
    assert main(pretrain_args(run_dir, "--training-max-steps", "8")) == 2
    err = capsys.readouterr().err
    assert one_error_line(err), err
    assert "--training-max-steps 8 is below step 12, where checkpoint-12 of this run already is" in err
    assert (run_dir / "model" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-8"]


@pytest.mark.slow
def test_a_wsd_run_trained_on_in_its_stable_phase_ends_bit_identical_to_the_longer_run(tmp_path, capsys,
                                                                                      trainable_run):
    """wsd over 12 steps decays in steps 11-12 (decay_ratio 0.2): from its step-8 checkpoint, a 16-step plan
    is the same schedule as a 16-step run from the start, so the weights must be the same bits."""
    wsd = ("--optimization-lr-schedule", "wsd", "--training-sample-max-new-tokens", "0")
    straight = copy_run(trainable_run, tmp_path / "straight")
    assert main(pretrain_args(straight, *wsd, "--training-max-steps", "16")) == 0
    extended = copy_run(trainable_run, tmp_path / "extended")
    assert main(pretrain_args(extended, *wsd)) == 0
    shutil.rmtree(extended / "checkpoints" / "checkpoint-12")  # as if the 12-step run had stopped after step 8
    capsys.readouterr()
    assert main(pretrain_args(extended, *wsd, "--training-max-steps", "16")) == 0
    err = capsys.readouterr().err
    assert "(step 8)" in err and "wsd stays at the peak and decays over the last 3 steps" in err
    assert_same_weights(straight / "model", extended / "model")


# -- another number of processes ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_one_process_checkpoint_continues_on_two_processes_with_the_same_global_batch(tmp_path, trained):
    """1 process to step 8, 2 processes (gloo) from 8 to 12, against the uninterrupted 1-process run. Not bit-exact:
    two ranks each sum half of the 4 sequences and all-reduce, so float additions happen in another order; the
    difference stays at float32 rounding (~1e-7 relative per step, measured under 1e-6 after 4 steps).
    Dropout is 0 (the default), so no rank's random numbers enter the result."""
    run_dir = copy_run(trained[0], tmp_path)
    shutil.rmtree(run_dir / "model")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-12")
    result = run_two_processes(*pretrain_args(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint-8 was trained by 1 process(es), this run has 2: the global batch (4)" in result.stderr
    assert "batch 2 x 1 accumulation x 2 = 4" in result.stdout
    assert "do not match the ones in the `trainer_state.json`" not in result.stderr  # the Trainer's false alarm
    assert read_marker(run_dir / "checkpoints" / "checkpoint-12")["world_size"] == 2
    resumed, uninterrupted = weights(run_dir / "model"), weights(trained[0] / "model")
    for key in uninterrupted:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-6)
    history = {row["step"]: row for row in read_history(run_dir / "logs" / "training_history.csv")}
    original = {row["step"]: row for row in read_history(trained[0] / "logs" / "training_history.csv")}
    assert math.isclose(history[12]["eval_loss"], original[12]["eval_loss"], rel_tol=1e-5)
