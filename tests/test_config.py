"""Config: YAML groups, --<group>-<field> overrides, validation that names the key and the fix."""

import contextlib
import io
from pathlib import Path

import pytest

from gpt2zh.cli import build_parser, main
from gpt2zh.config import find_config, fingerprint_fields, load_config
from gpt2zh.config.loader import available_configs, configs_dir, read_yaml_mapping
from gpt2zh.config.options import overrides_from
from gpt2zh.config.schema import GROUPS, Config, all_keys
from gpt2zh.errors import UserError

CONTRACT_FLAGS = ["--config", "--run-dir", "--data-files", "--tokenizer-vocab-size", "--training-max-steps",
                  "--checkpoint-save-steps", "--optimization-learning-rate", "--hub-repo-id"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_config_parses_and_validates():
    names = available_configs()
    assert {"demo", "gpt2-small", "gpt2-medium", "gpt2-large"} <= set(names)
    for path in sorted(configs_dir().glob("*.yaml")):  # presets/ have their own schema (test_training_plan)
        mapping = read_yaml_mapping(path)
        assert set(mapping) <= set(GROUPS), path
        load_config(path)


def test_demo_config_is_the_default():
    assert find_config(None) == configs_dir() / "demo.yaml"
    config = load_config(find_config(None))
    assert config.tokenizer.vocab_size == 4000 and config.data.files == []


def test_unknown_yaml_key_is_named_with_closest_valid_key(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "tokenizer:\n  vocab_sise: 100\n"))
    assert "tokenizer.vocab_sise" in err.value.one_line()
    assert "did you mean tokenizer.vocab_size" in err.value.one_line()


def test_unknown_group_is_named_with_closest_group(tmp_path):
    with pytest.raises(UserError, match="unknown group 'tokeniser'.*did you mean tokenizer"):
        load_config(write(tmp_path, "tokeniser:\n  vocab_size: 100\n"))


def test_string_where_an_int_belongs_is_a_type_error_naming_the_key(tmp_path):
    with pytest.raises(UserError, match=r"tokenizer\.vocab_size: expected an integer, got '32k'"):
        load_config(write(tmp_path, "tokenizer:\n  vocab_size: 32k\n"))


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "tokenizer:\n  vocab_size: x\n  model_type: wordpiece\nmodel:\n  n_layr: 2\n"))
    text = err.value.one_line()
    assert text.startswith("3 config problems") and "\n" not in text
    assert "vocab_size" in text and "wordpiece" in text and "n_layr" in text


def test_impossible_combination_is_rejected(tmp_path):
    with pytest.raises(UserError, match="divisible"):
        load_config(write(tmp_path, "model:\n  n_embd: 100\n  n_head: 3\n"))


def test_yaml_scientific_notation_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-3` as a string; a learning rate written that way must still work.
    config = load_config(write(tmp_path, "optimization:\n  learning_rate: 1e-3\n"))
    assert config.optimization.learning_rate == pytest.approx(1e-3)


def test_invalid_yaml_is_a_one_line_error_with_the_line(tmp_path):
    with pytest.raises(UserError, match=r"line \d+") as err:
        load_config(write(tmp_path, "tokenizer:\n  vocab_size: [1,\n"))
    assert "\n" not in err.value.one_line()


def parse(argv: list[str]):
    args = build_parser(argv).parse_args(argv)
    return args, load_config(find_config(args.config), overrides_from(args))


def test_command_line_overrides_the_yaml(tmp_path):
    path = write(tmp_path, "tokenizer:\n  vocab_size: 5000\n")
    _, config = parse(["train-tokenizer", "--config", str(path), "--tokenizer-vocab-size", "32000",
                       "--optimization-learning-rate", "3e-4", "--data-files", "a.txt", "b/*.txt"])
    assert config.tokenizer.vocab_size == 32000
    assert config.optimization.learning_rate == pytest.approx(3e-4)
    assert config.data.files == ["a.txt", "b/*.txt"]


def test_booleans_have_a_flag_and_a_no_flag():
    _, on = parse(["train-tokenizer", "--data-dedupe"])
    _, off = parse(["train-tokenizer", "--no-data-dedupe", "--no-tokenizer-byte-fallback"])
    assert on.data.dedupe is True and off.data.dedupe is False and off.tokenizer.byte_fallback is False


def test_contract_flags_exist_on_every_stage_command():
    from gpt2zh.stages import STAGES

    parser = build_parser(["train-tokenizer"])
    commands = [info.command for info in STAGES] + ["run"]
    assert commands[:4] == ["train-tokenizer", "tokenize", "pretrain", "push"]
    for command in commands:
        sub = parser._subparsers._group_actions[0].choices[command]
        flags = set(sub.known_flags())
        assert set(CONTRACT_FLAGS) <= flags, command


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser(list(argv)).parse_args(list(argv))
    return capsys.readouterr().out


def test_help_shows_the_groups_a_stage_reads_and_help_all_every_field_with_its_value(capsys):
    help_text = _help(capsys, "train-tokenizer", "--help")
    for key in all_keys():
        group, field = key.split(".")
        shown = f"--{group}-{field.replace('_', '-')}" in help_text
        assert shown == (group in ("data", "tokenizer")), key
    assert "[4000 from demo.yaml]" in help_text  # the demo value, not the dataclass default
    assert "--help-all lists them" in help_text
    everything = _help(capsys, "train-tokenizer", "--help-all")
    for key in all_keys():
        group, field = key.split(".")
        assert f"--{group}-{field.replace('_', '-')}" in everything, key


def test_each_stage_help_is_a_fraction_of_all_options(capsys):
    everything = len(_help(capsys, "run", "--help").splitlines())
    lengths = {command: len(_help(capsys, command, "--help").splitlines())
               for command in ("train-tokenizer", "tokenize", "pretrain", "push")}
    assert lengths["push"] < everything / 4 and "--hub-repo-id" in _help(capsys, "push", "--help")
    assert "--hub-repo-id" not in _help(capsys, "train-tokenizer", "--help")
    assert all(length < 0.75 * everything for length in lengths.values()), (lengths, everything)


def test_flags_a_command_does_not_use_are_refused_by_name(capsys):
    for argv in (["show-config", "--force"], ["doctor", "--quiet"], ["show-config", "--cache-dir", "x"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{argv[1]} does nothing for this command" in err, err


def test_unknown_flag_is_one_line_with_closest_flag(capsys):
    assert main(["train-tokenizer", "--tokenizer-vocab-sise", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "unknown option --tokenizer-vocab-sise" in err and "did you mean --tokenizer-vocab-size?" in err


def test_a_prefix_of_a_flag_is_not_silently_accepted(capsys):
    assert main(["train-tokenizer", "--tokenizer-vocab", "100"]) == 2
    assert "unknown option --tokenizer-vocab" in capsys.readouterr().err


def test_wrong_type_on_the_command_line_names_the_flag(capsys):
    assert main(["train-tokenizer", "--tokenizer-vocab-size", "abc"]) == 2
    assert "--tokenizer-vocab-size: expected an integer, got 'abc'" in capsys.readouterr().err


def test_unknown_config_name_suggests_a_shipped_one(capsys):
    assert main(["train-tokenizer", "--config", "dmeo"]) == 2
    assert "did you mean --config demo?" in capsys.readouterr().err


def test_fingerprint_covers_only_the_groups_and_fields_a_stage_reads():
    base = Config()
    changed_training = Config()
    changed_training.training.max_steps += 1
    changed_files = Config()
    changed_files.data.files = ["other.txt"]  # the resolved files are fingerprinted separately
    changed_vocab = Config()
    changed_vocab.tokenizer.vocab_size += 1
    reads = ("data", "tokenizer")
    same = fingerprint_fields(base, reads, "tokenizer")
    assert fingerprint_fields(changed_training, reads, "tokenizer") == same
    assert fingerprint_fields(changed_files, reads, "tokenizer") == same
    assert fingerprint_fields(changed_vocab, reads, "tokenizer") != same


def test_help_exits_cleanly_from_the_console_entry():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "train-tokenizer" in out.getvalue() and "doctor" in out.getvalue()


def test_a_value_given_to_a_boolean_flag_is_one_line_that_shows_the_boolean_form(capsys):
    assert main(["train-tokenizer", "--data-dedupe", "false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'false' belongs to no option" in err and "--no-data-dedupe" in err


def test_resume_hub_without_a_repository_and_an_unknown_schedule_are_config_errors(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "checkpoint:\n  resume: hub\noptimization:\n  lr_schedule: no-such-schedule\n"
                                    "  decay_ratio: 0\n"))
    text = err.value.one_line()
    assert "checkpoint.resume hub needs hub.repo_id" in text and "lr_schedule" in text and "decay_ratio" in text


def test_a_character_coverage_sentencepiece_would_refuse_is_a_config_error_before_stage_1(tmp_path):
    """SentencePiece's trainer stops with a traceback below 0.98; the config says so in one line first."""
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "tokenizer:\n  character_coverage: 0.9\n"))
    assert "tokenizer.character_coverage must be within [0.98, 1], got 0.9" in err.value.one_line()
    assert load_config(write(tmp_path, "tokenizer:\n  character_coverage: 0.98\n")).tokenizer.character_coverage == 0.98
