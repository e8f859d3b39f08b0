"""`gpt2zh evaluate` compares models on the same cleaned documents by bits per character: the figure that is
fair across tokenizers, which loss per token is not. Every figure here comes from the real command line in a
fresh interpreter, on real tiny models; independent runs go two at a time (the machine has two cores)."""

import dataclasses
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from gpt2zh.config import load_config
from gpt2zh.config.schema import DataConfig
from gpt2zh.dataset.loading import load_blocks
from gpt2zh.errors import UserError
from gpt2zh.inference.documents import EvaluationText, file_text, held_out_text, run_of, run_specials
from gpt2zh.inference.evaluate_command import document_stream, evaluate_model, model_texts
from gpt2zh.inference.figures import COMPARISON_NOTE, LOST_NOTE, ModelFigures, ranked, table_lines
from gpt2zh.inference.loading import open_model
from gpt2zh.inference.scoring import windows
from gpt2zh.models.coverage import lost_characters
from gpt2zh.rundir import RunDir
from tests.conftest import REPO, one_error_line, run_cli
from tests.hub_server import LocalHub
from tests.tiny_models import gpt2_bpe_model, model_files, script_model, uer_style_model

HUB_ID = "o/tiny-uer"
PREVIOUS_RUN = REPO / "tests" / "fixtures" / "previous_release" / "run"  # a finished run, only read
BLOCK = 64  # the `trained` run's blocks and context (tests/conftest.py: TINY_DATA)
# Measured on the `trained` run: evaluate with --stride 64 gives 9.9721 bits/char where stage 3 reported 9.9682
# (0.0039 apart). The model's per-token loss has a standard deviation of 0.13 nats, so the mean over the 504
# tokens stage 3 scores (8 blocks of 63) is known to 0.13 / sqrt(504) = 0.0059 nats = 0.0071 bits/char (x 1,277
# tokens / 1,524 characters / ln 2); 0.02 is about three of those. A figure per token instead of per
# character, or separators left out, would be off by 2% or more (0.2 bits/char).
STAGE_3_TOLERANCE = 0.02
TRADITIONAL, SIMPLIFIED = "今天天氣很好，我們去公園散步吧。", "今天天气很好，我们去公园散步吧。"


def evaluate_json(*args: str, env: dict | None = None) -> list[dict]:
    result = run_cli("evaluate", *args, "--json", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def in_pairs(calls: list) -> list:
    """Each call (a function of nothing) in a pool of two: independent CLI runs side by side."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda call: call(), calls))


def written_corpus(folder: Path, documents: list[str]) -> Path:
    path = folder / "documents.txt"
    path.write_text("\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def untrained(trained, tmp_path_factory) -> Path:
    """A freshly initialised GPT-2 of the trained run's shape, saved with the run's tokenizer."""
    run_dir, _ = trained
    folder = tmp_path_factory.mktemp("untrained") / "model"
    torch.manual_seed(1)
    GPT2LMHeadModel(GPT2Config.from_pretrained(run_dir / "model")).save_pretrained(folder)
    AutoTokenizer.from_pretrained(run_dir / "model").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def comparison(trained, untrained) -> dict:
    """The untrained model (named first) and the trained one on the run's held-out documents: as JSON twice and
    as the table (the untrained one named twice there); and the trained one alone with a stride of one block."""
    run_dir, _ = trained
    args = ("--model", str(untrained), "--model", str(run_dir / "model"), "--run-dir", str(run_dir))
    first, second, table, blocks = in_pairs([
        lambda: evaluate_json(*args), lambda: evaluate_json(*args),
        lambda: run_cli("evaluate", *args, "--model", str(untrained), "--quiet"),
        lambda: evaluate_json("--model", str(run_dir), "--stride", str(BLOCK))])
    assert table.returncode == 0, table.stderr
    return {"json": [first, second], "table": table.stdout, "trained": str(run_dir / "model"), "blocks": blocks}


@pytest.fixture(scope="module")
def other_tokenizers(tmp_path_factory, demo_documents) -> dict:
    """A UER-style and a byte-level BPE model on the same 100 documents; and the UER one from a local Hub beside
    the folder it was seeded from."""
    folder = tmp_path_factory.mktemp("tokenizers")
    documents = demo_documents[:100]
    uer = uer_style_model(folder / "uer", "\n".join(documents))
    bpe = gpt2_bpe_model(folder / "bpe", documents)
    corpus = written_corpus(folder, documents)
    with LocalHub(tokens={}) as hub:
        commit = hub.add_model(HUB_ID, model_files(uer))
        # huggingface_hub reads these at import: only a fresh interpreter sees them.
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(folder / "hf-home"),
               "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
        two, hub_and_folder = in_pairs([
            lambda: evaluate_json("--model", str(uer), "--model", str(bpe), "--data-files", str(corpus)),
            lambda: evaluate_json("--model", HUB_ID, "--model", str(uer), "--data-files", str(corpus), env=env)])
    return {"documents": documents, "uer": uer, "bpe": bpe, "two": two, "hub_and_folder": hub_and_folder,
            "commit": commit}


def test_evaluating_the_same_documents_twice_gives_identical_figures(comparison):
    first, second = comparison["json"]
    assert first == second
    assert {row["documents"] for row in first} == {25}  # the run's held-out documents, every one


def test_the_trained_model_ranks_above_an_untrained_one_of_the_same_shape_and_tokenizer(comparison):
    best, worst = comparison["json"][0]
    assert best["model"] == comparison["trained"]  # named second on the command line, first by bits per character
    assert best["bits_per_char"] < worst["bits_per_char"]
    # Same tokenizer, same documents: the same tokens scored, so only the predictions differ.
    assert (best["tokens"], best["characters"]) == (worst["tokens"], worst["characters"])
    for row in (best, worst):
        assert row["bits_per_char"] == pytest.approx(row["loss_per_token"] * row["tokens"] / row["characters"]
                                                     / math.log(2))
        assert row["perplexity"] == pytest.approx(math.exp(row["loss_per_token"]))


def test_the_table_lists_models_best_first_by_bits_per_character_and_says_why(comparison):
    """The table's command names the untrained model twice: it is scored and listed once."""
    rows = [line.split() for line in comparison["table"].splitlines() if re.match(r"^\s+\d+\s", line)]
    ordered = sorted(comparison["json"][0], key=lambda row: row["bits_per_char"])
    assert [row[1] for row in rows] == [row["model"] for row in ordered]
    assert [float(row[2]) for row in rows] == [round(row["bits_per_char"], 4) for row in ordered]
    assert COMPARISON_NOTE in " ".join(comparison["table"].split())


def test_ranking_is_by_bits_per_character_never_by_loss_per_token():
    # Two tokenizers on the same 200 characters: "words" has half as many tokens, each harder to predict.
    words = ModelFigures("words", "words", documents=1, characters=200, tokens=100, nats=260.0, context=64,
                         stride=32)
    characters = ModelFigures("characters", "characters", documents=1, characters=200, tokens=200, nats=280.0,
                              context=64, stride=32)
    assert characters.loss_per_token < words.loss_per_token  # 1.4 against 2.6 nats per token
    assert words.bits_per_char < characters.bits_per_char  # 1.88 against 2.02: words predicts the text better
    assert [f.model for f in ranked([characters, words])] == ["words", "characters"]
    assert table_lines([characters, words])[1].split()[1] == "words"


@pytest.mark.parametrize(("length", "context", "stride"), [(2, 64, 32), (64, 64, 32), (65, 64, 64), (1278, 64, 32),
                                                            (1278, 64, 64), (1000, 64, 1), (300, 128, 100)])
def test_windows_score_every_token_once_with_at_least_context_minus_stride_before_it(length, context, stride):
    scored, least_context = [], context
    for window in windows(length, context, stride):
        assert window.end - window.begin <= context
        targets = range(window.end - window.scored + 1, window.end + 1)
        scored += targets
        if window.begin > 0:
            least_context = min(least_context, targets[0] - window.begin)
    assert scored == list(range(1, length))  # every token but the first, once, in order
    assert least_context >= context - stride


def test_models_with_different_tokenizers_get_chars_per_token_of_their_own_tokenizer(other_tokenizers):
    documents = other_tokenizers["documents"]
    by_folder = {Path(row["model"]).name: row for row in other_tokenizers["two"]}
    assert by_folder.keys() == {"uer", "bpe"}
    characters = sum(map(len, documents))
    for name in ("uer", "bpe"):
        tokenizer = AutoTokenizer.from_pretrained(other_tokenizers[name])
        tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in documents)
        row = by_folder[name]
        assert (row["documents"], row["characters"]) == (len(documents), characters)
        assert row["tokens"] == tokens + len(documents)  # one separator after each document
        assert row["chars_per_token"] == pytest.approx(characters / tokens)
    assert 0.95 < by_folder["uer"]["chars_per_token"] < 1.1  # one token per character (spaces get none)
    assert by_folder["bpe"]["chars_per_token"] < 0.8  # 400 byte-level pieces: a character is several


def test_a_character_model_ranks_above_a_byte_level_one_whose_loss_per_token_is_lower(other_tokenizers):
    first, second = other_tokenizers["two"]
    assert [Path(row["model"]).name for row in (first, second)] == ["uer", "bpe"]
    # The same text: 400 byte-level pieces need more, easier tokens than a character vocabulary.
    assert second["loss_per_token"] < first["loss_per_token"]
    assert first["bits_per_char"] < second["bits_per_char"]


def test_a_hub_model_evaluates_as_the_folder_it_was_seeded_from(other_tokenizers):
    rows = other_tokenizers["hub_and_folder"]
    from_hub, = (row for row in rows if row["reference"] == HUB_ID)
    from_folder, = (row for row in rows if row["reference"] == str(other_tokenizers["uer"]))
    assert from_hub["model"] == f"{HUB_ID}@{other_tokenizers['commit'][:12]}"
    figures = ("bits_per_char", "loss_per_token", "nats", "tokens", "characters", "documents", "chars_per_token")
    assert {key: from_hub[key] for key in figures} == {key: from_folder[key] for key in figures}


def test_stride_equal_to_the_block_size_agrees_with_stage_3s_bits_per_character(trained, comparison):
    run_dir, _ = trained
    stage_3 = json.loads((run_dir / "model" / "training_summary.json").read_text())["final_bits_per_char"]
    row, = comparison["blocks"]
    assert row["stride"] == row["context"] == BLOCK
    assert abs(row["bits_per_char"] - stage_3) < STAGE_3_TOLERANCE


def test_the_held_out_stream_is_stage_2s_validation_blocks_token_for_token(trained):
    run_dir, _ = trained
    model = open_model(str(run_dir))
    data = load_config(run_dir / "dataset" / "config.yaml").data  # the settings stage 2 read the corpus with
    text = held_out_text(RunDir(run_dir), data, run_specials(RunDir(run_dir)), None)
    stream = document_stream(model.tokenizer, text.texts, model.ids)
    blocks = np.concatenate([np.asarray(block["input_ids"], np.int64)
                             for block in load_blocks(run_dir / "dataset")["validation"].with_format("numpy")])
    assert stream[0] == model.ids["bos"]
    assert np.array_equal(stream[1:1 + len(blocks)], blocks)  # stage 2 drops only the final partial block
    assert len(stream) - 1 - len(blocks) < BLOCK


def test_a_run_that_holds_out_no_documents_is_an_error_that_points_at_data_files(trained):
    run_dir, _ = trained
    data = load_config(run_dir / "dataset" / "config.yaml").data
    with pytest.raises(UserError, match="holds out no documents") as raised:
        held_out_text(RunDir(run_dir), dataclasses.replace(data, validation_fraction=0.0), (), None)
    assert "--data-files" in raised.value.one_line()



def test_a_missing_run_directory_is_an_error_naming_it_and_both_ways_to_choose_documents(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as raised:
        held_out_text(RunDir(missing), DataConfig(), (), None)
    assert raised.value.message.startswith(f"--run-dir {missing} ") and "does not exist" in raised.value.message
    assert "--run-dir R" in raised.value.fix and "--data-files F" in raised.value.fix


def test_a_run_directory_without_saved_settings_is_an_error_pointing_at_the_run_that_made_the_data(tmp_path):
    with pytest.raises(UserError) as raised:
        held_out_text(RunDir(tmp_path), DataConfig(), (), None)
    assert raised.value.message.startswith(f"--run-dir {tmp_path} ") and "settings.yaml" in raised.value.message
    assert raised.value.fix.startswith("pass the run directory stages 1-2 ran in")
    assert raised.value.fix.endswith("or --data-files F")


def test_a_run_holding_out_no_documents_names_its_fraction_and_offers_data_files(tmp_path):
    corpus = written_corpus(tmp_path, ["今天天气很好。", "我们去公园散步吧。"])
    data = DataConfig(files=[str(corpus)])
    with pytest.raises(UserError) as raised:  # a fraction of 0: nothing to look for
        held_out_text(RunDir(PREVIOUS_RUN), dataclasses.replace(data, validation_fraction=0.0), (), None)
    assert raised.value.message.startswith(f"--run-dir {PREVIOUS_RUN} ") and "validation_fraction is 0" in \
        raised.value.message
    assert raised.value.fix.startswith("pass --data-files F ")
    with pytest.raises(UserError) as raised:  # two documents at one in a million: none drawn
        held_out_text(RunDir(PREVIOUS_RUN), dataclasses.replace(data, validation_fraction=1e-6), (), None)
    assert raised.value.message.startswith(f"--run-dir {PREVIOUS_RUN}: ") and "1e-06" in raised.value.message
    assert raised.value.fix.startswith("pass --data-files F to evaluate on other text")
    assert raised.value.fix.endswith("a larger --data-validation-fraction")


def test_data_files_with_no_text_left_after_cleaning_is_an_error_naming_every_file(tmp_path):
    short, shorter = tmp_path / "a.txt", tmp_path / "b.txt"
    short.write_text("今天天气很好。\n", encoding="utf-8")
    shorter.write_text("好。\n", encoding="utf-8")
    with pytest.raises(UserError) as raised:
        file_text(DataConfig(files=[str(short), str(shorter)], min_chars=100), (), None)
    assert raised.value.message.startswith(f"--data-files {short} {shorter}: ")
    assert "no text left after cleaning" in raised.value.message
    assert raised.value.fix.startswith("check the files") and raised.value.fix.endswith("--data-text-field")


def test_evaluation_documents_lose_the_run_s_special_token_strings_as_stage_2_removed_them(tmp_path):
    corpus = written_corpus(tmp_path, ["今天<|endoftext|>天气很好。", "我们去公园散步吧。"])
    text = file_text(DataConfig(files=[str(corpus)]), ("<|endoftext|>",), None)
    assert text.texts == ["今天天气很好。", "我们去公园散步吧。"]


def test_the_run_s_special_token_strings_are_those_its_tokenizer_marks_special(tmp_path):
    tokenizer = json.loads((PREVIOUS_RUN / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    special = {token["content"] for token in tokenizer["added_tokens"] if token["special"]}
    assert special and set(run_specials(RunDir(PREVIOUS_RUN))) == special
    assert run_specials(RunDir(tmp_path)) == ()  # no tokenizer stage: nothing to remove


def test_the_run_of_the_models_is_the_first_model_folder_or_run_directory_with_saved_settings(tmp_path):
    standalone = tmp_path / "standalone"  # a model folder in no run directory
    standalone.mkdir()
    (standalone / "config.json").write_text("{}", encoding="utf-8")
    model = str(PREVIOUS_RUN / "model")
    run = PREVIOUS_RUN.resolve()
    assert run_of([str(tmp_path / "nowhere"), str(standalone), model, str(tmp_path)]) == (run, model)
    assert run_of([str(PREVIOUS_RUN)]) == (run, str(PREVIOUS_RUN))  # the run directory itself names its model/
    assert run_of([str(standalone), HUB_ID]) is None


def test_reading_the_documents_reports_progress_in_bytes_of_the_files(tmp_path, demo_documents, capsys):
    """In a log file (stderr is captured here, not a terminal) the closing line says the whole corpus was read."""
    from tqdm import tqdm

    corpus = written_corpus(tmp_path, demo_documents[:50])
    capsys.readouterr()
    file_text(DataConfig(files=[str(corpus)]), (), None)
    size = tqdm.format_sizeof(corpus.stat().st_size)
    assert corpus.stat().st_size > 1000  # shown scaled: 12.3k, not 12,345
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"reading documents: 100 % ({size} of {size}B), "), last

@pytest.mark.parametrize("limit", [1, 3])
def test_max_documents_n_scores_exactly_the_first_n_documents(tmp_path, demo_documents, limit):
    """`--max-documents 3` of 10: the first 3, never a 4th (what the figures' `documents` counts)."""
    documents = demo_documents[:10]
    text = file_text(DataConfig(files=[str(written_corpus(tmp_path, documents))]), (), limit)
    assert text.texts == documents[:limit] and text.described.startswith(f"{limit} document(s) of")


def test_max_documents_n_scores_exactly_the_first_n_held_out_documents(trained):
    run_dir, _ = trained
    data = load_config(run_dir / "dataset" / "config.yaml").data
    every = held_out_text(RunDir(run_dir), data, (), None).texts
    text = held_out_text(RunDir(run_dir), data, (), 3)
    assert len(every) > 3 and text.texts == every[:3] and text.described.startswith("3 held-out document(s)")


def test_a_model_path_that_does_not_exist_is_a_one_line_error(tmp_path):
    result = run_cli("evaluate", "--model", str(tmp_path / "nowhere"), "--data-files", str(tmp_path))
    assert result.returncode != 0
    assert one_error_line(result.stderr) and "Traceback" not in result.stderr
    assert f"--model '{tmp_path / 'nowhere'}'" in result.stderr


@pytest.fixture(scope="module")
def lossy_comparison(tmp_path_factory, demo_documents) -> dict:
    """Two UER-style models on the same 100 documents: one whose vocabulary has every character of them, one whose
    vocabulary has none of their Chinese characters (only punctuation and ASCII): as JSON and as the table."""
    folder = tmp_path_factory.mktemp("lossy")
    documents = demo_documents[:100]
    full = uer_style_model(folder / "full", "\n".join(documents))
    lossy = uer_style_model(folder / "lossy", "")
    args = ("--model", str(lossy), "--model", str(full), "--data-files", str(written_corpus(folder, documents)))
    rows, table = in_pairs([lambda: evaluate_json(*args), lambda: run_cli("evaluate", *args, "--quiet")])
    assert table.returncode == 0, table.stderr
    return {"json": rows, "table": table, "full": str(full), "lossy": str(lossy)}


def test_a_model_whose_tokenizer_reads_most_of_the_text_as_unk_is_listed_apart_never_above_one_that_loses_none(
        lossy_comparison):
    first, second = lossy_comparison["json"]
    assert (first["model"], first["rank"], first["lost_share"], first["listed_apart"]) == \
        (lossy_comparison["full"], 1, 0.0, None)
    assert second["model"] == lossy_comparison["lossy"] and second["rank"] is None
    assert second["lost_share"] > 0.9 and "[UNK]" in second["listed_apart"]
    # What the listing keeps from it: predicting [UNK] is easy, so its bits per character look better.
    assert second["bits_per_char"] < first["bits_per_char"]
    table = lossy_comparison["table"]
    ranked_rows = [line.split() for line in table.stdout.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert [row[1] for row in ranked_rows] == [lossy_comparison["full"]]
    apart = [line for line in table.stdout.splitlines() if line.strip().startswith("listed apart")]
    assert len(apart) == 1 and lossy_comparison["lossy"] in apart[0] and "[UNK]" in apart[0]
    assert LOST_NOTE in " ".join(table.stdout.split())  # how bits per character treat what was lost


def test_a_tokenizer_losing_at_most_the_stated_share_is_ranked_and_one_losing_more_is_listed_apart():
    def model(name: str, nats: float, lost: int) -> ModelFigures:  # 2 characters a token: the share is of characters
        return ModelFigures(name, name, documents=1, characters=10_000, tokens=5_000, nats=nats, context=64,
                            stride=32, lost=lost, unknown_token="[UNK]")

    whole, few_lost, many_lost = model("whole", 60_000.0, 0), model("few", 59_000.0, 10), model("many", 500.0, 11)
    assert (few_lost.listed_apart, many_lost.listed_apart is not None) == (None, True)  # 0.10 % and 0.11 %
    assert (few_lost.lost_share, many_lost.lost_share) == (0.001, 0.0011)
    assert [f.model for f in ranked([many_lost, whole, few_lost])] == ["few", "whole", "many"]
    lines = table_lines([many_lost, whole, few_lost])
    assert [line.split()[:2] for line in lines[1:4]] == [["1", "few"], ["2", "whole"], ["-", "many"]]


def test_a_latin_word_a_wordpiece_vocabulary_lacks_is_one_unknown_token_that_loses_each_of_its_characters(tmp_path):
    # (NU10) a WordPiece [UNK] stands for the whole word when one of its characters is missing (here 'ü')
    tokenizer = AutoTokenizer.from_pretrained(str(uer_style_model(tmp_path / "uer", SIMPLIFIED)))
    text = "今天去Zürich散步，Zürich很好。"
    loss = lost_characters(tokenizer, [text], tokenizer.unk_token_id)
    assert (loss.characters, loss.unknown_tokens, loss.lost) == (len(text), 2, 2 * len("Zürich"))
    assert loss.spans == {"Zürich": 2}


def test_evaluate_converts_the_documents_to_the_script_the_model_was_trained_on(tmp_path, caplog):
    # a character vocabulary of the simplified text only: a traditional character would be [UNK]
    base = uer_style_model(tmp_path / "uer", SIMPLIFIED)
    model = open_model(str(script_model(tmp_path / "model", base, "simplified")))
    device = torch.device("cpu")
    traditional = evaluate_model(model, EvaluationText([TRADITIONAL], "traditional"), None, device)
    simplified = evaluate_model(model, EvaluationText([SIMPLIFIED], "simplified"), None, device)
    assert (traditional.nats, traditional.tokens, traditional.converted) == (simplified.nats, simplified.tokens, 1)
    said = [r.getMessage() for r in caplog.records if "converted to it" in r.getMessage()]
    assert len(said) == 2 and "simplified Chinese" in said[0] and said[0].endswith("1 of 1 changed")  # a line each
    # Documents the run's own cleaning already converted (its data.chinese_script) are not converted again.
    again = evaluate_model(model, EvaluationText([SIMPLIFIED], "simplified"), None, device, "simplified")
    assert (again.nats, again.converted) == (simplified.nats, 0)
    # A model whose corpus kept its script reads the documents as cleaned, whatever script that was.
    model.script = "keep"
    caplog.clear()
    assert model_texts(model, EvaluationText([TRADITIONAL], "traditional"), "simplified") == ([TRADITIONAL], 0)
    assert not any("converted to it" in r.getMessage() for r in caplog.records)
