"""The tiny published-style models of tests/tiny_models.py load like real ones, and tests/hub_server.py serves
them as model repositories with history, private and gated access, to the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT and HF_HOME once, at import, so every Hub call runs in a fresh interpreter
with an isolated HF_HOME, as in tests/test_hub_datasets.py.
"""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import REPO
from tests.hub_server import LocalHub
from tests.tiny_models import ENDOFTEXT, gpt2_bpe_model, malicious_pickle_model, model_files, uer_style_model

TOKEN = "hf_owner_" + "s3cr3t" * 4
OTHER_TOKEN = "hf_other_" + "pr1v4t3" * 4
OWNER, OTHER = "o", "someone"
HELLO = "你好，世界"

# Runs [name, kwargs] calls of huggingface_hub's top-level functions; prints each result, or the error's class
# and base classes, as JSON.
HUB_CALLS = """
import json, sys
import huggingface_hub

outcomes = []
for name, kwargs in json.loads(sys.argv[1]):
    try:
        result = getattr(huggingface_hub, name)(**kwargs)
        if isinstance(result, huggingface_hub.ModelInfo):
            result = {"sha": result.sha, "private": result.private,
                      "files": sorted(sibling.rfilename for sibling in result.siblings)}
        outcomes.append({"result": result})
    except Exception as err:
        outcomes.append({"error": [cls.__name__ for cls in type(err).__mro__]})
print(json.dumps(outcomes))
"""


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: OWNER, OTHER_TOKEN: OTHER}) as server:
        yield server


@pytest.fixture(scope="module")
def demo_text(demo_documents) -> str:
    return "\n".join(demo_documents[:300])


def hub_env(hub: LocalHub, home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"})
    return env


def hub_calls(hub: LocalHub, home: Path, *calls: tuple[str, dict]) -> list[dict]:
    """The calls in order in one fresh interpreter: later calls see what earlier ones cached."""
    result = subprocess.run([sys.executable, "-c", HUB_CALLS, json.dumps(calls)], cwd=REPO, env=hub_env(hub, home),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def folder_files(folder: str) -> dict[str, bytes]:
    return model_files(Path(folder))


def next_token_logits(folder: Path, text: str) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt", return_token_type_ids=False)).logits


def test_the_uer_style_folder_has_a_character_vocabulary_and_loads(tmp_path, demo_text):
    folder = uer_style_model(tmp_path / "uer", demo_text)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "special_tokens_map.json",
                                          "tokenizer_config.json", "vocab.txt"]
    assert json.loads((folder / "config.json").read_text())["tokenizer_class"] == "BertTokenizer"

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "BertTokenizer" and tokenizer.eos_token is None and tokenizer.bos_token is None
    assert tokenizer.convert_tokens_to_ids("[PAD]") == 0 and tokenizer.convert_tokens_to_ids("[SEP]") == 6
    ids = tokenizer(HELLO, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == list(HELLO)  # one id per character, none unknown
    assert tokenizer.decode(ids) == "你 好 ， 世 界"  # the WordPiece decoder joins characters with spaces
    assert tokenizer.tokenize("GPT2模型") == ["G", "##P", "##T", "##2", "模", "型"]

    logits = next_token_logits(folder, HELLO)
    assert logits.shape == (1, len(HELLO) + 2, len(tokenizer))  # [CLS] 你 好 ， 世 界 [SEP]


def test_bin_weights_are_the_same_model_as_safetensors_for_the_same_seed(tmp_path, demo_text):
    bin_folder = uer_style_model(tmp_path / "bin", demo_text, weights="bin")
    assert "pytorch_model.bin" in os.listdir(bin_folder) and "model.safetensors" not in os.listdir(bin_folder)
    safe_folder = uer_style_model(tmp_path / "safe", demo_text)
    assert torch.equal(next_token_logits(bin_folder, HELLO), next_token_logits(safe_folder, HELLO))
    other_seed = uer_style_model(tmp_path / "seed1", demo_text, seed=1)
    assert not torch.equal(next_token_logits(other_seed, HELLO), next_token_logits(safe_folder, HELLO))


def test_the_bpe_folder_is_a_byte_level_gpt2_that_round_trips_chinese(tmp_path, demo_documents):
    folder = gpt2_bpe_model(tmp_path / "bpe", demo_documents[:300])
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "config.json",
            "model.safetensors"} <= set(os.listdir(folder))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert len(tokenizer) == 400 and tokenizer.pad_token is None
    assert tokenizer.bos_token == tokenizer.eos_token == tokenizer.unk_token == ENDOFTEXT
    for text in [HELLO, *demo_documents[1000:1020], "GPT-2 在 2019 年发布。\n第二行"]:  # unseen text too
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.bos_token_id == model.config.eos_token_id == endoftext
    logits = next_token_logits(folder, HELLO)
    assert logits.shape[0] == 1 and logits.shape[-1] == 400


def test_a_malicious_pickle_is_refused_by_weights_only_loading(tmp_path):
    marker = tmp_path / "pwned"
    folder = malicious_pickle_model(tmp_path / "evil", marker)
    assert "model.safetensors" not in os.listdir(folder)
    assert AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("[SEP]") == 6

    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "pytorch_model.bin", weights_only=True)
    with pytest.raises(pickle.UnpicklingError):  # transformers loads .bin with weights_only=True too
        AutoModelForCausalLM.from_pretrained(folder)
    assert not marker.exists()

    pickle.loads((folder / "pytorch_model.bin").read_bytes())
    assert marker.exists()  # the payload is real: a plain unpickling runs it


def test_a_seeded_model_downloads_at_main_and_at_an_older_commit(hub, tmp_path, demo_text):
    repo = f"{OWNER}/gpt2-tiny"
    first_files = model_files(uer_style_model(tmp_path / "first", demo_text))
    first = hub.add_model(repo, first_files)
    second_files = model_files(uer_style_model(tmp_path / "second", demo_text, seed=1))
    second = hub.add_model(repo, second_files)

    latest, older, info, listing, config, some = hub_calls(
        hub, tmp_path / "hf-home",
        ("snapshot_download", {"repo_id": repo, "revision": "main"}),
        ("snapshot_download", {"repo_id": repo, "revision": first}),
        ("model_info", {"repo_id": repo, "revision": first}),
        ("list_repo_files", {"repo_id": repo}),
        ("hf_hub_download", {"repo_id": repo, "filename": "config.json", "revision": first}),
        ("snapshot_download", {"repo_id": repo, "revision": first, "allow_patterns": ["*.json"],
                               "local_dir": str(tmp_path / "some")}))
    assert folder_files(latest["result"]) == second_files and Path(latest["result"]).name == second
    assert folder_files(older["result"]) == first_files and Path(older["result"]).name == first
    assert first_files["model.safetensors"] != second_files["model.safetensors"]
    assert info["result"] == {"sha": first, "private": False, "files": sorted(first_files)}
    assert listing["result"] == sorted(second_files)
    assert Path(config["result"]).read_bytes() == first_files["config.json"]
    assert sorted(name for name in os.listdir(some["result"]) if name != ".cache") == [
        "config.json", "special_tokens_map.json", "tokenizer_config.json"]
    # snapshot_download pins every file to the commit model_info named, and weights come from LFS.
    assert ("GET", f"/{repo}/resolve/{second}/model.safetensors") in hub.state.requests
    assert "lfs" in hub.state.models[repo].entry(first, "model.safetensors")
    assert next_token_logits(Path(older["result"]), HELLO).shape[-1] == len(AutoTokenizer.from_pretrained(
        older["result"]))


def test_private_and_gated_models_need_a_token_that_may_read_them(hub, tmp_path, demo_text):
    files = model_files(uer_style_model(tmp_path / "model", demo_text))
    hub.add_model(f"{OWNER}/secret", files, private=True)
    hub.add_model(f"{OWNER}/gated", files, gated=True)
    private, gated = {"repo_id": f"{OWNER}/secret"}, {"repo_id": f"{OWNER}/gated", "filename": "config.json"}
    anonymous, other, info, gated_anonymous, gated_other, gated_info, owner, gated_owner = hub_calls(
        hub, tmp_path / "hf-home",
        ("snapshot_download", private),
        ("snapshot_download", {**private, "token": OTHER_TOKEN}),
        ("model_info", {**private, "token": TOKEN}),
        ("hf_hub_download", gated),
        ("hf_hub_download", {**gated, "token": OTHER_TOKEN}),
        ("model_info", {"repo_id": f"{OWNER}/gated"}),
        ("snapshot_download", {**private, "token": TOKEN}),
        ("hf_hub_download", {**gated, "token": TOKEN}))
    assert "RepositoryNotFoundError" in anonymous["error"] and "RepositoryNotFoundError" in other["error"]
    assert info["result"]["private"] is True
    assert "GatedRepoError" in gated_anonymous["error"] and "GatedRepoError" in gated_other["error"]
    assert gated_info["result"]["files"] == sorted(files)  # anyone may see a gated repository's file list
    assert folder_files(owner["result"]) == files
    assert Path(gated_owner["result"]).read_bytes() == files["config.json"]


def test_unknown_revisions_and_missing_files_are_the_hub_s_errors(hub, tmp_path, demo_text):
    repo = f"{OWNER}/gpt2-tiny"
    hub.add_model(repo, model_files(uer_style_model(tmp_path / "model", demo_text)))
    snapshot, info, download, missing, missing_repo = hub_calls(
        hub, tmp_path / "hf-home",
        ("snapshot_download", {"repo_id": repo, "revision": "nope"}),
        ("model_info", {"repo_id": repo, "revision": "nope"}),
        ("hf_hub_download", {"repo_id": repo, "filename": "config.json", "revision": "nope"}),
        ("hf_hub_download", {"repo_id": repo, "filename": "pytorch_model.bin"}),
        ("snapshot_download", {"repo_id": f"{OWNER}/missing"}))
    assert all("RevisionNotFoundError" in outcome["error"] for outcome in (snapshot, info, download))
    assert "RemoteEntryNotFoundError" in missing["error"] and "EntryNotFoundError" in missing["error"]
    assert "RepositoryNotFoundError" in missing_repo["error"]


def test_transformers_loads_a_seeded_model_straight_from_the_hub_at_a_commit(hub, tmp_path, demo_text):
    repo = f"{OWNER}/gpt2-tiny"
    first = hub.add_model(repo, model_files(uer_style_model(tmp_path / "first", demo_text)))
    hub.add_model(repo, model_files(uer_style_model(tmp_path / "second", demo_text, seed=1)))
    code = ("import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer; "
            "tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], revision=sys.argv[2]); "
            "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], revision=sys.argv[2]); "
            "print(model(**tokenizer(sys.argv[3], return_tensors='pt', return_token_type_ids=False)).logits[0, -1, :5]"
            ".tolist())")
    result = subprocess.run([sys.executable, "-c", code, repo, first, HELLO], cwd=REPO,
                            env=hub_env(hub, tmp_path / "hf-home"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = next_token_logits(tmp_path / "first", HELLO)[0, -1, :5]
    assert torch.allclose(torch.tensor(json.loads(result.stdout)), expected)
