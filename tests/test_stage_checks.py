"""One check per stage (StageInfo.check): made once before the command's first stage, and reused by the stage."""

import pytest

from gpt2zh.cli import main
from gpt2zh.corpus.sources import Source
from gpt2zh.training.plan import TrainingPlan
from tests.conftest import TINY_DATA, TINY_TRAIN, copy_run


def _count_constructions(monkeypatch, cls) -> list:
    """Every instance of cls made from now on (plans made, corpus files listed)."""
    made = []
    construct = cls.__init__

    def counted(self, *args, **kwargs):
        construct(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cls, "__init__", counted)
    return made


@pytest.mark.parametrize("command", ["pretrain", "run"])
def test_stage_3s_plan_is_made_once_per_command_by_its_check_and_trained_with(tmp_path, monkeypatch, capsys,
                                                                               trainable_run, command):
    """`pretrain`, and `run` whose stages 1-2 are up to date: the plan made before any stage runs is the one
    stage 3 trains with."""
    run_dir = copy_run(trainable_run, tmp_path)
    made = _count_constructions(monkeypatch, TrainingPlan)
    assert main([command, "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN, "--training-max-steps", "4",
                 "--training-eval-steps", "2"]) == 0, capsys.readouterr().err
    assert len(made) == 1
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_a_run_that_builds_stages_1_and_2_trains_with_the_plan_made_before_stage_1(tmp_path, monkeypatch, capsys,
                                                                                   small_corpus):
    """The plan is made for the vocabulary and blocks stages 1-2 will make, before they run: stage 3 reuses it.
    The corpus is listed once too (an hf:// corpus is listed on its hub), by the checks, for stages 1 and 2."""
    made, listed = _count_constructions(monkeypatch, TrainingPlan), _count_constructions(monkeypatch, Source)
    assert main(["run", "--run-dir", str(tmp_path / "run"), "--data-files", str(small_corpus), *TINY_DATA,
                 *TINY_TRAIN, "--training-max-steps", "4", "--training-eval-steps", "2"]) == 0, capsys.readouterr().err
    assert len(made) == 1
    assert [source.path for source in listed] == [small_corpus]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
