"""What each stage's output depends on (pipeline/fingerprints.py): the base model a tokenizer adopted, the
tokenizer a dataset or model was built with, and a corpus file's identity, hashed only where it has to be."""

from pathlib import Path

from gpt2zh.config import Config
from gpt2zh.config.loader import fingerprint_fields
from gpt2zh.corpus.digests import cache_file
from gpt2zh.corpus.sources import Source
from gpt2zh.fingerprints import (
    dataset_inputs,
    expected_tokenizer_fingerprint,
    recorded_base_model,
    tokenizer_inputs,
    training_inputs,
)
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.rundir import fingerprint

BASE = "uer/gpt2-chinese-cluecorpussmall"
RESOLVED = {"reference": BASE, "hub": BASE, "commit": "0123456789abcdef0123456789abcdef01234567"}


def _tokenizer(inputs: dict, tokenizer_fingerprint: str = "t" * 20) -> TokenizerManifest:
    return TokenizerManifest(fingerprint=tokenizer_fingerprint, inputs=inputs, vocab_size=21128, special_tokens={},
                             special_token_ids={"eos": 102}, tokenizer_sha256="d" * 64)


def _adopting(reference: str = BASE) -> Config:
    config = Config()
    config.model.init_from = reference
    return config


def test_an_adopted_base_model_is_a_tokenizer_input_as_resolved_or_else_as_named():
    config = _adopting()
    named = {"format": 2, "config": fingerprint_fields(config, ("data", "tokenizer"), "tokenizer"), "sources": []}
    assert tokenizer_inputs(config, [], RESOLVED) == {**named, "base_model": RESOLVED}
    assert tokenizer_inputs(config, [], None) == {**named, "base_model": {"reference": BASE}}
    assert "base_model" not in tokenizer_inputs(Config(), [], RESOLVED)  # trained here: no base model


def test_the_base_model_stage_1_recorded_counts_only_while_the_config_names_the_same_one():
    adopted = _tokenizer({"base_model": RESOLVED})
    assert recorded_base_model(_adopting(), adopted) == RESOLVED
    assert recorded_base_model(_adopting("gpt2"), adopted) is None
    assert recorded_base_model(_adopting(), _tokenizer({})) is None
    assert recorded_base_model(_adopting(), None) is None


def test_a_tokenizer_adopted_from_a_base_model_is_up_to_date_without_looking_at_the_hub_again():
    """Stage 2 checks stage 1's output against the commit stage 1 recorded, not the bare name."""
    config = _adopting()
    adopted = _tokenizer({"base_model": RESOLVED}, fingerprint(tokenizer_inputs(config, [], RESOLVED)))
    assert expected_tokenizer_fingerprint(config, [], adopted) == adopted.fingerprint
    assert expected_tokenizer_fingerprint(config, [], None) == fingerprint(tokenizer_inputs(config, [], None))


def test_a_dataset_built_with_a_tokenizer_this_command_retrains_says_so_instead_of_a_fingerprint():
    assert dataset_inputs(Config(), [], None) == {
        "format": 1, "config": fingerprint_fields(Config(), ("data",), "dataset"), "sources": [],
        "tokenizer": "(rebuilt by this command)"}


def test_training_inputs_before_stage_1_ran_name_no_tokenizer():
    assert training_inputs(Config(), None, []) == {
        "format": 1, "config": fingerprint_fields(Config(), ("model", "training", "optimization"), "pretrain"),
        "tokenizer": "", "tokenizer_sha256": None, "dataset": []}


def test_a_hub_file_is_identified_by_its_blob_and_only_local_files_are_hashed(tmp_path, monkeypatch):
    """A Hub download of many GB is named by the Hub's blob id: hashing it again would cost minutes for nothing."""
    monkeypatch.setenv("GPT2ZH_CACHE", str(tmp_path / "cache"))
    local, downloaded = tmp_path / "mine.txt", tmp_path / "snapshot" / "train.txt"
    downloaded.parent.mkdir()
    local.write_text("我的语料\n", encoding="utf-8")
    downloaded.write_text("下载的语料\n", encoding="utf-8")
    origin = ("hf://datasets/me/corpus@" + "c" * 40 + "/train.txt", "b" * 40)
    sources = [Source(path=local, format="txt", size=13, name="mine.txt"),
               Source(path=downloaded, format="txt", size=16, origin=origin)]
    parts = tokenizer_inputs(Config(), sources)
    assert parts["sources"][1] == [*origin, "txt", 16]
    hashed = [Path(line.split("|")[0]) for line in cache_file().read_text(encoding="utf-8").splitlines()]
    assert hashed == [local.resolve()]
