"""`gpt2zh generate` streams continuations of a prompt: repeatable by seed, several on request, Chinese without
WordPiece's spaces, settings from the model's generation_config.json under the flags. Real tiny UER-style
models (tests/tiny_models.py) through the real command line; independent runs go two at a time."""

import io
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

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
    assert "6 new tokens at most: the model's context is 128 tokens and the prompt takes 122" in err
    assert out.startswith(long_prompt) and len(out) == len(long_prompt) + 6 + len("\n"), out[len(long_prompt):]
    assert main(["generate", *greedy, text[:127]]) == 2  # 128 tokens: no room for one more
    err = capsys.readouterr().err
    assert one_error_line(err) and "Traceback" not in err, err
    assert "the prompt is 128 tokens with the start marker" in err and "shorten the prompt" in err


def test_a_generation_config_that_sets_no_sampling_still_samples_and_temperature_0_is_greedy(tmp_path):
    """openai-community/gpt2's generation_config.json names only its ids: generate would be greedy without a word."""
    from types import SimpleNamespace

    from gpt2zh.inference.generate_command import generation_settings

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
