"""The prompts of logs/samples.md come from the run's own held-out documents unless the user names them:
a fixed list of news openings says little about a model trained on reviews or novels."""

import re
import unicodedata
from pathlib import Path

import yaml

from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.training.samples import held_out_prompts
from tests.conftest import copy_run, pretrain_args, run_cli

OLD_DEFAULTS = ["今天", "中国经济", "这本书", "新华社北京1月1日电"]
END_OF_TEXT = 1


def sampled_prompts(run_dir: Path) -> list[list[str]]:
    """The prompts of each section (`## step N`) of logs/samples.md, in order, the first one included."""
    sections = re.split(r"^## ", (run_dir / "logs" / "samples.md").read_text(encoding="utf-8"), flags=re.M)
    return [re.findall(r"^- \*\*(.+?)\*\*", section, re.M) for section in sections if section.strip()]


def logged_prompts(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "pretrain: sample prompts" in line]
    assert len(lines) == 1, stderr  # chosen once, logged once
    return lines[0].split(": ", 2)[-1].split(" (--training-sample-prompts")[0].split(" | ")


def blocks_of(tokenizer, *pieces: str | None) -> list[list[int]]:
    """One block: the pieces' ids, None standing for an <|endoftext|> between documents."""
    ids = []
    for piece in pieces:
        ids += [END_OF_TEXT] if piece is None else tokenizer(piece, add_special_tokens=False)["input_ids"]
    return [ids]


def as_validation(blocks: list[list[int]]):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": blocks}).with_format("numpy")  # as stage 3 reads stage 2's blocks


def test_default_prompts_are_openings_of_held_out_documents_in_their_order(trained, small_corpus):
    run_dir, result = trained
    prompts = logged_prompts(result.stderr)
    assert "the openings of held-out documents" in result.stderr
    assert len(prompts) == 4 and len(set(prompts)) == 4 and prompts != OLD_DEFAULTS
    evaluations = sampled_prompts(run_dir)
    assert len(evaluations) == 3 and all(sections == prompts for sections in evaluations)  # steps 0, 6, 12: the same

    data = DataConfig(**yaml.safe_load((run_dir / "model" / "run_config.yaml").read_text(encoding="utf-8"))["data"])
    documents = list(CorpusReader(resolve_sources([str(small_corpus)]), data).documents())
    held_out = [doc.text for doc in documents if doc.validation]
    positions = [next(i for i, text in enumerate(held_out) if text.startswith(prompt)) for prompt in prompts]
    assert positions == sorted(positions) and positions[0] > 0  # the first one may start mid-block: skipped
    for prompt in prompts:
        assert 2 <= len(prompt) <= 8
        assert not any(unicodedata.category(char).startswith("P") for char in prompt)


def test_explicit_prompts_win_over_held_out_openings(tmp_path, trainable_run):
    run_dir = copy_run(trainable_run, tmp_path)
    result = run_cli(*pretrain_args(run_dir, "--training-sample-prompts", "你好", "天气", "--training-max-steps", "6"))
    assert result.returncode == 0, result.stderr
    assert logged_prompts(result.stderr) == ["你好", "天气"]
    assert "(--training-sample-prompts): 你好 | 天气" in result.stderr
    assert "held-out documents" not in result.stderr
    evaluations = sampled_prompts(run_dir)
    assert len(evaluations) == 2 and all(section == ["你好", "天气"] for section in evaluations)  # steps 0 and 6


def test_an_opening_is_cut_at_punctuation_and_only_whole_document_starts_count(trainable_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(trainable_run / "tokenizer"))
    block = blocks_of(tokenizer, "半个文档。", None, "“今天天气很好”，他说。", None, "中国经济稳定增长了很多年。",
                      None, "这本书")  # the block ends inside 这本书…: its opening is unknown
    assert held_out_prompts(as_validation(block), tokenizer, END_OF_TEXT) == ["今天天气很好", "中国经济稳定增长"]


def test_very_short_validation_documents_still_give_prompts(trainable_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(trainable_run / "tokenizer"))
    short = blocks_of(tokenizer, "截断", None, "好！", None, "行", None, "好！", None, "差。", None, "嗯", None)
    assert held_out_prompts(as_validation(short), tokenizer, END_OF_TEXT) == ["好", "行", "差", "嗯"]
    one_document = blocks_of(tokenizer, "这是一篇很长的文档，没有结束")  # no document starts in the split
    assert held_out_prompts(as_validation(one_document), tokenizer, END_OF_TEXT) == ["这是一篇很长的文"]
