"""Which checkpoint a run resumes from (G3, G5, F7), decided on checkpoint folders made in the test: the
marker and what it lists, the reasons a folder is passed over, `--resume PATH` refused in one line, and what
the main process then does (torn ones removed, compiled weights repaired, `--resume never` moving them aside)."""

import datetime as dt
import json
import logging
import re
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import TrainerControl, TrainerState

from gpt2zh.errors import UserError
from gpt2zh.rundir import plain_file_mode
from gpt2zh.training.checkpoints import (
    MARKER,
    STATE,
    WEIGHTS,
    CheckpointMarker,
    check_resume_folder,
    checkpoint_step,
    find_last_valid_checkpoint,
    is_model_not_checkpoint,
    list_checkpoints,
    move_aside,
    prepare_resume,
    problem_with,
    read_marker,
    repair_compile_prefix,
    select_resume,
    write_marker,
)

INPUTS = {"config": {"training": {"seed": 1}}}
RESUME_FIX = "pass a complete checkpoint-N folder, or --resume auto"


def _checkpoint(directory: Path, step: int, prefix: str = "", fingerprint: str = "run-a") -> Path:
    """A complete checkpoint as the Trainer and CheckpointMarker leave it (weights, state, optimizer, marker)."""
    folder = directory / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({f"{prefix}lm_head.weight": torch.ones(2, 3)}, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / STATE).write_text(json.dumps({"global_step": step}), encoding="utf-8")
    (folder / "optimizer.pt").write_bytes(b"0123456789")
    write_marker(folder, fingerprint, INPUTS)
    return folder


def _one_line(error: pytest.ExceptionInfo) -> str:
    return error.value.one_line()




def test_checkpoints_are_listed_newest_first_by_step_number_and_other_names_are_left_out(tmp_path):
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-0", "checkpoint-2-old", "checkpoint-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-11").write_text("a file, not a checkpoint", encoding="utf-8")
    assert list_checkpoints(tmp_path) == [tmp_path / "checkpoint-10", tmp_path / "checkpoint-9",
                                          tmp_path / "checkpoint-0"]
    assert list_checkpoints(tmp_path / "missing") == []
    names = ("checkpoint-12", "checkpoint-007", "model", "checkpoint-1.tmp")
    assert [checkpoint_step(Path(name)) for name in names] == [12, 7, -1, -1]


def test_the_marker_lists_each_file_with_its_size_and_what_made_the_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint-3"
    (folder / "rng").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"12345")
    (folder / "model.safetensors").chmod(0o600)  # as the Trainer's safetensors writes it
    (folder / "rng" / "rank_1.pth").write_bytes(b"ab")
    (folder / MARKER).write_text("an older marker", encoding="utf-8")  # replaced, never listed
    write_marker(folder, "fp", {"config": {"数据": "语料"}}, {"world_size": 2})
    marker = read_marker(folder)
    written = marker.pop("written_utc")
    assert marker == {"step": 3, "fingerprint": "fp", "inputs": {"config": {"数据": "语料"}},
                      "files": {"model.safetensors": 5, "rng/rank_1.pth": 2}, "world_size": 2}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", written)
    assert abs(dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(written)) < dt.timedelta(minutes=1)
    text = (folder / MARKER).read_text(encoding="utf-8")
    assert text == json.dumps(read_marker(folder), indent=2, ensure_ascii=False) + "\n"
    assert sorted(path.name for path in folder.iterdir()) == [MARKER, "model.safetensors", "rng"]  # no .tmp left
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == plain_file_mode(tmp_path)


def test_the_marker_is_utf_8_whatever_the_locale(tmp_path, ascii_locale):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    write_marker(folder, "fp", {"sources": ["语料/新闻.txt"]})  # corpus file names are often Chinese
    assert json.loads((folder / MARKER).read_bytes().decode("utf-8"))["inputs"] == {"sources": ["语料/新闻.txt"]}


def test_a_checkpoint_is_passed_over_for_each_reason_it_cannot_be_resumed_from(tmp_path):
    folder = _checkpoint(tmp_path, 3)
    assert problem_with(folder) is None
    (folder / "optimizer.pt").write_bytes(b"01234")
    assert problem_with(folder) == "optimizer.pt has 5 bytes, 10 were written"
    (folder / "optimizer.pt").unlink()
    assert problem_with(folder) == "optimizer.pt is missing"
    (folder / MARKER).unlink()
    assert problem_with(folder) == "no completion marker (the save was interrupted)"
    unlisted = _checkpoint(tmp_path / ("deep" * 20), 4)  # a marker that lists no files: loading still decides
    (unlisted / MARKER).write_text(json.dumps({"step": 4}), encoding="utf-8")
    assert problem_with(unlisted) is None
    (unlisted / STATE).unlink()
    error = f"[Errno 2] No such file or directory: '{unlisted / STATE}'"
    assert len(error) > 100 and problem_with(unlisted) == f"cannot be loaded (FileNotFoundError: {error[:100]})"


def test_weights_saved_from_a_compiled_model_are_rewritten_without_the_prefix_and_stay_resumable(tmp_path):
    plain = _checkpoint(tmp_path, 2)
    before = (plain / WEIGHTS).read_bytes()
    assert repair_compile_prefix(plain) is False and (plain / WEIGHTS).read_bytes() == before
    compiled = _checkpoint(tmp_path, 4, prefix="_orig_mod.")
    assert repair_compile_prefix(compiled) is True
    assert list(load_file(str(compiled / WEIGHTS))) == ["lm_head.weight"]
    with safe_open(str(compiled / WEIGHTS), framework="pt") as weights:
        assert weights.metadata() == {"format": "pt"}  # what transformers checks before loading
    assert read_marker(compiled)["files"][WEIGHTS] == (compiled / WEIGHTS).stat().st_size
    assert problem_with(compiled) is None and sorted(p.name for p in compiled.iterdir()) == sorted(
        [MARKER, WEIGHTS, STATE, "optimizer.pt"])
    unmarked = _checkpoint(tmp_path, 6, prefix="_orig_mod.")
    (unmarked / MARKER).unlink()
    assert repair_compile_prefix(unmarked) is True and read_marker(unmarked) is None


def test_the_newest_resumable_checkpoint_is_chosen_and_each_newer_one_comes_with_its_reason(tmp_path):
    for step in (4, 8, 10, 12):
        _checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-12" / MARKER).unlink()
    (tmp_path / "checkpoint-10" / "optimizer.pt").write_bytes(b"0")
    torn = [(tmp_path / "checkpoint-12", "no completion marker (the save was interrupted)"),
            (tmp_path / "checkpoint-10", "optimizer.pt has 1 bytes, 10 were written")]
    assert find_last_valid_checkpoint(tmp_path) == (tmp_path / "checkpoint-8", torn)
    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}" / MARKER).unlink()
    assert find_last_valid_checkpoint(tmp_path) == (None, [*torn, *(
        (tmp_path / f"checkpoint-{step}", "no completion marker (the save was interrupted)") for step in (8, 4))])


def test_resume_never_moves_the_checkpoints_aside_under_a_utc_time_stamp(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    assert move_aside(directory) is None and directory.is_dir()  # nothing to keep
    _checkpoint(directory, 4)
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # 8 hours from UTC: a local time stamp would show
    time.tzset()
    try:
        moved = move_aside(directory)
    finally:
        monkeypatch.undo()
        time.tzset()
    stamp = re.fullmatch(r"checkpoints\.previous-(\d{8}T\d{6}Z)", moved.name).group(1)
    taken = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - taken) < dt.timedelta(minutes=1)
    assert not directory.exists() and (moved / "checkpoint-4" / MARKER).is_file()


def test_a_saved_model_is_told_apart_from_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    assert is_model_not_checkpoint(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{}", encoding="utf-8")
    assert not is_model_not_checkpoint(tmp_path)
    assert not is_model_not_checkpoint(tmp_path / "empty")


def test_resume_path_that_is_a_run_directory_is_refused_with_both_ways_to_go_on(tmp_path):
    with_checkpoints, settings_only = tmp_path / "run-a", tmp_path / "run-b"
    (with_checkpoints / "checkpoints").mkdir(parents=True)
    settings_only.mkdir()
    (settings_only / "settings.yaml").write_text("{}", encoding="utf-8")
    for run in (with_checkpoints, settings_only):
        with pytest.raises(UserError) as error:
            check_resume_folder(str(run))
        assert _one_line(error) == (
            f"--resume {run}: that is a run directory, not one of its checkpoints — to continue that run, pass "
            f"--run-dir {run} (it resumes its last checkpoint); to start a new run from its model, pass "
            f"--model-init-from {run}")


def test_resume_path_that_is_a_model_or_a_hub_id_is_refused_pointing_to_model_init_from(tmp_path, monkeypatch):
    model, run_with_a_model = tmp_path / "model", tmp_path / "finished"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (run_with_a_model / "model").mkdir(parents=True)
    (run_with_a_model / "model" / "config.json").write_text("{}", encoding="utf-8")
    for folder in (model, run_with_a_model):
        with pytest.raises(UserError) as error:
            check_resume_folder(str(folder))
        assert _one_line(error) == (
            f"--resume {folder}: that is a model (weights without optimizer, schedule or trainer state), not a "
            f"checkpoint of a run — to start a run from its weights, pass --model-init-from {folder} (PITFALLS.md "
            "BM1); --resume continues a run's own checkpoint")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        check_resume_folder("someone/gpt2-chinese")
    assert _one_line(error) == (
        "--resume someone/gpt2-chinese: no such folder; a Hub model is not a checkpoint to resume — to start a run "
        "from its weights, pass --model-init-from someone/gpt2-chinese (PITFALLS.md BM1); --resume continues a "
        "run's own checkpoint")


def test_resume_path_that_is_no_folder_or_a_torn_checkpoint_is_refused_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("", encoding="utf-8")
    torn = _checkpoint(tmp_path, 6)
    (torn / MARKER).unlink()
    for setting, reason in (("./nowhere/checkpoint-4", "not a folder"), ("notes.txt", "not a folder"),
                            (str(torn), "no completion marker (the save was interrupted)")):
        with pytest.raises(UserError) as error:
            check_resume_folder(setting)
        assert _one_line(error) == f"--resume {setting}: cannot resume from it: {reason} — {RESUME_FIX}"
    _checkpoint(tmp_path / "runs", 8)
    assert check_resume_folder("runs/checkpoint-8") == Path("runs/checkpoint-8")  # a folder here, not a Hub id


def test_resume_never_auto_hub_and_a_path_each_choose_as_documented(tmp_path):
    directory = tmp_path / "checkpoints"
    good, torn = _checkpoint(directory, 8), _checkpoint(directory, 12)
    (torn / MARKER).unlink()
    passed_over = [(torn, "no completion marker (the save was interrupted)")]
    assert select_resume("never", directory, "run-a", INPUTS) == (None, [])
    for setting in ("auto", "hub"):  # hub: the local checkpoints first
        assert select_resume(setting, directory, "run-a", INPUTS) == (good, passed_over)
    assert select_resume(str(good), tmp_path / "elsewhere", "run-a", INPUTS) == (good, [])
    assert select_resume("auto", tmp_path / "none-yet", "run-a", INPUTS) == (None, [])


def test_a_checkpoint_of_another_run_is_refused_naming_at_most_six_changes(tmp_path):
    directory = tmp_path / "checkpoints"
    checkpoint = _checkpoint(directory, 8, fingerprint="run-b")
    seeds = {"training": {name: 2 for name in "abcdefg"} | {"seed": 1}}
    with pytest.raises(UserError) as error:
        select_resume("auto", directory, "run-a", {"config": seeds})
    changes = ", ".join(f"training.{name} (None -> 2)" for name in "abcdef")
    assert _one_line(error) == (f"{checkpoint} was made by a different run; changed: {changes} — restore those "
                                "settings to resume, or pass --resume never (or --force) to start over")
    with pytest.raises(UserError) as error:
        select_resume("auto", directory, "run-a", INPUTS)  # same settings: an earlier stage was rebuilt
    assert "was made by a different run; changed: the dataset or tokenizer — " in _one_line(error)
    (checkpoint / MARKER).write_text(json.dumps({"fingerprint": "run-b", "files": {}}), encoding="utf-8")
    with pytest.raises(UserError) as error:  # a hand-edited marker that records no inputs: still one line
        select_resume("auto", directory, "run-a", INPUTS)
    assert _one_line(error).startswith(f"{checkpoint} was made by a different run; changed: config (None -> ")


def test_before_training_the_main_process_clears_torn_checkpoints_and_repairs_the_chosen_one(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    chosen, torn = _checkpoint(directory, 8, prefix="_orig_mod."), _checkpoint(directory, 12)
    caplog.set_level(logging.INFO, "gpt2zh")
    prepare_resume("auto", directory, chosen, [(torn, "no completion marker"), (directory / "checkpoint-16", "gone")])
    assert list_checkpoints(directory) == [chosen] and list(load_file(str(chosen / WEIGHTS))) == ["lm_head.weight"]
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("WARNING", f"{torn} is not a complete checkpoint (no completion marker); removed, resuming from an older one"),
        ("WARNING", f"{directory / 'checkpoint-16'} is not a complete checkpoint (gone); removed, resuming from an "
                    "older one"),
        ("INFO", f"pretrain: {chosen} had torch.compile's `_orig_mod.` prefix in its weights; stripped"),
        ("INFO", f"pretrain: resuming from {chosen} (step 8)")]


def test_without_a_checkpoint_or_with_resume_never_training_starts_afresh_and_says_so(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    caplog.set_level(logging.INFO, "gpt2zh")
    prepare_resume("auto", directory, None, [])
    prepare_resume("never", directory, None, [])  # nothing to move aside
    _checkpoint(directory, 4)
    prepare_resume("never", directory, None, [], fresh_start="from the base model")
    moved = next(tmp_path.glob("checkpoints.previous-*"))
    assert [record.getMessage() for record in caplog.records] == [
        f"pretrain: no checkpoint to resume from in {directory}; starting from scratch",
        f"pretrain: --resume never: previous checkpoints moved to {moved}; starting from the base model"]
    assert not directory.exists()


def test_a_checkpoint_is_marked_complete_by_the_main_process_then_handed_on(tmp_path, monkeypatch):
    handed = []
    folder = tmp_path / "checkpoint-5"
    folder.mkdir()
    (folder / STATE).write_text("{}", encoding="utf-8")
    args, state, control = SimpleNamespace(), TrainerState(), TrainerControl()
    state.global_step = 5
    monkeypatch.setenv("RANK", "1")
    CheckpointMarker(tmp_path, "run-a", INPUTS, {"world_size": 2}, after=handed.append).on_save(args, state, control)
    assert (read_marker(folder), handed) == (None, [])  # another rank only waits for the main one
    monkeypatch.setenv("RANK", "0")
    CheckpointMarker(tmp_path, "run-a", INPUTS, {"world_size": 2}, after=handed.append).on_save(args, state, control)
    marker = read_marker(folder)
    assert (marker["fingerprint"], marker["inputs"], marker["world_size"], marker["files"]) == (
        "run-a", INPUTS, 2, {STATE: 2})
    assert handed == [folder]
    (folder / MARKER).unlink()
    CheckpointMarker(tmp_path, "run-a", INPUTS).on_save(args, state, control)  # no extra, nothing after
    assert "world_size" not in read_marker(folder)
    state.global_step = 6  # the Trainer saved nothing at this step
    CheckpointMarker(tmp_path, "run-a", INPUTS, after=handed.append).on_save(args, state, control)
    assert handed == [folder] and not (tmp_path / "checkpoint-6").exists()
