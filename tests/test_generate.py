"""`gpt2zh generate` streams continuations of a prompt: repeatable by seed, several on request, Chinese without
WordPiece's spaces, settings from the model's generation_config.json under the flags. Real tiny UER-style
models (tests/tiny_models.py) through the real command line; independent runs go two at a time."""

import io
import json
import logging
import random
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from gpt2zh.errors import UserError
from gpt2zh.inference.generate_command import _check_arguments, _describe, _fit_context, generation_settings
from gpt2zh.inference.streaming import TerminalStreamer
from tests.conftest import one_error_line, run_cli
from tests.tiny_models import gpt2_bpe_model, script_model, uer_style_model

PROMPT = "今天"
FILE_MAX_NEW_TOKENS = 3
HAN = "[\u4e00-\u9fff]"
TRADITIONAL, SIMPLIFIED = "今天天氣很好，我們去公園散步吧。", "今天天气很好，我们去公园散步吧。"


def generate(*args: str):
    result = run_cli("generate", *args, "--quiet")
    assert result.returncode == 0, result.stderr
    return result.stdout


def continuation(stdout: str) -> str:
    """The text after the prompt of a single sample."""
    assert stdout.startswith(PROMPT) and stdout.endswith("\n"), stdout
    return stdout[len(PROMPT):-1]


def headed_samples(stdout: str) -> list[tuple[str, str, str]]:
    """(number, seed, text) of each sample that --num-samples heads with its number and seed."""
    return re.findall(r"^── sample (\d) of \d \(seed (\d+)\) ──\n(.*)$", stdout, re.M)


def in_pairs(calls: list) -> list:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture(scope="module")
def uer_model(tmp_path_factory, demo_documents) -> Path:
    """A UER-style GPT-2 without a generation_config.json (UER's repositories have none)."""
    return uer_style_model(tmp_path_factory.mktemp("uer") / "model", "\n".join(demo_documents[:300]))


@pytest.fixture(scope="module")
def seeded(uer_model) -> list[str]:
    """Seed 7 twice, then seed 8 with two samples."""
    model = ("--model", str(uer_model), PROMPT, "--max-new-tokens", "16")
    return in_pairs([lambda: generate(*model, "--seed", "7"), lambda: generate(*model, "--seed", "7"),
                     lambda: generate(*model, "--seed", "8", "--num-samples", "2")])


@pytest.fixture(scope="module")
def configured(uer_model, tmp_path_factory) -> list[str]:
    """A copy of the model whose generation_config.json allows 3 new tokens: without flags, then with
    --max-new-tokens 24."""
    folder = tmp_path_factory.mktemp("configured") / "model"
    shutil.copytree(uer_model, folder)
    (folder / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.8, "top_k": 50, "max_new_tokens": FILE_MAX_NEW_TOKENS}))
    model = ("--model", str(folder), PROMPT, "--seed", "3")
    return in_pairs([lambda: generate(*model), lambda: generate(*model, "--max-new-tokens", "24")])


def test_the_same_seed_gives_the_same_text_and_another_seed_other_text(seeded):
    first, again, other = seeded
    assert first == again
    assert continuation(first)  # something was generated
    assert headed_samples(other)[0][2] != first.rstrip("\n")  # seed 8


def test_num_samples_prints_that_many_continuations_each_headed_by_its_seed(seeded):
    *_, two = seeded
    headed = headed_samples(two)
    assert [(number, seed) for number, seed, _ in headed] == [("1", "8"), ("2", "9")]
    texts = [text for *_, text in headed]
    assert all(text.startswith(PROMPT) and len(text) > len(PROMPT) for text in texts)
    assert texts[0] != texts[1]


def test_generation_config_json_sets_the_defaults_and_a_flag_overrides_them(configured):
    from_file, overridden = map(continuation, configured)
    # A character vocabulary: every generated token is at most one character.
    assert 0 < len(from_file) <= FILE_MAX_NEW_TOKENS
    assert len(overridden) > FILE_MAX_NEW_TOKENS


def test_a_uer_model_writes_chinese_without_spaces_between_characters(configured):
    text = continuation(configured[1])
    assert re.search(f"{HAN}{HAN}", text), text  # two characters side by side...
    assert not re.search(f"{HAN} +{HAN}", text), text  # ...and never a space between two


def test_streaming_holds_back_a_partial_character_until_its_bytes_are_complete(tmp_path, demo_documents):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_bpe_model(tmp_path / "bpe", demo_documents[:50]))
    ids = tokenizer("你好，世界", add_special_tokens=False)["input_ids"]
    assert len(ids) > len("你好，世界")  # 400 byte-level pieces: some characters take several tokens
    out = io.StringIO()
    streamer = TerminalStreamer(tokenizer, out)
    streamer.put(object())  # the prompt, which generate() puts first
    written = []
    for token in ids:
        streamer.put(torch.tensor([token]))
        written.append(out.getvalue())
    streamer.end()
    assert all("\ufffd" not in text for text in written)
    assert out.getvalue() == "你好，世界"


def test_an_empty_prompt_is_a_one_line_error_naming_the_argument(uer_model):
    result = run_cli("generate", "--model", str(uer_model), "  ")
    assert result.returncode != 0
    assert one_error_line(result.stderr) and "Traceback" not in result.stderr
    assert "PROMPT" in result.stderr and "empty" in result.stderr


def test_new_tokens_beyond_the_context_are_cut_to_fill_it_and_a_prompt_that_fills_it_is_a_one_line_error(
        uer_model, demo_documents, capsys):
    """GPT-2 has no position past n_positions (128 here): asked for more, generate would end in an IndexError."""
    from gpt2zh.cli import main

    text = "".join(demo_documents)  # characters of the model's vocabulary, one token each
    long_prompt = text[:121]  # 122 tokens with the start marker: 6 new ones fill the context
    greedy = ("--model", str(uer_model), "--max-new-tokens", "50", "--temperature", "0")
    assert main(["generate", *greedy, long_prompt]) == 0
    out, err = capsys.readouterr()
    # A typed --max-new-tokens that does not fit is a warning (a default cut to fit is only an info line).
    assert "warning: generate: 6 new tokens at most: the model's context is 128 tokens and the prompt takes 122" in (
        err.splitlines())
    assert out.startswith(long_prompt) and len(out) == len(long_prompt) + 6 + len("\n"), out[len(long_prompt):]
    assert main(["generate", *greedy, text[:127]]) == 2  # 128 tokens: no room for one more
    err = capsys.readouterr().err
    assert one_error_line(err) and "Traceback" not in err, err
    assert err.splitlines()[-1] == (f"error: generate: the prompt is 128 tokens with the start marker, and --model "
                                    f"{str(uer_model)!r} reads at most 128 — shorten the prompt")


def test_a_generation_config_that_sets_no_sampling_still_samples_and_temperature_0_is_greedy(tmp_path):
    """openai-community/gpt2's generation_config.json names only its ids: generate would be greedy without a word."""
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 1}))
    model = SimpleNamespace(source=SimpleNamespace(folder=tmp_path), ids={"eos": 1, "pad": 1})
    flags = {"max_new_tokens": None, "temperature": None, "top_k": None, "top_p": None}
    config, origin = generation_settings(model, 10, SimpleNamespace(**flags))
    assert (config.do_sample, config.temperature, config.top_k) == (True, 0.8, 50) and "sets no sampling" in origin
    greedy, _ = generation_settings(model, 10, SimpleNamespace(**{**flags, "temperature": 0.0}))
    assert greedy.do_sample is False and greedy.temperature is None
    (tmp_path / "generation_config.json").unlink()
    default, origin = generation_settings(model, 10, SimpleNamespace(**flags))
    assert (default.do_sample, default.temperature, default.top_k, default.max_new_tokens) == (True, 0.8, 50, 64)
    assert "has no generation_config.json" in origin
    flagged, _ = generation_settings(model, 10, SimpleNamespace(**{**flags, "top_p": 0.9}))
    assert flagged.do_sample is True and flagged.top_p == 0.9


def test_ctrl_c_while_generating_says_it_stopped_and_nothing_about_stages(monkeypatch, capsys):
    import gpt2zh.inference.generate_command as generate_command
    from gpt2zh.cli import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_command, "run_generate", interrupted)
    assert main(["generate", "--model", "runs/demo", PROMPT]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "stopped by Ctrl-C"


@pytest.fixture(scope="module")
def simplified_model(trained_run, tmp_path_factory) -> Path:
    """The model/ of a run whose saved settings say its corpus was converted to simplified (--data-chinese-script
    simplified), with the tiny run's tokenizer (byte fallback, trained on the simplified demo corpus)."""
    return script_model(tmp_path_factory.mktemp("simplified") / "run" / "model", trained_run / "tokenizer",
                        "simplified")


def test_a_traditional_prompt_gets_the_ids_of_the_simplified_one_on_a_model_trained_on_simplified(simplified_model):
    from gpt2zh.inference.generate_command import prompt_in_model_script
    from gpt2zh.inference.loading import open_model
    from gpt2zh.models.text import prompt_ids

    model = open_model(str(simplified_model))
    bos = model.ids["bos"]
    simplified = prompt_ids(model.tokenizer, SIMPLIFIED, bos)
    as_typed = prompt_ids(model.tokenizer, TRADITIONAL, bos)
    assert len(as_typed) > len(simplified)  # 21 against 14 tokens: traditional characters fall back to bytes
    assert prompt_ids(model.tokenizer, prompt_in_model_script(model, TRADITIONAL), bos) == simplified
    model.script = "keep"  # a model whose corpus kept its script reads the prompt as typed
    assert prompt_in_model_script(model, TRADITIONAL) == TRADITIONAL


def test_generate_feeds_the_model_the_ids_of_the_simplified_prompt_when_typed_in_traditional(simplified_model,
                                                                                          monkeypatch, capsys):
    from transformers import GPT2LMHeadModel

    from gpt2zh.cli import main
    from gpt2zh.inference.loading import open_model
    from gpt2zh.models.text import prompt_ids

    fed, generate = [], GPT2LMHeadModel.generate

    def recording(network, inputs, **kwargs):  # the real generate, after noting the ids it is given
        fed.append(inputs[0].tolist())
        return generate(network, inputs, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "generate", recording)
    assert main(["generate", "--model", str(simplified_model), TRADITIONAL, "--max-new-tokens", "1", "--seed", "1",
                 "--quiet"]) == 0
    model = open_model(str(simplified_model))
    assert fed == [prompt_ids(model.tokenizer, SIMPLIFIED, model.ids["bos"])]
    assert capsys.readouterr().out.startswith(SIMPLIFIED)


def test_generate_converts_a_prompt_to_the_script_of_a_pushed_model_and_says_so_in_one_line(simplified_model,
                                                                                          tmp_path):
    from gpt2zh.hub.stage import upload_sources
    from tests.hub_server import LocalHub

    pushed = {name: path.read_bytes() for name, path in upload_sources(simplified_model.parent).items()}
    assert "gpt2zh_config.yaml" in pushed  # the run's settings, under the name stage 4 pushes them as
    with LocalHub(tokens={}) as hub:
        hub.add_model("o/simplified", pushed)
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
               "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = run_cli("generate", "--model", "o/simplified", TRADITIONAL, "--max-new-tokens", "2", "--seed", "1",
                         env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(SIMPLIFIED)  # the text the continuation follows
    said = [line for line in result.stderr.splitlines() if "converted to simplified Chinese" in line]
    assert len(said) == 1 and SIMPLIFIED in said[0], result.stderr


def test_a_mistyped_model_folder_is_said_to_be_no_folder_here_beside_the_hubs_answer(tmp_path):
    """`runs/nosuch` reads as a Hub id too: the answer names the missing folder, not only an unreachable Hub."""
    result = run_cli("generate", "--model", "runs/nosuch", "今天", cwd=tmp_path,
                     env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "cannot reach the Hub at http://127.0.0.1:9" in result.stderr
    assert "(and there is no folder runs/nosuch here)" in result.stderr


# In-process checks of the pieces of `gpt2zh generate` (the runs above start the CLI in a child process): each
# compares whole messages and settings, as a user reads them.

def typed_flags(**given) -> SimpleNamespace:
    """The parsed command line with no sampling flag typed, and `given` typed."""
    return SimpleNamespace(**{"prompt": PROMPT, "max_new_tokens": None, "temperature": None, "top_k": None,
                              "top_p": None, "num_samples": 1, **given})


def test_an_empty_prompt_is_refused_with_an_example_of_one():
    with pytest.raises(UserError) as raised:
        _check_arguments(typed_flags(prompt=" \n"))
    assert (raised.value.message, raised.value.fix) == (
        "generate: PROMPT (the text to continue) is empty",
        'give the text to continue, e.g. gpt2zh generate --model runs/demo "今天"')


@pytest.mark.parametrize(("name", "value", "message", "fix"), [
    ("max_new_tokens", 0, "generate: --max-new-tokens 0 is out of range", "pass --max-new-tokens >= 1"),
    ("temperature", -0.5, "generate: --temperature -0.5 is out of range",
     "pass --temperature >= 0 (lower is more conservative, 0 greedy)"),
    ("top_k", -1, "generate: --top-k -1 is out of range", "pass --top-k >= 0 (0 = every token)"),
    ("top_p", 0.0, "generate: --top-p 0.0 is out of range", "pass --top-p in (0, 1]"),
    ("top_p", 1.5, "generate: --top-p 1.5 is out of range", "pass --top-p in (0, 1]"),
    ("num_samples", 0, "generate: --num-samples 0 is out of range", "pass --num-samples >= 1")])
def test_a_flag_out_of_range_is_refused_naming_the_flag_its_value_and_the_range(name, value, message, fix):
    with pytest.raises(UserError) as raised:
        _check_arguments(typed_flags(**{name: value}))
    assert (raised.value.message, raised.value.fix) == (message, fix)


def test_each_flag_s_boundary_value_is_accepted():
    assert _check_arguments(typed_flags(max_new_tokens=1, temperature=0.0, top_k=0, top_p=1.0, num_samples=1)) is None


def settings(folder: Path, generation_config: dict | None = None, vocab_size: int = 10, **typed):
    """generation_settings for a model folder holding `generation_config` (none when None), whose markers are
    eos 1 and pad 2, with `typed` flags."""
    if generation_config is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation_config))
    model = SimpleNamespace(source=SimpleNamespace(folder=folder), ids={"eos": 1, "pad": 2})
    return generation_settings(model, vocab_size, typed_flags(**typed))


def test_the_settings_say_where_they_came_from_and_which_flags_overrode_them(tmp_path):
    assert settings(tmp_path)[1] == "defaults: the model has no generation_config.json"
    assert settings(tmp_path, max_new_tokens=5, top_p=0.9)[1] == (
        "defaults: the model has no generation_config.json; --max-new-tokens, --top-p from the command line")
    assert settings(tmp_path, {"do_sample": True})[1] == "the model's generation_config.json"
    assert settings(tmp_path, {"eos_token_id": 1})[1] == (
        "the model's generation_config.json (which sets no sampling: temperature and top-k by default)")


def test_a_generation_config_without_do_sample_gets_the_default_temperature_and_top_k_only_for_gpt2s_defaults(
        tmp_path):
    """1.0 and 50 are what older transformers wrote out for every model: the file chose neither."""
    written, _ = settings(tmp_path, {"temperature": 1.0, "top_k": 50})
    assert (written.do_sample, written.temperature, written.top_k) == (True, 0.8, 50)
    chosen, _ = settings(tmp_path, {"temperature": 2.0, "top_k": 51})
    assert (chosen.do_sample, chosen.temperature, chosen.top_k) == (True, 2.0, 51)


def test_a_generation_config_that_samples_not_stays_greedy_unless_a_sampling_flag_is_typed(tmp_path):
    greedy = {"do_sample": False, "max_new_tokens": 7}
    config, _ = settings(tmp_path, greedy, max_new_tokens=5)
    assert (config.do_sample, config.max_new_tokens) == (False, 5)
    config, _ = settings(tmp_path, greedy, top_k=5)
    assert (config.do_sample, config.top_k, config.max_new_tokens) == (True, 5, 7)


def test_a_generation_config_json_is_read_as_utf_8_whatever_the_locale(tmp_path):
    """A stop string in Chinese, under an ASCII locale (as a Chinese Windows's GBK would, it misreads UTF-8)."""
    import locale

    (tmp_path / "generation_config.json").write_text('{"do_sample": false, "stop_strings": ["。"]}', encoding="utf-8")
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # what open() reads text as, unless Python runs in UTF-8 mode
    try:
        config, origin = settings(tmp_path)
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert (config.do_sample, config.stop_strings, origin) == (False, ["。"], "the model's generation_config.json")


@pytest.mark.parametrize(("eos", "pad", "kept"), [
    (3, 0, (3, 0)),  # both inside the 10-token vocabulary, the first id included
    ([3, 9], 9, ([3, 9], 9)),  # a list of ends, each inside
    (50256, 10, (1, 2)),  # UER's config: GPT-2's 50256; and the first id past the vocabulary
    ([3, 50256], -1, (1, 2)),  # one end outside is enough; a negative id
    (None, None, (1, 2))])
def test_end_and_pad_ids_outside_the_vocabulary_give_way_to_the_model_s_markers(tmp_path, eos, pad, kept):
    config, _ = settings(tmp_path, {"do_sample": True, "eos_token_id": eos, "pad_token_id": pad})
    assert (config.eos_token_id, config.pad_token_id) == kept


def test_the_settings_line_names_greedy_or_each_sampling_setting():
    from transformers import GenerationConfig

    assert _describe(GenerationConfig(do_sample=False, max_new_tokens=6)) == "greedy, up to 6 new tokens"
    assert _describe(GenerationConfig(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, max_new_tokens=64)) == (
        "sampling with temperature 0.8, top-k 50, top-p 0.95, up to 64 new tokens")
    assert _describe(GenerationConfig(do_sample=True, max_new_tokens=64)) == (
        "sampling with the full distribution, up to 64 new tokens")


def test_new_tokens_that_just_fit_are_kept_silently_and_a_default_that_does_not_is_cut_with_an_info_line(caplog):
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=6)
    _fit_context(config, 122, 128, "--model 'm'", typed=True)  # 122 + 6 = 128: the context exactly
    assert config.max_new_tokens == 6 and caplog.records == []
    config.max_new_tokens = 64
    _fit_context(config, 122, 128, "--model 'm'", typed=False)
    assert config.max_new_tokens == 6
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.INFO, "generate: 6 new tokens at most: the model's context is 128 tokens and the prompt takes 122")]
    with pytest.raises(UserError) as raised:
        _fit_context(config, 128, 128, "--model 'm'", typed=False)
    assert (raised.value.message, raised.value.fix) == (
        "generate: the prompt is 128 tokens with the start marker, and --model 'm' reads at most 128",
        "shorten the prompt")


class FlushedStdout(io.StringIO):
    """stdout that notes how much of the text had been written at each flush: what a terminal had shown."""

    def __init__(self):
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue()))


def test_each_sample_is_headed_flushed_and_the_same_text_as_its_seed_alone(uer_model, monkeypatch, capsys):
    from gpt2zh.cli import main
    from gpt2zh.inference.loading import open_model

    command = ["generate", "--model", str(uer_model), PROMPT, "--max-new-tokens", "8"]
    out = FlushedStdout()
    monkeypatch.setattr(sys, "stdout", out)
    assert main([*command, "--seed", "8", "--num-samples", "2"]) == 0
    heads = ["── sample 1 of 2 (seed 8) ──\n", "── sample 2 of 2 (seed 9) ──\n"]
    first, second = out.getvalue()[len(heads[0]):].split(heads[1])
    assert out.getvalue() == heads[0] + first + heads[1] + second and second.startswith(PROMPT), out.getvalue()
    # Each head, and each sample with its final newline, reaches the terminal before the next one is generated.
    assert {len(heads[0]), len(heads[0] + first), len(heads[0] + first + heads[1]), len(out.getvalue())} <= set(
        out.flushed_at)
    label = open_model(str(uer_model)).label
    assert (f"generate: {label} on cpu, sampling with temperature 0.8, top-k 50, up to 8 new tokens (defaults: the "
            "model has no generation_config.json; --max-new-tokens from the command line); seed 8 (--seed 8 gives "
            "the same text again)") in capsys.readouterr().err.splitlines()
    alone = FlushedStdout()
    monkeypatch.setattr(sys, "stdout", alone)
    assert main([*command, "--seed", "9"]) == 0
    assert alone.getvalue() == second


def test_without_seed_a_seed_below_2_to_the_31_is_drawn_and_named(uer_model, monkeypatch, capsys):
    from gpt2zh.cli import main

    monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, stop: stop - 1)  # the largest it can draw
    assert main(["generate", "--model", str(uer_model), PROMPT, "--max-new-tokens", "1"]) == 0
    assert capsys.readouterr().err.splitlines()[-1].endswith("; seed 2147483647 (--seed 2147483647 gives the same "
                                                            "text again)")


def test_the_model_gets_the_settings_and_a_mask_over_the_whole_prompt(uer_model, tmp_path, monkeypatch):
    """A model's own end and pad ids (inside its vocabulary) stay; the mask leaves no prompt token out."""
    from transformers import GPT2LMHeadModel

    from gpt2zh.cli import main
    from gpt2zh.inference.loading import open_model
    from gpt2zh.models.text import prompt_ids

    folder = tmp_path / "model"
    shutil.copytree(uer_model, folder)
    ids = open_model(str(folder)).ids
    (folder / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "top_k": 5, "max_new_tokens": 2, "eos_token_id": ids["eos"], "pad_token_id": ids["pad"]}))
    calls, generate = [], GPT2LMHeadModel.generate

    def recording(network, inputs, **kwargs):  # the real generate, after noting what it is given
        calls.append((inputs[0].tolist(), kwargs))
        return generate(network, inputs, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "generate", recording)
    assert main(["generate", "--model", str(folder), PROMPT, "--seed", "1", "--quiet"]) == 0
    (fed, kwargs), = calls
    assert fed == prompt_ids(open_model(str(folder)).tokenizer, PROMPT, ids["bos"])
    assert kwargs["attention_mask"].tolist() == [[1] * len(fed)]
    config = kwargs["generation_config"]
    assert (config.do_sample, config.top_k, config.max_new_tokens, config.eos_token_id, config.pad_token_id) == (
        True, 5, 2, ids["eos"], ids["pad"])
