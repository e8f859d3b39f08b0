"""A run directory remembers its settings, a finished stage is never rebuilt from other inputs without
--force, and what can be known before stage 1 is checked before stage 1."""

import datetime as dt
import gzip
import logging
import re
import shutil
from pathlib import Path

import pytest
import yaml

from gpt2zh.cli import build_parser, main
from gpt2zh.config import Config
from gpt2zh.config.loader import config_to_dict, dump_config
from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.dataset.check import check_split_sizes
from gpt2zh.errors import UserError
from gpt2zh.plan_command import corpus_bytes
from gpt2zh.preflight import check_token_present, preflight
from gpt2zh.request import command_request
from gpt2zh.run_all import selected_stages
from gpt2zh.run_settings import SavedSettings, absolute_corpus_paths, read_settings, write_settings
from gpt2zh.training.check import check_schedule, check_training_size
from tests.conftest import TINY_TOKENIZER, copy_run, one_error_line, run_cli, tree_checksums

SETTINGS_WRITTEN = {"settings.yaml", ".gpt2zh.lock", ".gpt2zh.lock.json"}


def outputs(run_dir: Path) -> dict[str, bytes]:
    """Every file a stage wrote (the settings file and the lock are the command's own)."""
    return {name: data for name, data in tree_checksums(run_dir).items() if name not in SETTINGS_WRITTEN}


def saved_groups(run_dir: Path) -> dict:
    settings = read_settings(run_dir)
    return {"groups": settings.groups, "command_line": settings.command_line}


def test_a_forgotten_data_files_reuses_the_runs_settings_and_leaves_every_output_byte_identical(
        tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before, settings = outputs(run_dir), saved_groups(run_dir)
    assert settings["groups"]["data"]["files"] and "data.files" in settings["command_line"]

    assert main(["run", "--run-dir", str(run_dir)]) == 0  # no --data-files, no tiny-model flags
    err = capsys.readouterr().err
    assert f"settings: {run_dir / 'settings.yaml'} (saved by gpt2zh pretrain" in err
    for stage in ("train-tokenizer", "tokenize", "pretrain"):
        assert f"{stage}: {run_dir}/" in err and "up to date" in err, stage
    assert outputs(run_dir) == before and saved_groups(run_dir) == settings


def test_a_config_that_would_rebuild_a_finished_run_from_another_corpus_is_refused_naming_what_differs(
        tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before = tree_checksums(run_dir)
    assert main(["run", "--run-dir", str(run_dir), "--config", "demo"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {run_dir / 'tokenizer'} was built from other inputs")
    assert "corpus (small.txt -> the embedded demo corpus)" in error and "tokenizer.verify_lines (400 -> 2000)" in error
    assert "add --force" in error and "another --run-dir" in error
    assert tree_checksums(run_dir) == before  # the settings too: a refused command changes nothing


def test_a_changed_setting_of_an_earlier_stage_given_to_a_later_stage_is_one_line_naming_the_command_that_can(
        tmp_path, capsys, trained):
    """(NU4) pretrain cannot rebuild the tokenizer: a new vocabulary size given to it would be ignored."""
    run_dir = copy_run(trained[0], tmp_path)
    before = tree_checksums(run_dir)
    assert main(["pretrain", "--run-dir", str(run_dir), "--tokenizer-vocab-size", "8000"]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "Traceback" not in err
    assert "--tokenizer-vocab-size is a setting of stage 1 (train-tokenizer), which `gpt2zh pretrain` does not " \
           "run" in err and f"use `gpt2zh run --run-dir {run_dir} --tokenizer-vocab-size 8000 --force`" in err
    assert main(["push", "--run-dir", str(run_dir), "--dry-run", "--no-data-dedupe"]) == 2
    assert "--no-data-dedupe is a setting of stage 1 (train-tokenizer), which `gpt2zh push` does not run" in \
           capsys.readouterr().err
    files = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert main(["pretrain", "--run-dir", str(run_dir), "--data-files", *files]) == 2
    assert f"--data-files {' '.join(files)} --force`" in capsys.readouterr().err  # pastes as typed
    assert tree_checksums(run_dir) == before
    # the value the run already has, typed again, and a later stage's setting are what they always were
    assert main(["pretrain", "--run-dir", str(run_dir), "--tokenizer-vocab-size", "4000"]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["tokenize", "--run-dir", str(run_dir), "--training-max-steps", "12"]) == 0
    assert main(["push", "--run-dir", str(run_dir), "--dry-run", "--hub-repo-id", "me/x",  # its own stage's
                 "--hub-dataset-description", "a new description"]) == 0


def test_changed_training_settings_on_a_finished_model_are_refused_unless_forced(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before = tree_checksums(run_dir)
    # (a higher max_steps alone trains on, PITFALLS.md RA2: tests/test_continuation.py)
    assert main(["pretrain", "--run-dir", str(run_dir), "--training-global-batch-size", "8"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{run_dir / 'model'} was built from other inputs" in error
    assert "training.global_batch_size (4 -> 8)" in error
    assert tree_checksums(run_dir) == before


def test_stage_2_names_the_tokenizer_settings_that_differ_and_offers_reuse_and_retraining(
        tmp_path, capsys, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    before = tree_checksums(run_dir)
    assert main(["tokenize", "--run-dir", str(run_dir), "--data-validation-fraction", "0.05"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "was trained with other settings than this command's: data.validation_fraction (0.01 -> 0.05)" in error
    assert "to reuse it, drop what changed" in error
    assert f"to retrain it with these settings, run `gpt2zh train-tokenizer --run-dir {run_dir} --force`" in error
    assert tree_checksums(run_dir) == before


def test_saved_corpus_paths_are_absolute_so_the_settings_work_from_another_directory(tmp_path, small_corpus):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copyfile(small_corpus, first / "corpus.txt")
    run_dir = tmp_path / "run"
    built = run_cli("train-tokenizer", "--data-files", "corpus.txt", "--run-dir", str(run_dir), *TINY_TOKENIZER,
                    cwd=first)
    assert built.returncode == 0, built.stderr
    assert read_settings(run_dir).groups["data"]["files"] == [str(first / "corpus.txt")]
    for argv in (["--run-dir", str(run_dir)], ["--config", str(run_dir / "settings.yaml")]):
        again = run_cli("train-tokenizer", *argv, cwd=second)
        assert again.returncode == 0 and "is up to date" in again.stderr, (argv, again.stderr)


def test_one_command_instructions_are_not_remembered(tmp_path):
    config = Config()
    config.checkpoint.resume = "never"
    config.training.force_preset = True
    write_settings(tmp_path, "pretrain", config, {"checkpoint.resume": "never", "training.force_preset": True,
                                                  "training.max_steps": 5})
    saved = read_settings(tmp_path)
    assert saved.command_line == {"training.max_steps": 5}
    assert saved.groups["checkpoint"]["resume"] == "auto" and saved.groups["training"]["force_preset"] is False


def test_show_config_shows_a_runs_settings_a_whole_group_and_suggests_keys(tmp_path, capsys):
    config = Config()
    config.tokenizer.vocab_size = 1234
    write_settings(tmp_path, "run", config, {"tokenizer.vocab_size": 1234})
    assert main(["show-config", "--run-dir", str(tmp_path), "--get", "tokenizer.vocab_size"]) == 0
    assert capsys.readouterr().out.strip() == "1234"
    assert main(["show-config", "--run-dir", str(tmp_path), "--get", "tokenizer"]) == 0
    group = yaml.safe_load(capsys.readouterr().out)
    assert list(group) == ["tokenizer"] and group["tokenizer"]["vocab_size"] == 1234
    assert main(["show-config", "--run-dir", str(tmp_path), "--get", "tokenizer.vocab"]) == 2
    assert "did you mean tokenizer.vocab_size?" in capsys.readouterr().err
    assert main(["show-config", "--get", "tokenizer.vocab_size"]) == 0  # no run directory: the demo's value
    assert capsys.readouterr().out.strip() == "4000"


# --------------------------------------------------------------------------- checks before stage 1


def test_a_corpus_too_small_for_one_validation_block_is_refused_before_stage_1(tmp_path, capsys, demo_documents):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n".join(demo_documents[:120]) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", "--data-files", str(corpus), "--run-dir", str(run_dir)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "held-out tokens at --data-validation-fraction 0.01, less than one block of 256" in error
    assert "use --data-validation-fraction" in error and "smaller --data-block-size" in error
    assert not [path.name for path in run_dir.iterdir() if path.name not in SETTINGS_WRITTEN]  # nothing built


def test_a_few_validation_blocks_are_a_warning_that_says_what_to_change(tmp_path, caplog, demo_documents):
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(demo_documents[:2000]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        check_split_sizes(resolve_sources([str(corpus)]), DataConfig(validation_fraction=0.01, block_size=256))
    assert "the validation loss will be noisy; use --data-validation-fraction" in caplog.text
    with pytest.raises(UserError, match="cannot fill one training block of 200000"):
        check_split_sizes(resolve_sources([str(corpus)]), DataConfig(block_size=200_000))
    # half as many blocks' worth of tokens as bytes: too many for our tokenizer's 4 bytes a token, not for a
    # base model's, which may give a token for every byte or two (GPT-2's byte-level BPE on Chinese)
    half = DataConfig(block_size=corpus.stat().st_size // 2, validation_fraction=0)
    with pytest.raises(UserError, match="cannot fill one training block"):
        check_split_sizes(resolve_sources([str(corpus)]), half)
    check_split_sizes(resolve_sources([str(corpus)]), half, adopted_tokenizer=True)


def test_a_gzipped_corpus_is_not_judged_too_small_by_its_compressed_size(tmp_path):
    """3.7 MB of text in a 110 KB .txt.gz: read as 110 KB it would be at most 28,000 tokens, too few for one
    held-out block or one step of 64 blocks, and the plan would count the epochs on it. The checks before stage 1
    and the plan leave such a file to stage 2, which counts its text."""
    text = "".join(f"第{i}篇：今天天气很好，我们去公园散步，看见许多人在湖边钓鱼。\n" for i in range(40_000)).encode()
    corpus = tmp_path / "repeated.txt.gz"
    corpus.write_bytes(gzip.compress(text))
    config = Config()
    config.data.block_size, config.data.validation_fraction, config.training.global_batch_size = 1024, 0.02, 64
    assert corpus.stat().st_size / 4 * 0.02 < 1024 < len(text) / 4 * 0.02 / 10  # ten held-out blocks of text
    sources = resolve_sources([str(corpus)])
    check_split_sizes(sources, config.data)
    check_training_size(sources, config)
    assert corpus_bytes([str(corpus)]) is None  # the plan says stage 2 counts the tokens


def test_warmup_that_does_not_end_before_max_steps_is_refused_with_the_flag_to_change(capsys):
    assert main(["show-config", "--training-max-steps", "10", "--optimization-warmup-steps", "30"]) == 2
    error = capsys.readouterr().err
    assert "optimization.warmup_steps (30) must be below training.max_steps (10)" in error
    assert "--optimization-warmup-steps 1 or a larger --training-max-steps" in error


def test_a_configuration_too_large_for_the_corpus_is_refused_before_stage_1_without_training_a_tokenizer(
        tmp_path, capsys, demo_documents):
    """(NU7, NU8) gpt2-small's 480 x 1,024-token step on 300 lines: said before a tokenizer is trained."""
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(demo_documents[:300]) + "\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", "--config", "gpt2-small", "--data-files", str(corpus), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "fewer than one optimizer step of training.global_batch_size 480" in err
    assert "--config demo" in err and "--training-global-batch-size of at most" in err
    assert "held-out tokens at --data-validation-fraction 0.005" in err  # the split's refusal in the same line
    assert not (run_dir / "tokenizer").exists()


def test_steps_that_repeat_the_corpus_more_than_four_times_are_warned_about_before_stage_1(
        tmp_path, demo_documents, caplog):
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(demo_documents[:300]) + "\n", encoding="utf-8")
    config = Config()  # the demo's step (8 x 256) fits; its 1,200 steps repeat 300 lines many times
    config.data.block_size, config.training.global_batch_size, config.training.max_steps = 256, 8, 1200
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        check_training_size(resolve_sources([str(corpus)]), config)
    assert re.search(r"1,200 steps are at least [\d,]+ epochs of the training split: beyond about 4", caplog.text)
    assert "use --training-max-steps" in caplog.text and "(--config demo), or more text" in caplog.text
    caplog.clear()
    config.training.max_steps = 10
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        check_training_size(resolve_sources([str(corpus)]), config)
    assert caplog.text == ""


def test_a_max_steps_below_the_configs_warmup_scales_the_warmup_to_a_tenth_of_the_run_and_says_so(capsys):
    assert main(["show-config", "--config", "demo", "--training-max-steps", "10",
                 "--get", "optimization.warmup_steps"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "1"
    assert "optimization.warmup_steps 30 is not below training.max_steps 10: warmup scaled to 1 step(s), 10% of " \
           "the run" in captured.err
    argv = ["show-config", "--config", "demo", "--training-max-steps", "10"]
    resolved = command_request(build_parser([]).parse_args(argv))
    assert resolved.config.optimization.warmup_steps == 1  # what this command trains with
    assert resolved.resolved.settings.optimization.warmup_steps == 30  # what the run keeps for its longer runs
    assert main(["show-config", "--config", "demo", "--training-max-steps", "30",  # as long as the warmup
                 "--get", "optimization.warmup_steps"]) == 0
    assert capsys.readouterr().out.strip() == "3"
    # a run long enough for the config's warmup keeps it, unsaid
    assert main(["show-config", "--config", "demo", "--training-max-steps", "31",
                 "--get", "optimization.warmup_steps"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "30" and "scaled" not in captured.err


def test_eval_and_logging_intervals_beyond_max_steps_are_warned_about_and_no_validation_is_refused(caplog):
    config = Config()
    config.training.max_steps, config.training.eval_steps, config.training.logging_steps = 8, 50, 10
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        check_schedule(config)
    assert "training.eval_steps (50) is larger than training.max_steps (8): only the final evaluation" in caplog.text
    assert "use e.g. --training-eval-steps 2" in caplog.text
    assert "training.logging_steps (10) is larger than training.max_steps (8)" in caplog.text
    config.data.validation_fraction = 0.0
    with pytest.raises(UserError, match="data.validation_fraction is 0, but stage 3 evaluates on held-out blocks"):
        check_schedule(config)


def test_a_run_directory_without_saved_settings_starts_from_the_config_its_stages_recorded(
        tmp_path, capsys, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    (run_dir / "settings.yaml").unlink()  # as a run directory made before settings were saved
    before = outputs(run_dir)
    assert main(["tokenize", "--run-dir", str(run_dir)]) == 0  # neither --data-files nor the tiny-data flags
    err = capsys.readouterr().err
    assert f"settings: {run_dir / 'dataset' / 'config.yaml'} (saved by the stage that wrote dataset/config.yaml)" in err
    assert "is up to date" in err and outputs(run_dir) == before


def test_a_run_directory_made_before_settings_were_saved_does_not_keep_a_one_command_instruction(tmp_path):
    """Its stages recorded the whole config, `--resume never` and `--force-preset` included: taken as the run's
    settings as they are, every later command on it would start training over (and force the preset) again."""
    config = Config()
    config.checkpoint.resume, config.training.force_preset, config.training.max_steps = "never", True, 5
    for recorded in ("tokenizer/config.yaml", "dataset/config.yaml", "model/run_config.yaml"):
        (tmp_path / recorded).parent.mkdir()
        dump_config(config, tmp_path / recorded)
    argv = ["show-config", "--run-dir", str(tmp_path)]
    request = command_request(build_parser(argv).parse_args(argv))
    assert request.saved_settings.startswith(str(tmp_path / "model" / "run_config.yaml"))
    assert request.config.checkpoint.resume == "auto" and request.config.training.force_preset is False
    assert request.config.training.max_steps == 5  # the run's own settings stay


def test_from_stage_reruns_but_does_not_replace_what_other_inputs_built_unless_forced(tmp_path, capsys, trained,
                                                                                     small_corpus):
    run_dir = copy_run(trained[0], tmp_path)
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    before = tree_checksums(run_dir)
    for stage in ("train-tokenizer", "tokenize"):
        argv = ["run", "--run-dir", str(run_dir), "--from-stage", stage, "--data-files", str(other)]
        assert main(argv) == 2
        assert "corpus (small.txt -> other.txt)" in capsys.readouterr().err
        request = command_request(build_parser(argv).parse_args(argv))  # refused before stage 1, not by the stage
        with pytest.raises(UserError, match=r"corpus \(small.txt -> other.txt\)"):
            preflight(request, selected_stages(request, stage))
    assert tree_checksums(run_dir) == before


def test_a_command_refused_in_a_stage_or_with_every_stage_up_to_date_leaves_the_settings_as_they_were(
        tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)
    settings = (run_dir / "settings.yaml").read_bytes()
    assert main(["train-tokenizer", "--run-dir", str(run_dir), "--model-n-layer", "3"]) == 0  # up to date
    assert main(["run", "--run-dir", str(run_dir), "--training-precision", "fp16"]) == 2  # refused (stage 3's plan)
    capsys.readouterr()
    assert (run_dir / "settings.yaml").read_bytes() == settings
    assert main(["run", "--run-dir", str(run_dir)]) == 0  # so a plain rerun still finds everything up to date
    assert "up to date, reused" in capsys.readouterr().out
    assert (run_dir / "settings.yaml").read_bytes() == settings  # and, every stage up to date, saves nothing


def test_the_model_is_up_to_date_whichever_way_the_same_precision_is_asked_for(tmp_path, capsys, trained):
    run_dir = copy_run(trained[0], tmp_path)  # trained with the CPU preset's fp32
    before = outputs(run_dir)
    assert main(["pretrain", "--run-dir", str(run_dir), "--training-preset", "none"]) == 0  # auto: fp32 on CPU
    assert "is up to date for this dataset and config" in capsys.readouterr().err and outputs(run_dir) == before


def test_bad_run_directories_and_settings_files_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    emptied = tmp_path / "emptied"
    emptied.mkdir()
    (emptied / "settings.yaml").write_text("# nothing left\n", encoding="utf-8")
    for argv, expected in ((["train-tokenizer", "--run-dir", str(a_file)], "is a file, not a directory"),
                           (["train-tokenizer", "--run-dir", str(a_file / "run")], "cannot create it"),
                           (["show-config", "--run-dir", str(emptied)], "is not a gpt2zh settings file")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, (argv, err)


def test_files_a_user_put_in_an_output_folder_are_moved_aside_never_deleted(tmp_path, small_corpus):
    run_dir = tmp_path / "run"
    (run_dir / "tokenizer").mkdir(parents=True)
    (run_dir / "tokenizer" / "NOTES.txt").write_text("my notes", encoding="utf-8")
    result = run_cli("train-tokenizer", "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_TOKENIZER)
    assert result.returncode == 0, result.stderr
    kept = list(run_dir.glob("tokenizer.replaced-*"))
    assert len(kept) == 1 and (kept[0] / "NOTES.txt").read_text(encoding="utf-8") == "my notes"
    assert f"held files that are not a complete tokenizer output (written by hand, or damaged); moved to {kept[0]}" \
        in result.stderr
    assert (run_dir / "tokenizer" / "manifest.json").is_file()


SETTINGS_HEADER = (
    "# The settings of this run directory, saved by the last command that built something in it. A\n"
    "# command on this run directory without --config starts from them, its own flags on top. To change\n"
    "# a setting, pass its flag: a value below is overridden by the same key under command_line.\n")


def test_saved_settings_are_a_readable_utf8_file_saying_who_saved_them_when_in_utc_and_what_was_typed(
        tmp_path, clock_at_utc_plus_8, ascii_locale):
    """Written into a run directory not made yet; Chinese paths stay readable (not \\u escapes) and are UTF-8 on
    any machine; who saved them and the command line come first, then the groups in the config's order."""
    config = Config()
    config.data.files = ["/语料/新闻.txt"]
    run_dir = tmp_path / "runs" / "first"
    path = write_settings(run_dir, "run", config, {"data.files": ["/语料/新闻.txt"]})
    assert path == run_dir / "settings.yaml" and sorted(p.name for p in run_dir.iterdir()) == ["settings.yaml"]
    text = path.read_bytes().decode("utf-8")
    assert text.startswith(SETTINGS_HEADER + "saved_by: gpt2zh run, ") and "- /语料/新闻.txt\n" in text
    document = yaml.safe_load(text)
    assert list(document) == ["saved_by", "command_line", *config_to_dict(config)]
    assert document["command_line"] == {"data.files": ["/语料/新闻.txt"]}
    stamp = re.fullmatch(r"gpt2zh run, (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", document["saved_by"])
    assert stamp, document["saved_by"]
    saved = dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - saved) < dt.timedelta(minutes=2)


def test_a_settings_file_without_a_note_of_who_saved_it_or_with_an_empty_command_line_reads(tmp_path):
    (tmp_path / "settings.yaml").write_text("command_line:\ndata:\n  files: [a.txt]\n", encoding="utf-8")
    assert read_settings(tmp_path) == SavedSettings(path=tmp_path / "settings.yaml",
                                                    groups={"data": {"files": ["a.txt"]}}, command_line={},
                                                    saved_by="an earlier command")


@pytest.mark.parametrize("content, message", [
    ("data:\n  files: [a.txt]\n", "{path} is not a gpt2zh settings file (it has no command_line: section)"),
    ("command_line: [data.files]\n", "{path}: command_line must be a mapping of group.field: value"),
    # the group is what comes before the first dot: data.files.x names the group data, nope.x an unknown one
    ("command_line:\n  data.files.x: 1\n  nope.x: 2\n  alsonope: 3\n", "{path}: command_line has unknown key 'nope.x'"),
], ids=["no command line", "a list", "unknown group"])
def test_a_damaged_settings_file_is_refused_in_one_line_saying_what_to_do(tmp_path, content, message):
    path = tmp_path / "settings.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as refused:
        read_settings(tmp_path)
    assert refused.value.message == message.format(path=path)
    assert refused.value.fix == ("delete it: the next command starts from --config or the config the stages recorded"
                                 if "command_line" not in content else
                                 f"fix it, or delete {path} to start from --config again")


def test_a_recorded_config_without_some_groups_is_read_as_it_is(tmp_path):
    """A tokenizer/config.yaml written by hand, or by an older gpt2zh, may lack groups (training, checkpoint)."""
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "config.yaml").write_text("data:\n  files: [a.txt]\ntraining: null\n", encoding="utf-8")
    settings = read_settings(tmp_path)
    assert (settings.groups, settings.command_line) == ({"data": {"files": ["a.txt"]}, "training": None}, {})


def test_local_corpus_paths_are_made_absolute_and_hub_paths_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert absolute_corpus_paths(["hf://datasets/me/corpus/train.txt", "~/新闻.txt", "data/*.jsonl"]) == \
        ["hf://datasets/me/corpus/train.txt", str(tmp_path / "home" / "新闻.txt"), str(tmp_path / "data" / "*.jsonl")]


@pytest.fixture
def no_tokens(tmp_path, monkeypatch):
    """Neither hub has a token on this machine (environment and saved logins)."""
    import huggingface_hub.constants

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "")


@pytest.mark.parametrize("commands, dry_run, push_checkpoints, provider, refused", [
    ({"push"}, False, False, "huggingface", "no Hugging Face token found for --hub-repo-id me/model"),
    ({"train-tokenizer", "tokenize", "pretrain", "push"}, False, False, "modelscope",
     "no ModelScope token found for --hub-repo-id me/model"),
    ({"pretrain"}, False, True, "huggingface", "no Hugging Face token found for --hub-repo-id me/model"),
    ({"pretrain", "push"}, True, True, "huggingface", "no Hugging Face token found for --hub-repo-id me/model"),
    ({"push"}, True, True, "huggingface", None),  # a dry run uploads nothing; checkpoints are pretrain's
    ({"pretrain"}, False, False, "huggingface", None),
    ({"tokenize"}, False, True, "huggingface", None),
], ids=["push", "run on modelscope", "pretrain pushing checkpoints", "dry run pushing checkpoints", "dry push",
        "pretrain keeping checkpoints here", "no stage that uploads"])
def test_a_missing_token_is_refused_before_stage_1_only_when_a_stage_of_the_command_uploads(
        no_tokens, commands, dry_run, push_checkpoints, provider, refused):
    config = Config()
    config.hub.repo_id, config.hub.provider, config.hub.push_checkpoints = "me/model", provider, push_checkpoints
    if refused is None:
        check_token_present(config, commands, dry_run)
        return
    with pytest.raises(UserError) as error:
        check_token_present(config, commands, dry_run)
    assert error.value.message == refused
