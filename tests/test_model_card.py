"""The model card, word for word, for runs that take each of its branches.

A card is what a user reads before downloading a model: each fabricated run below is rendered and compared
with its reviewed text in tests/fixtures/cards/. A changed word, figure, link or table row fails here with
the difference. After changing the card on purpose: `GPT2ZH_UPDATE_CARDS=1 pytest tests/test_model_card.py`
rewrites the texts (the test then fails once, asking for the new text to be reviewed in the diff).
"""

import difflib
import json
import os
from pathlib import Path

import pytest

from gpt2zh.corpus.sources import DEMO_CORPUS
from gpt2zh.manifests import DatasetManifest, TokenizerManifest
from tests.conftest import REPO

CARDS = REPO / "tests" / "fixtures" / "cards"
FINISHED = REPO / "tests" / "fixtures" / "previous_release" / "run" / "model" / "training_summary.json"

SAMPLES = """# Samples

## step 2 (validation loss 7.900)

- **早先的提示**不在卡上

## step 4 (validation loss 7.606)

- **新华社北京一月六**日电，记者报道。
- **这本书中的图片很**清楚。
- **使用时间不长**就坏了
- **据悉**，会议将于明天举行。
- **第五个提示**不在卡上
"""


def _quality(**extra) -> dict:
    return {"documents": 16, "characters": 1107, "tokens": 1093, "chars_per_token": 1.0128,
            "byte_fallback_rate": 0.15371, **extra}


def _tokenizer(run: Path, stats: dict, sources: list) -> None:
    folder = run / "tokenizer"
    folder.mkdir(parents=True)
    (folder / "stats.json").write_text(json.dumps(stats, ensure_ascii=False), encoding="utf-8")
    TokenizerManifest.publish(folder, "t" * 20, {"sources": sources},
                              {"vocab_size": 2000, "special_tokens": {}, "special_token_ids": {"eos": 1}})


def _dataset_shard(folder: Path, corpus: str, reading: dict, splits: dict, sources: list = ()) -> None:
    folder.mkdir(parents=True)
    stats = {"corpus": corpus, "reading": reading, "splits": splits}
    (folder / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    facts = {"tokenizer_fingerprint": "t" * 20, "block_size": 64, "dtype": "uint16", "rows": {}, "shard": {}}
    DatasetManifest.publish(folder, "d" * 20, {"sources": list(sources)}, facts)


def _summary(**changes) -> dict:
    summary = json.loads(FINISHED.read_text(encoding="utf-8"))
    summary.update(changes)
    return summary


def scratch_on_two_shards(run: Path) -> tuple[dict, dict]:
    """From scratch, a dataset built in two shards (their figures add up), local files in nested folders, a
    licence, samples of two evaluations (only the last one's first four are shown), a saved wsd schedule."""
    sources = [["/data/corpus/news/a.txt", "text", 2_000_000, "x"], ["/data/corpus/news/b.txt.gz", "text", 1536, "y"],
               ["/data/corpus/wiki/c.json", "json", 12, "z"]]
    _tokenizer(run, {"normalization": "zh", "quality": _quality(), "tokenizer": {"model_type": "unigram"}}, sources)
    for index, (documents, tokens) in enumerate([(300, 5000), (21, 700)]):
        _dataset_shard(run / "dataset" / f"shard-{index:05d}-of-00002", "3 file(s) from --data-files",
                       {"train": {"documents": documents, "characters": documents * 40},
                        "validation": {"documents": index + 3, "characters": 100 + index}},
                       {"train": {"tokens": tokens, "blocks": tokens // 64},
                        "validation": {"tokens": 90 + index, "blocks": 1 + index}}, sources)
    (run / "model").mkdir()
    (run / "model" / "samples.md").write_text(SAMPLES, encoding="utf-8")
    schedule = {"kind": "wsd", "warmup_steps": 10, "max_steps": 400, "min_ratio": 0.1, "decay_ratio": 0.25,
                "replanned_at": 200, "start_factor": 1.0,
                "previous": {"kind": "wsd", "warmup_steps": 10, "max_steps": 200, "min_ratio": 0.1, "decay_ratio": 0.25,
                             "replanned_at": 0, "start_factor": 1.0, "previous": None}}
    summary = _summary(steps=4000, tokens_seen=1_234_567, parameters=125_400_000, train_seconds_this_run=4000.0,
                       schedule=schedule)
    summary["hardware"] = {"gpus": ["NVIDIA A100-SXM4-80GB"], "cpu_count": 32, "world_size": 1}
    summary["plan"].update(per_device_batch_size=16, gradient_accumulation_steps=3, world_size=1, precision="bf16")
    return summary, {"repo_id": "me/gpt2-zh-news", "license_id": "apache-2.0"}


def continued_on_modelscope(run: Path) -> tuple[dict, dict]:
    """Continued from a ModelScope model with a WordPiece vocabulary, its dataset removed since training, more
    corpus files than the card lists (Hub and local), no licence, a description, resumed, several GPU models."""
    hub = [[f"hf://datasets/clue/news@{'c' * 40}/part-{i:02d}.jsonl", f"oid{i}", "jsonl", 1000 * (i + 1)]
           for i in range(12)]
    local = [[f"/mnt/data/extra/{name}.txt", "text", 2048, "d"] for name in "abcdefghijk"]
    stats = {"corpus": "23 file(s) from --data-files", "normalization": "nfkc", "separator": "[SEP]",
             "reading": {"train": {"documents": 9000, "characters": 810_000},
                         "validation": {"documents": 0, "characters": 0}},
             "quality": _quality(unknown_token="[UNK]", unk_tokens=1234, unk_rate=0.001234),
             "tokenizer": {"class": "BertTokenizerFast"}}
    _tokenizer(run, stats, hub + local)
    base = {"hub": "uer/gpt2-chinese-cluecorpussmall", "commit": "0123abcd", "provider": "modelscope"}
    summary = _summary(steps=20_000, tokens_seen=98_765_432, resumed_from_step=12_000, final_eval_loss=None,
                       train_seconds_this_run=7300.0, base_model=base)
    summary["hardware"] = {"gpus": ["NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"],
                           "cpu_count": 64, "world_size": 3}
    summary["plan"].update(per_device_batch_size=8, gradient_accumulation_steps=4, world_size=3)
    return summary, {"repo_id": "someone/gpt2-zh-continued", "license_id": "", "provider": "modelscope",
                     "dataset_description": "  News articles of 2020, deduplicated.  \n"}


def continued_from_the_hub_on_the_demo_corpus(run: Path) -> tuple[dict, dict]:
    """Continued from a Hugging Face model with a byte-level tokenizer, on the demo corpus, in one process."""
    stats = {"normalization": "none", "quality": _quality(), "tokenizer": {"class": "GPT2TokenizerFast"}}
    _tokenizer(run, stats, [])
    _dataset_shard(run / "dataset", DEMO_CORPUS, {"train": {"documents": 50, "characters": 5000},
                                                  "validation": {"documents": 5, "characters": 480}},
                   {"train": {"tokens": 4100, "blocks": 64}, "validation": {"tokens": 400, "blocks": 6}})
    base = {"hub": "openai-community/gpt2", "commit": "607a30d7"}
    return _summary(base_model=base), {"repo_id": "me/gpt2-demo", "license_id": "mit"}


def continued_from_a_local_folder(run: Path) -> tuple[dict, dict]:
    """Continued from a folder on this machine (named by its last two parts), with no corpus recorded."""
    _tokenizer(run, {"quality": _quality(), "tokenizer": {"class": "GPT2TokenizerFast"}}, [])
    _dataset_shard(run / "dataset", "", {}, {})
    return (_summary(base_model={"model": "/home/user/models/gpt2-base"}),
            {"repo_id": "me/gpt2-local", "license_id": "mit"})


RUNS = [scratch_on_two_shards, continued_on_modelscope, continued_from_the_hub_on_the_demo_corpus,
        continued_from_a_local_folder]


@pytest.mark.parametrize("fabricate", RUNS, ids=[run.__name__ for run in RUNS])
def test_the_card_of_each_kind_of_run_reads_exactly_as_reviewed(fabricate, tmp_path):
    from gpt2zh.hub.card import render_model_card

    run = tmp_path / "run"
    summary, where = fabricate(run)
    card = render_model_card(run, summary, where["repo_id"], where["license_id"],
                             where.get("dataset_description", ""), where.get("provider", "huggingface"))
    reviewed = CARDS / f"{fabricate.__name__}.md"
    if os.environ.get("GPT2ZH_UPDATE_CARDS"):
        reviewed.parent.mkdir(parents=True, exist_ok=True)
        reviewed.write_text(card, encoding="utf-8")
        pytest.fail(f"{reviewed.relative_to(REPO)} rewritten: review it in the diff, then run without "
                    "GPT2ZH_UPDATE_CARDS")
    expected = reviewed.read_text(encoding="utf-8")
    assert card == expected, "".join(difflib.unified_diff(expected.splitlines(True), card.splitlines(True),
                                                          str(reviewed.relative_to(REPO)), "rendered card"))


def test_files_beside_the_weights_and_the_load_line_follow_the_hub():
    from gpt2zh.hub.card import hub_files, load_snippet

    assert hub_files("huggingface") == {}
    assert json.loads(hub_files("modelscope")["configuration.json"]) == {"framework": "pytorch",
                                                                         "task": "text-generation"}
    assert hub_files("modelscope")["configuration.json"].endswith("}\n")
    assert load_snippet("huggingface", "me/m") == "pipeline('text-generation', model='me/m')"
    assert load_snippet("modelscope", "me/m") == \
        "pipeline('text-generation', model=modelscope.snapshot_download('me/m'))"
