"""Training on: a higher max_steps continues from the last checkpoint with a re-planned schedule (RA2), and a
checkpoint of one process continues on two (RA3). Real runs of the tiny model through the real command line."""

import json
import math
import shutil
import typing

import pytest
import torch

from gpt2zh.cli import main
from gpt2zh.config.schema import OptimizationConfig
from gpt2zh.training.checkpoints import read_marker
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
    ("wsd", 12, 16),    # a finished run trained on twice: each re-plan re-warms from the minimum
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
