"""`--model-init-from`: a run that starts from an existing GPT-2 — a run's model/, a UER-style Chinese GPT-2
with a character vocabulary, a GPT-2 with byte-level BPE — from a folder or from the Hub (the local server in
tests/hub_server.py), through the real command line."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt2zh.errors import UserError
from gpt2zh.tokenizer.adopt import _refuse_lossy
from tests.conftest import TINY_TRAIN, copy_run, one_error_line, run_cli
from tests.hub_server import LocalHub
from tests.tiny_models import gpt2_bpe_model, malicious_pickle_model, model_files, uer_style_model

SIZE_FLAGS = ("--model-n-layer", "--model-n-head", "--model-n-embd")
# TINY_TRAIN without the model's sizes, which come from the base model
TRAIN = [arg for i, arg in enumerate(TINY_TRAIN) if arg not in SIZE_FLAGS and TINY_TRAIN[i - 1] not in SIZE_FLAGS]
BLOCKS = ["--data-block-size", "64"]
TOKEN, OWNER = "hf_owner_token", "owner"


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "model" / "training_summary.json").read_text(encoding="utf-8"))


def validation_loss(model_folder: Path, run_dir: Path) -> float:
    """Mean loss of the model in model_folder on the run's validation blocks, as stage 3's evaluation computes it."""
    from datasets import load_from_disk
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(model_folder)).eval()
    blocks = torch.tensor(np.asarray(load_from_disk(str(run_dir / "dataset"))["validation"]["input_ids"][:8]))
    with torch.no_grad():
        return model(input_ids=blocks, labels=blocks).loss.item()


def init_run(run_dir: Path, corpus: Path, base: str, *extra: str, env: dict | None = None, command: str = "run"):
    return run_cli(command, "--run-dir", str(run_dir), "--data-files", str(corpus), "--model-init-from", base,
                   *BLOCKS, *TRAIN, *extra, env=env)


@pytest.fixture(scope="module")
def corpus_text(small_corpus) -> str:
    return small_corpus.read_text(encoding="utf-8")


def test_continued_training_starts_where_the_base_model_ended_below_a_fresh_model_and_keeps_its_tokenizer(
        trained, small_corpus, tmp_path):
    base_run, _ = trained
    run_dir = tmp_path / "continued"
    result = init_run(run_dir, small_corpus, str(base_run / "model"))
    assert result.returncode == 0, result.stderr
    fresh, continued = summary_of(base_run), summary_of(run_dir)
    # the same held-out documents and tokenizer give the same validation blocks: step 0 of the new run is the
    # base model's last evaluation, far below the ln(vocabulary) a fresh model starts at
    assert continued["initial_eval_loss"] == pytest.approx(fresh["final_eval_loss"], abs=1e-4)
    assert continued["initial_eval_loss"] < fresh["initial_eval_loss"] - 0.03
    assert continued["base_model"]["model"] == str((base_run / "model").resolve())
    assert continued["base_model"]["weights"] == "safetensors"
    assert "started from" in result.stdout and "starting from the weights of" in result.stderr
    base_vocab = json.loads((base_run / "model" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    for folder in ("tokenizer", "model"):
        adopted = json.loads((run_dir / folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        assert adopted == base_vocab, folder


@pytest.fixture(scope="module")
def uer_run(tmp_path_factory, small_corpus, corpus_text) -> tuple[Path, Path, object]:
    """(UER-style base folder, a run started from it, the run's CompletedProcess); tests that change it copy it."""
    root = tmp_path_factory.mktemp("uer")
    base = uer_style_model(root / "uer", corpus_text)
    result = init_run(root / "run", small_corpus, str(base))
    assert result.returncode == 0, result.stderr
    return base, root / "run", result


def test_a_uer_style_model_keeps_its_character_vocabulary_ends_documents_with_sep_and_loads_its_weights(uer_run):
    base, run_dir, result = uer_run
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "model"))
    assert type(tokenizer).__name__ == "BertTokenizer" and len(tokenizer) == len(
        (base / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert tokenizer("你好，世界", add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(c)
                                                                          for c in "你好，世界"]
    manifest = json.loads((run_dir / "tokenizer" / "manifest.json").read_text(encoding="utf-8"))
    sep = tokenizer.sep_token_id
    assert manifest["special_token_ids"]["eos"] == sep
    from datasets import load_from_disk

    train = np.concatenate(load_from_disk(str(run_dir / "dataset"))["train"]["input_ids"][:50])
    assert (train == sep).sum() > 10 and not (train == tokenizer.cls_token_id).any()
    assert "one [SEP] after each document" in result.stdout
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert (config["n_layer"], config["n_embd"], config["n_positions"]) == (2, 32, 128)
    assert config["eos_token_id"] == sep and config["vocab_size"] == len(tokenizer)
    # step 0 evaluated the base model's own weights (gelu_new rebuilt as the fused tanh GELU: the same function)
    assert summary_of(run_dir)["initial_eval_loss"] == pytest.approx(validation_loss(base, run_dir), abs=1e-4)
    assert "within the vocabulary" not in result.stderr and "indexing errors" not in result.stderr


def test_an_untied_base_with_its_own_epsilon_activation_and_an_n_ctx_config_trains_from_exactly_its_weights(
        small_corpus, corpus_text, tmp_path):
    """BM11: a model with only the base's sizes would tie lm_head to wte (overwriting the base's own output
    matrix) and compute another layer norm and activation, so step 0 would not be the base model. Stage 1
    runs for real; stage 3's model is built by its own functions from what stage 1 recorded."""
    from transformers import GPT2LMHeadModel

    from gpt2zh.config.schema import ModelConfig
    from gpt2zh.manifests import TokenizerManifest
    from gpt2zh.models.source import fetch_model
    from gpt2zh.models.weights import load_model
    from gpt2zh.training.model import build_model, gpt2_config, start_from_base

    architecture = {"tie_word_embeddings": False, "layer_norm_epsilon": 1e-2, "activation_function": "relu"}
    original = uer_style_model(tmp_path / "original", corpus_text, **architecture)
    base = uer_style_model(tmp_path / "uer", corpus_text, **architecture)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config["n_ctx"] = config.pop("n_positions")  # as configs older than transformers 4 name it
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    run_dir = tmp_path / "run"
    assert init_run(run_dir, small_corpus, str(base), command="train-tokenizer").returncode == 0
    manifest = TokenizerManifest.read(run_dir / "tokenizer")

    reference = GPT2LMHeadModel.from_pretrained(str(original)).eval()
    model = build_model(gpt2_config(ModelConfig(n_layer=2, n_head=2, n_embd=32, n_positions=128), manifest, "sdpa"))
    start_from_base(model, manifest.base_model, None)
    evaluated, _ = load_model(fetch_model(str(base), "--model"), "--model base")  # gpt2zh evaluate / generate
    ids = torch.randint(0, config["vocab_size"], (2, 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(ids).logits
        for built in (model.eval(), evaluated):
            assert built.lm_head.weight.data_ptr() != built.transformer.wte.weight.data_ptr()  # untied
            assert built.config.n_positions == 128
            assert torch.allclose(built(ids).logits, expected, atol=1e-5)


def test_the_card_of_a_run_continued_from_a_folder_names_its_separator_and_not_this_machines_path(uer_run):
    from gpt2zh.hub.card import render_model_card

    base, run_dir, _ = uer_run
    card = render_model_card(run_dir, summary_of(run_dir), "me/uer-continued", "mit")
    assert "Each document is followed by `[SEP]`" in card and "<|endoftext|>" not in card
    assert str(base.parent) not in card and f"continued from `{base.parent.name}/{base.name}`" in card
    assert "add_special_tokens=False, max_new_tokens=50" in card


def test_characters_a_character_vocabulary_lacks_are_counted_and_shown_before_training(small_corpus, corpus_text,
                                                                                       tmp_path):
    base = uer_style_model(tmp_path / "uer", corpus_text[:3000])  # most of the corpus' characters are unseen
    result = init_run(tmp_path / "run", small_corpus, str(base), "--tokenizer-allow-lossy", command="train-tokenizer")
    assert result.returncode == 0, result.stderr
    assert "adopted anyway (--tokenizer-allow-lossy)" in result.stderr
    stats = json.loads((tmp_path / "run" / "tokenizer" / "stats.json").read_text(encoding="utf-8"))["quality"]
    assert stats["unk_tokens"] > 0 and stats["unknown_characters"]
    warning = next(line for line in result.stderr.splitlines() if "cannot represent" in line)
    assert f"{stats['unk_tokens']:,} character occurrence(s)" in warning and "PITFALLS.md BM3" in warning
    assert stats["unknown_characters"][0] in warning
    assert f"{stats['unk_tokens']:,} [UNK]" in result.stdout  # the summary row
    tokenized = run_cli("tokenize", "--run-dir", str(tmp_path / "run"))  # every document, not the sample
    assert tokenized.returncode == 0, tokenized.stderr
    dataset = json.loads((tmp_path / "run" / "dataset" / "stats.json").read_text(encoding="utf-8"))
    from datasets import load_from_disk

    from gpt2zh.models.text import load_tokenizer

    unk_id = load_tokenizer(base, "--model uer").unk_token_id
    packed = sum(int((np.asarray(load_from_disk(str(tmp_path / "run" / "dataset"))[split]["input_ids"]) == unk_id)
                     .sum()) for split in ("train", "validation"))
    counted = sum(dataset["splits"][split]["unk_tokens"] for split in ("train", "validation"))
    tails = sum(dataset["splits"][split]["dropped_tail_tokens"] for split in ("train", "validation"))
    assert packed <= counted <= packed + tails and counted > stats["unk_tokens"]
    assert f"{counted:,} [UNK]" in tokenized.stdout
    assert any("became [UNK]" in line and "PITFALLS.md BM3" in line for line in tokenized.stderr.splitlines())


def test_a_base_whose_vocabulary_loses_too_much_of_the_corpus_is_refused_before_stage_2_naming_the_characters(
        small_corpus, corpus_text, tmp_path):
    base = uer_style_model(tmp_path / "uer", corpus_text[:3000])  # most of the corpus' characters are unseen
    result = init_run(tmp_path / "run", small_corpus, str(base))
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "cannot represent" in error and "of the corpus's characters" in error and "most often" in error
    lost = re.search(r"most often (\S+) ×", error)[1]
    assert lost in corpus_text and lost not in corpus_text[:3000]  # a character the corpus has and the vocabulary lacks
    assert "--tokenizer-allow-lossy" in error and "PITFALLS.md NU11" in error
    assert not (tmp_path / "run" / "tokenizer").exists() and not (tmp_path / "run" / "dataset").exists()


def test_a_base_losing_more_than_a_tenth_of_a_percent_of_the_characters_is_refused_and_one_losing_that_much_is_not():
    # (NU11) the boundary of _refuse_lossy: LOSSY_SHARE (0.1 %) itself is adopted, 0.11 % is refused unless allowed
    figures = {"lost_share": 0.001, "documents": 25, "held_out": True, "unknown_token": "[UNK]",
               "lost_examples": "𠀀 ×3"}
    _refuse_lossy("--model-init-from uer", figures, False)
    with pytest.raises(UserError, match=r"cannot represent 0\.11% of the corpus's characters.*most often 𠀀 ×3"):
        _refuse_lossy("--model-init-from uer", {**figures, "lost_share": 0.0011}, False)
    _refuse_lossy("--model-init-from uer", {**figures, "lost_share": 0.0011}, True)  # --tokenizer-allow-lossy


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: OWNER}) as server:
        yield server


def hub_env(hub: LocalHub, home: Path, token: str | None = TOKEN) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", **({"HF_TOKEN": token} if token else {})})
    return env


def test_a_hub_model_is_pinned_to_the_commit_stage_1_adopted_even_when_its_branch_moves_on(
        hub, small_corpus, demo_documents, tmp_path):
    first = gpt2_bpe_model(tmp_path / "bpe-1", demo_documents[:1500], seed=1)
    second = gpt2_bpe_model(tmp_path / "bpe-2", demo_documents[:1500], seed=2)  # same tokenizer, other weights
    commit = hub.add_model(f"{OWNER}/gpt2-bpe", model_files(first), private=True)
    env, run_dir = hub_env(hub, tmp_path / "hf-home"), tmp_path / "run"
    result = init_run(run_dir, small_corpus, f"{OWNER}/gpt2-bpe", env=env, command="train-tokenizer")
    assert result.returncode == 0, result.stderr
    assert "decode(encode(x)) == x for 25 of 25 documents" in result.stdout
    hub.add_model(f"{OWNER}/gpt2-bpe", model_files(second))  # main moves on between stage 1 and stage 3
    again = init_run(run_dir, small_corpus, f"{OWNER}/gpt2-bpe", env=env, command="train-tokenizer")
    assert again.returncode == 2 and one_error_line(again.stderr), again.stderr
    assert f"to keep it, pass --model-init-from {OWNER}/gpt2-bpe@{commit}" in again.stderr
    for stage in ("tokenize", "pretrain"):
        result = init_run(run_dir, small_corpus, f"{OWNER}/gpt2-bpe", env=env, command=stage)
        assert result.returncode == 0, result.stderr
    summary = summary_of(run_dir)
    assert summary["base_model"]["hub"] == f"{OWNER}/gpt2-bpe" and summary["base_model"]["commit"] == commit
    assert summary["initial_eval_loss"] == pytest.approx(validation_loss(first, run_dir), abs=1e-4)
    assert summary["initial_eval_loss"] != pytest.approx(validation_loss(second, run_dir), abs=1e-3)
    from gpt2zh.hub.card import render_model_card

    card = render_model_card(run_dir, summary, f"{OWNER}/continued", "mit")
    assert f"base_model: {OWNER}/gpt2-bpe" in card and f"continued from [{OWNER}/gpt2-bpe]" in card


def test_a_uer_style_model_from_the_hub_gives_the_tokenizer_its_folder_gives(hub, small_corpus, corpus_text,
                                                                             tmp_path):
    base = uer_style_model(tmp_path / "uer", corpus_text)
    hub.add_model(f"{OWNER}/uer-tiny", model_files(base))
    runs = {}
    for name, reference, env in (("folder", str(base), None),
                                 ("hub", f"{OWNER}/uer-tiny", hub_env(hub, tmp_path / "hf-home", token=None))):
        runs[name] = tmp_path / name
        result = init_run(runs[name], small_corpus, reference, env=env, command="train-tokenizer")
        assert result.returncode == 0, result.stderr
    adopted = {name: (run / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8") for name, run in runs.items()}
    assert adopted["folder"] == adopted["hub"]


def test_a_missing_hub_model_or_revision_is_one_line_and_writes_nothing(hub, small_corpus, demo_documents, tmp_path):
    hub.add_model(f"{OWNER}/gpt2-bpe", model_files(gpt2_bpe_model(tmp_path / "bpe", demo_documents[:500])),
                  private=True)
    env = hub_env(hub, tmp_path / "hf-home", token=None)
    unfinished = tmp_path / "unfinished"  # stages 1-2 done, no model/ yet
    (unfinished / "tokenizer").mkdir(parents=True)
    (unfinished / "tokenizer" / "manifest.json").write_text("{}", encoding="utf-8")
    for reference, expected in ((f"{OWNER}/gpt2-bpe", "not found, or private and your token cannot read it"),
                                (f"{OWNER}/nothing@main", "not found"),
                                ("./no/such/folder", "no such folder, and not a Hub model id"),
                                (str(unfinished), "a run directory without a finished model/")):
        result = init_run(tmp_path / "run", small_corpus, reference, env=env, command="train-tokenizer")
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "run" / "tokenizer").exists()
    result = init_run(tmp_path / "run", small_corpus, f"{OWNER}/gpt2-bpe@v9", env=hub_env(hub, tmp_path / "hf-home"),
                      command="train-tokenizer")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "has no branch, tag or commit 'v9'" in result.stderr and not (tmp_path / "run" / "tokenizer").exists()


def test_resume_with_a_model_folder_is_refused_and_points_at_model_init_from(trained, tmp_path):
    base_run, _ = trained
    result = run_cli("pretrain", "--run-dir", str(base_run), "--resume", str(base_run / "model"), "--force")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "that is a model" in result.stderr and f"--model-init-from {base_run / 'model'}" in result.stderr
    hub_id = run_cli("pretrain", "--run-dir", str(base_run), "--resume", "uer/gpt2-chinese-cluecorpussmall", "--force")
    assert hub_id.returncode == 2 and one_error_line(hub_id.stderr), hub_id.stderr
    assert "--model-init-from uer/gpt2-chinese-cluecorpussmall" in hub_id.stderr


def test_stage_3_refuses_a_base_model_other_than_the_one_stage_1_adopted_the_tokenizer_of(uer_run, corpus_text,
                                                                                          tmp_path):
    run_dir = copy_run(uer_run[1], tmp_path)
    before = (run_dir / "model" / "model.safetensors").read_bytes()
    other = uer_style_model(tmp_path / "other", corpus_text, seed=4)
    for flags, named in ((["--model-init-from", str(other)], f"--model-init-from {other}"),
                         (["--model-init-from", ""], "no --model-init-from")):
        result = run_cli("pretrain", "--run-dir", str(run_dir), *flags, "--force", "--resume", "never")
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
        assert named in result.stderr and f"the tokenizer of {uer_run[0]}" in result.stderr
    assert (run_dir / "model" / "model.safetensors").read_bytes() == before


def test_a_relative_model_init_from_is_saved_absolute_and_a_moved_base_leaves_the_sizes_stage_1_recorded(
        small_corpus, corpus_text, tmp_path):
    """`models/uer` is shaped like a Hub id: the folder that exists is the one meant, as for from_pretrained."""
    work = tmp_path / "work"
    base = uer_style_model(work / "models" / "uer", corpus_text)
    run_dir = tmp_path / "run"
    result = run_cli("train-tokenizer", "--run-dir", str(run_dir), "--data-files", str(small_corpus),
                     "--model-init-from", "models/uer", *BLOCKS, cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"init_from: {base}" in (run_dir / "settings.yaml").read_text(encoding="utf-8")
    tokenized = run_cli("tokenize", "--run-dir", str(run_dir))  # from the repository, where models/uer is not
    assert tokenized.returncode == 0, tokenized.stderr
    base.rename(work / "moved")  # later commands on the run take the sizes stage 1 recorded
    shown = run_cli("show-config", "--run-dir", str(run_dir), "--sources")
    assert shown.returncode == 0, shown.stderr
    assert "n_layer: 2" in shown.stdout and "(as stage 1 read it)" in shown.stdout


def test_a_base_model_gone_since_stage_1_is_refused_before_earlier_checkpoints_are_moved(uer_run, tmp_path):
    import shutil

    run_dir = copy_run(uer_run[1], tmp_path)
    gone = tmp_path / "gone-base"
    manifest_path = run_dir / "tokenizer" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for record in (manifest["base_model"], manifest["inputs"]["base_model"]):  # stage 1 adopted it from `gone`
        record.update(reference=str(gone), folder=str(gone))
    manifest["base_model"]["label"] = str(gone)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    checkpoints = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    result = run_cli("pretrain", "--run-dir", str(run_dir), "--model-init-from", str(gone), "--force",
                     "--resume", "never")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert f"--model-init-from {str(gone)!r}: no such folder" in result.stderr
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == checkpoints
    assert not list(run_dir.glob("checkpoints.previous-*"))
    shutil.rmtree(run_dir)


def test_the_runs_own_checkpoint_comes_before_the_base_model(uer_run, tmp_path):
    run_dir = copy_run(uer_run[1], tmp_path)
    before = summary_of(run_dir)
    result = run_cli("pretrain", "--run-dir", str(run_dir), "--force")  # retrains from the last checkpoint
    assert result.returncode == 0, result.stderr
    assert "only decides where a run without a checkpoint starts" in result.stderr
    after = summary_of(run_dir)
    assert after["resumed_from_step"] == before["steps"]
    assert after["base_model"]["weights"].startswith("from checkpoint-")


def test_sizes_come_from_the_base_model_and_a_conflicting_command_line_size_is_one_line(small_corpus, corpus_text,
                                                                                       tmp_path):
    from gpt2zh.models.text import load_tokenizer

    base = uer_style_model(tmp_path / "uer", corpus_text)
    shown = run_cli("show-config", "--run-dir", str(tmp_path / "run"), "--model-init-from", str(base), "--sources",
                    *BLOCKS)
    assert shown.returncode == 0, shown.stderr
    n_layer = next(line for line in shown.stdout.splitlines() if line.strip().startswith("n_layer:"))
    assert n_layer.split("#")[0].strip() == "n_layer: 2" and f"the base model {base}" in n_layer  # demo.yaml: 4
    result = init_run(tmp_path / "run", small_corpus, str(base), "--model-n-embd", "64", command="train-tokenizer")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "--model-n-embd 64 conflicts with --model-init-from" in result.stderr and "n_embd 32" in result.stderr
    longer = run_cli("plan", "--run-dir", str(tmp_path / "run"), "--model-init-from", str(base),
                     "--data-block-size", "256")
    assert longer.returncode == 2 and one_error_line(longer.stderr), longer.stderr
    assert "data.block_size 256 (the command line) is longer than the context" in longer.stderr
    assert "n_positions 128" in longer.stderr
    vocab_size = next(line for line in shown.stdout.splitlines() if line.strip().startswith("vocab_size:"))
    assert vocab_size.split("#")[0].strip() == f"vocab_size: {len(load_tokenizer(base, 'uer'))}"
    whole = run_cli("plan", "--run-dir", str(tmp_path / "run"), "--model-init-from", str(base),
                    "--data-block-size", "128")  # the whole context is allowed
    assert whole.returncode == 0, whole.stderr
    vocabulary = run_cli("plan", "--run-dir", str(tmp_path / "run"), "--model-init-from", str(base),
                         "--tokenizer-vocab-size", "5000", *BLOCKS)
    assert vocabulary.returncode == 2 and one_error_line(vocabulary.stderr), vocabulary.stderr
    assert "--tokenizer-vocab-size 5000 conflicts with --model-init-from" in vocabulary.stderr


def test_another_base_model_for_a_finished_tokenizer_needs_force(small_corpus, corpus_text, tmp_path):
    base = uer_style_model(tmp_path / "uer", corpus_text)
    run_dir = tmp_path / "run"
    assert init_run(run_dir, small_corpus, str(base), command="train-tokenizer").returncode == 0
    uer_style_model(base, corpus_text, seed=5)  # the same folder, other weights
    result = init_run(run_dir, small_corpus, str(base), command="train-tokenizer")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert f"the files of --model-init-from {base} changed since stage 1 (model.safetensors)" in result.stderr
    assert "--force" in result.stderr


def test_pickle_weights_are_read_only_through_weights_only_and_a_hostile_pickle_runs_nothing(corpus_text, tmp_path):
    from gpt2zh.models.source import fetch_model
    from gpt2zh.models.weights import PICKLE_FORMAT, load_model

    pickled = uer_style_model(tmp_path / "bin", corpus_text, weights="bin")
    safe = uer_style_model(tmp_path / "safe", corpus_text)
    model, weights_format = load_model(fetch_model(str(pickled), "--model"), "--model bin")
    reference, _ = load_model(fetch_model(str(safe), "--model"), "--model safe")
    assert weights_format == PICKLE_FORMAT
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                                                strict=True))
    marker = tmp_path / "code-ran"
    hostile = malicious_pickle_model(tmp_path / "hostile", marker)
    with pytest.raises(UserError, match="objects other than tensors"):
        load_model(fetch_model(str(hostile), "--model"), "--model hostile")
    assert not marker.exists()


def test_a_model_other_than_gpt2_is_one_line_before_anything_is_written(small_corpus, corpus_text, tmp_path):
    base = uer_style_model(tmp_path / "llama", corpus_text)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config.update(model_type="llama", architectures=["LlamaForCausalLM"], auto_map={"AutoModel": "x.Model"})
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = init_run(tmp_path / "run", small_corpus, str(base), command="train-tokenizer")
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "is a llama model (LlamaForCausalLM), not GPT-2" in result.stderr
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_a_character_vocabulary_decodes_chinese_without_spaces_and_keeps_spaces_between_latin_words(corpus_text,
                                                                                                   tmp_path):
    from gpt2zh.models.text import decode_text, load_tokenizer

    tokenizer = load_tokenizer(uer_style_model(tmp_path / "uer", corpus_text + "hello world"), "--model uer")
    ids = tokenizer("你好，世界！hello world 中文", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids).startswith("你 好 ， 世 界")  # what WordPiece itself gives back
    assert decode_text(tokenizer, ids) == "你好，世界！hello world中文"
    inside = tokenizer("hello", add_special_tokens=False)["input_ids"][1:]  # a continuation that starts mid-word
    assert tokenizer.convert_ids_to_tokens(inside[0]).startswith("##") and decode_text(tokenizer, inside) == "ello"


def test_documents_end_with_eos_or_else_sep_and_start_with_bos_or_else_cls(corpus_text, demo_documents, tmp_path):
    from gpt2zh.models.text import load_tokenizer, prompt_ids, special_token_ids

    uer = load_tokenizer(uer_style_model(tmp_path / "uer", corpus_text), "--model uer")
    assert special_token_ids(uer, "uer") == {"unk": uer.unk_token_id, "bos": uer.cls_token_id,
                                             "eos": uer.sep_token_id, "pad": uer.pad_token_id}
    # a prompt starts a document and is continued: [CLS] first, and no [SEP] that would end it
    assert prompt_ids(uer, "今天", uer.cls_token_id) == [uer.cls_token_id, *uer.convert_tokens_to_ids(["今", "天"])]
    bpe = load_tokenizer(gpt2_bpe_model(tmp_path / "bpe", demo_documents[:300]), "--model bpe")
    end = bpe.convert_tokens_to_ids("<|endoftext|>")
    assert special_token_ids(bpe, "bpe") == {"unk": end, "bos": end, "eos": end, "pad": end}


def test_checkpoints_saved_from_gpt2model_or_with_mask_buffers_load_and_a_missing_parameter_is_refused(corpus_text,
                                                                                                      tmp_path):
    from gpt2zh.models.source import fetch_model
    from gpt2zh.models.weights import gpt2_keys, load_into, load_model

    reference, _ = load_model(fetch_model(str(uer_style_model(tmp_path / "uer", corpus_text)), "--model"), "uer")
    state = reference.state_dict()
    bare = {key.removeprefix("transformer."): value for key, value in state.items() if key != "lm_head.weight"}
    bare["h.0.attn.bias"] = torch.ones(1, 1, 128, 128)  # the causal mask older checkpoints saved
    bare["h.1.attn.masked_bias"] = torch.tensor(-1e4)
    assert gpt2_keys(bare).keys() == state.keys() - {"lm_head.weight"}
    target, _ = load_model(fetch_model(str(uer_style_model(tmp_path / "other", corpus_text, seed=3)), "--model"), "o")
    load_into(target, bare, "--model bare")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), state.values(), strict=True))
    extra = {**bare, "h.2.mlp.c_fc.weight": bare["h.1.mlp.c_fc.weight"]}  # a layer the model does not have
    with pytest.raises(UserError, match=r"unexpected transformer\.h\.2\.mlp\.c_fc\.weight"):
        load_into(target, extra, "--model deeper")
    del bare["h.1.mlp.c_fc.weight"]
    with pytest.raises(UserError, match=r"missing transformer\.h\.1\.mlp\.c_fc\.weight"):
        load_into(target, bare, "--model partial")


def test_an_untied_model_without_its_output_matrix_is_refused_and_n_ctx_is_read_as_the_context():
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2zh.models.architecture import base_architecture, gpt2_fields
    from gpt2zh.models.weights import load_into

    untied = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=16, vocab_size=20,
                                        tie_word_embeddings=False))
    state = {key: value for key, value in untied.state_dict().items() if key != "lm_head.weight"}
    with pytest.raises(UserError, match=r"missing lm_head\.weight"):
        load_into(untied, state, "--model untied")
    old_style = {"model_type": "gpt2", "n_ctx": 300, "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 20}
    assert gpt2_fields(old_style)["n_positions"] == 300
    assert base_architecture({**old_style, "tie_word_embeddings": False})["tie_word_embeddings"] is False


def test_a_tokenizer_that_needs_its_repositorys_code_is_refused_and_the_code_never_runs(corpus_text, tmp_path):
    from gpt2zh.models.text import load_tokenizer

    folder = uer_style_model(tmp_path / "remote", corpus_text)
    marker = tmp_path / "code-ran"
    (folder / "evil_tokenizer.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                              "from transformers import BertTokenizer as EvilTokenizer\n")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(UserError, match="without running the repository's own code"):
        load_tokenizer(folder, "--model-init-from remote")
    assert not marker.exists()
