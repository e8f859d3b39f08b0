"""`--training-report-to`: the Trainer's tracker integrations, checked before stage 1 and named after the run."""

import json
from pathlib import Path

from tests.conftest import copy_run, one_error_line, pretrain_args, run_cli

STAND_INS = Path(__file__).parent / "stand_ins"


def test_a_tracker_that_is_not_installed_or_unknown_is_one_line_before_stage_1(small_corpus, tmp_path):
    run_dir = tmp_path / "run"
    for tracker, expected in (("wandb", "wandb is not installed"), ("tensorbored", "not one of the Trainer's")):
        result = run_cli("run", "--run-dir", str(run_dir), "--data-files", str(small_corpus),
                         "--training-report-to", tracker)
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
        assert f"--training-report-to {tracker}: " in result.stderr and expected in result.stderr
        assert not (run_dir / "tokenizer").exists()


def test_the_trainer_reports_to_the_tracker_named_under_the_run_directorys_name_and_not_to_tensorboard(
        trainable_run, tmp_path):
    run_dir = copy_run(trainable_run, tmp_path)
    record = tmp_path / "swanlab.jsonl"
    env = {"PYTHONPATH": str(STAND_INS), "SWANLAB_STAND_IN_RECORD": str(record)}
    result = run_cli(*pretrain_args(run_dir, "--training-report-to", "swanlab"), env=env)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    init = next(call for call in calls if call["call"] == "init")
    assert init["kwargs"]["experiment_name"] == run_dir.name
    logged = [call for call in calls if call["call"] == "log"]
    assert any("train/loss" in call["data"] for call in logged)
    assert any("eval/loss" in call["data"] and call["step"] == 12 for call in logged)
    assert not (run_dir / "logs" / "tensorboard").exists()
