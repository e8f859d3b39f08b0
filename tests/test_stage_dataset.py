"""Stage 2 on real Chinese text: exact blocks, the HF tokenizer's ids, reuse, interruption, shards."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from gpt2zh.cli import main
from gpt2zh.config import find_config, load_config
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.dataset.loading import load_blocks
from gpt2zh.dataset.parallel import ordered_map
from gpt2zh.errors import UserError
from gpt2zh.tokenizer.specials import SPECIAL_TOKENS
from tests.conftest import REPO, TINY_DATA, TINY_TOKENIZER, TINY_TRAIN, run_cli, tree_checksums


def stage_args(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--data-files", str(corpus), "--run-dir", str(run_dir), *TINY_TOKENIZER, *extra]


def blocks_of(folder: Path, split: str) -> np.ndarray:
    return np.asarray(load_from_disk(str(folder))[split].with_format("numpy")[:]["input_ids"])


def expected_stream(corpus: Path, tokenizer_dir: Path, validation: bool, **data) -> list[int]:
    """What the Hugging Face tokenizer gives for the same cleaned documents, each followed by <|endoftext|>."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = load_config(find_config("demo"), {f"data.{k}": v for k, v in data.items()})
    reader = CorpusReader(resolve_sources([str(corpus)]), config.data, SPECIAL_TOKENS)
    texts = [doc.text for doc in reader.documents() if doc.validation == validation]
    stream: list[int] = []
    for ids in tok(texts)["input_ids"]:
        stream += ids + [tok.eos_token_id]
    return stream


@pytest.fixture(scope="module")
def tokenized_run(tmp_path_factory, trained_run, small_corpus) -> Path:
    run_dir = tmp_path_factory.mktemp("tokenized") / "run"
    shutil.copytree(trained_run, run_dir)
    result = run_cli("tokenize", *stage_args(small_corpus, run_dir))
    assert result.returncode == 0, result.stderr
    assert "── tokenize: done" in result.stdout and "datasets.load_from_disk" in result.stdout
    return run_dir


def test_every_block_is_exactly_block_size_in_the_smallest_type(tokenized_run):
    loaded = load_from_disk(str(tokenized_run / "dataset"))
    assert set(loaded) == {"train", "validation"}
    for split in ("train", "validation"):
        assert loaded[split].features["input_ids"].length == 256
        assert loaded[split].features["input_ids"].feature.dtype == "uint16"
        assert blocks_of(tokenized_run / "dataset", split).shape[1] == 256


@pytest.mark.parametrize("split", ["train", "validation"])
def test_ids_are_the_hf_tokenizers_and_only_the_final_tail_is_lost(tokenized_run, small_corpus, split):
    stream = expected_stream(small_corpus, tokenized_run / "tokenizer", validation=split == "validation")
    blocks = blocks_of(tokenized_run / "dataset", split)
    figures = json.loads((tokenized_run / "dataset" / "stats.json").read_text())["splits"][split]
    assert len(stream) == figures["tokens"] == blocks.size + figures["dropped_tail_tokens"]
    assert figures["dropped_tail_tokens"] < 256
    assert np.array_equal(blocks.reshape(-1), np.asarray(stream[: blocks.size]))


def test_stats_report_what_users_ask_for(tokenized_run):
    stats = json.loads((tokenized_run / "dataset" / "stats.json").read_text())
    for key in ("splits", "chars_per_token", "seconds", "mb_per_second", "peak_rss_mb", "reading", "dtype"):
        assert key in stats
    assert stats["reading"]["train"]["documents"] > stats["reading"]["validation"]["documents"] > 0
    assert 1.0 < stats["chars_per_token"] < 3.0
    memory = stats["peak_rss_mb"]  # the stage process's own peak, not the launching test runner's (> 600 MB)
    assert 0 < memory["main"] <= memory["total"] < 400
    manifest = json.loads((tokenized_run / "dataset" / "manifest.json").read_text())
    tokenizer = json.loads((tokenized_run / "tokenizer" / "manifest.json").read_text())
    assert manifest["tokenizer_fingerprint"] == tokenizer["fingerprint"] and manifest["block_size"] == 256


@pytest.fixture(scope="module")
def two_block_corpus(tmp_path_factory, small_corpus) -> Path:
    path = tmp_path_factory.mktemp("two") / "two_blocks.txt"
    path.write_bytes(small_corpus.read_bytes() * 2)  # > 1 MiB: two blocks, two workers
    return path


def test_worker_count_and_batch_size_do_not_change_a_single_block(tmp_path, capsys, two_block_corpus):
    first, second = tmp_path / "one", tmp_path / "two"
    assert main(["train-tokenizer", *stage_args(two_block_corpus, first)]) == 0
    shutil.copytree(first / "tokenizer", second / "tokenizer")
    assert main(["tokenize", *stage_args(two_block_corpus, first, "--data-num-proc", "1")]) == 0
    assert main(["tokenize", *stage_args(two_block_corpus, second, "--data-num-proc", "2",
                                        "--data-map-batch-size", "7")]) == 0
    assert "2 worker(s)" in capsys.readouterr().out
    for split in ("train", "validation"):
        assert np.array_equal(blocks_of(first / "dataset", split), blocks_of(second / "dataset", split))


def test_sentencepiece_never_gets_more_than_map_batch_size_documents_at_once(tmp_path, monkeypatch,
                                                                             tokenized_run, small_corpus):
    """(G10) A 5,000-document batch was what got stage 2 killed; the worker tokenizes map_batch_size."""
    import sentencepiece

    batches, real_encode = [], sentencepiece.SentencePieceProcessor.encode

    def counted(processor, texts, *args, **kwargs):
        batches.append(len(texts) if isinstance(texts, list) else 1)
        return real_encode(processor, texts, *args, **kwargs)

    monkeypatch.setattr(sentencepiece.SentencePieceProcessor, "encode", counted)
    run_dir = tmp_path / "run"
    shutil.copytree(tokenized_run / "tokenizer", run_dir / "tokenizer")
    args = stage_args(small_corpus, run_dir, "--data-num-proc", "1", "--data-map-batch-size", "7")  # in this process
    assert main(["tokenize", *args]) == 0
    reading = json.loads((run_dir / "dataset" / "stats.json").read_text())["reading"]
    documents = sum(reading[split]["documents"] for split in ("train", "validation"))
    assert max(batches) == 7 and sum(batches) >= documents > 2000


def test_ordered_map_never_holds_more_than_its_in_flight_bound():
    """Results are consumed as they come: at most workers x in_flight_per_worker items are submitted and not yet
    handed on, however long the input (Pool.imap would queue every block)."""
    pulled: list[int] = []

    def blocks():
        for index in range(20):
            pulled.append(index)
            yield index

    results, waiting = [], []
    # builtins as the work: the spawned workers import nothing from the tests
    for consumed, result in enumerate(ordered_map(str, blocks(), 2, int, (), in_flight_per_worker=2), start=1):
        waiting.append(len(pulled) - consumed)
        results.append(result)
    assert results == [str(index) for index in range(20)]  # in order
    assert max(waiting) == 2 * 2 and waiting[-1] == 0


def test_dedupe_drops_repeated_documents_before_packing(tmp_path, two_block_corpus):
    run_dir = tmp_path / "run"
    assert main(["train-tokenizer", *stage_args(two_block_corpus, run_dir, "--data-dedupe")]) == 0
    assert main(["tokenize", *stage_args(two_block_corpus, run_dir, "--data-dedupe", "--data-num-proc", "2")]) == 0
    stats = json.loads((run_dir / "dataset" / "stats.json").read_text())
    assert stats["reading"]["cleaning"]["duplicates_dropped"] >= 3000  # the second copy of every document
    stream = expected_stream(two_block_corpus, run_dir / "tokenizer", validation=False, dedupe=True)
    assert stats["splits"]["train"]["tokens"] == len(stream)


def created(run_dir: Path) -> str:
    return (run_dir / "dataset" / "manifest.json").read_text()


def test_rerun_reuses_force_rebuilds_and_a_changed_block_size_needs_force(tmp_path, capsys, tokenized_run,
                                                                         small_corpus):
    run_dir = tmp_path / "run"
    shutil.copytree(tokenized_run, run_dir)
    first = created(run_dir)
    assert main(["tokenize", *stage_args(small_corpus, run_dir, "--training-max-steps", "70",
                                        "--data-num-proc", "2")]) == 0
    assert "up to date" in capsys.readouterr().err and created(run_dir) == first
    assert main(["tokenize", *stage_args(small_corpus, run_dir, "--force")]) == 0
    assert created(run_dir) != first
    second = created(run_dir)
    assert main(["tokenize", *stage_args(small_corpus, run_dir, "--data-block-size", "128")]) == 2
    assert "data.block_size (256 -> 128)" in capsys.readouterr().err and created(run_dir) == second
    assert main(["tokenize", *stage_args(small_corpus, run_dir, "--data-block-size", "128", "--force")]) == 0
    assert blocks_of(run_dir / "dataset", "train").shape[1] == 128


def test_run_builds_every_stage_then_skips_them_all(tmp_path, capsys, small_corpus):
    run_dir = tmp_path / "run"
    args = ["--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN]
    assert main(["run", *args]) == 0
    out = capsys.readouterr().out
    assert "train-tokenizer: done" in out and "tokenize: done" in out and "pretrain: done" in out
    assert main(["run", *args]) == 0
    assert capsys.readouterr().err.count("up to date") == 3


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
def test_killed_build_leaves_no_dataset_that_passes_as_complete(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("train-tokenizer", "--run-dir", str(run_dir)).returncode == 0  # the whole demo corpus
    partial = lambda: list(run_dir.glob(".dataset.partial-*"))  # noqa: E731
    process = subprocess.Popen([sys.executable, "-m", "gpt2zh", "tokenize", "--run-dir", str(run_dir),
                                "--data-num-proc", "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: any(p.rglob("data-00000.arrow") for p in partial()), timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "dataset").exists()
    with pytest.raises(UserError, match="no complete dataset"):
        load_blocks(run_dir / "dataset")
    result = run_cli("tokenize", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert not partial() and load_blocks(run_dir / "dataset")["train"].num_rows > 1000


def test_missing_tokenizer_is_a_one_line_error(tmp_path, capsys, small_corpus):
    assert main(["tokenize", *stage_args(small_corpus, tmp_path / "empty-run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no complete tokenizer in") and "gpt2zh train-tokenizer" in err and "\n" not in err


def test_tokenizer_trained_for_another_corpus_or_config_is_refused(tmp_path, capsys, tokenized_run, small_corpus):
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text(encoding="utf-8")[:50000], encoding="utf-8")
    before = tree_checksums(tokenized_run)
    for args, named in ((stage_args(other, tokenized_run), "corpus (small.txt -> other.txt)"),
                        (stage_args(small_corpus, tokenized_run, "--tokenizer-vocab-size", "4100"),
                         "tokenizer.vocab_size (4000 -> 4100)")):
        assert main(["tokenize", *args]) == 2
        err = capsys.readouterr().err
        assert f"was trained with other settings than this command's: {named}" in err, err
    assert tree_checksums(tokenized_run) == before


def test_a_replaced_sentencepiece_model_is_refused(tmp_path, capsys, tokenized_run, small_corpus):
    run_dir = tmp_path / "run"
    shutil.copytree(tokenized_run, run_dir)
    model = run_dir / "tokenizer" / "tokenizer.model"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: only the checksum can tell
    model.write_bytes(bytes(data))
    assert main(["tokenize", *stage_args(small_corpus, run_dir, "--force")]) == 2
    assert "tokenizer.model differs from the one stage 1 wrote" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--data-block-size", "300000", "--model-n-positions", "300000"], "training split has"),
    (["--data-block-size", "8192", "--model-n-positions", "8192"], "validation split has"),
])
def test_block_size_larger_than_the_corpus_is_a_clear_error(tmp_path, capsys, monkeypatch, tokenized_run,
                                                            small_corpus, flags, message):
    """Stage 2's own check, for the corpora the estimate before stage 1 cannot judge (compressed, parquet):
    that estimate is switched off here (it would refuse these first, tests/test_run_settings.py)."""
    monkeypatch.setattr("gpt2zh.dataset.check.check_split_sizes", lambda sources, data, **adopted: None)
    run_dir = tmp_path / "run"
    shutil.copytree(tokenized_run, run_dir)
    before = tree_checksums(run_dir)
    assert main(["tokenize", *stage_args(small_corpus, run_dir, *flags, "--force")]) == 2
    err = capsys.readouterr().err
    assert message in err and "fewer than one block" in err
    assert tree_checksums(run_dir) == before and not list(run_dir.glob(".dataset*"))


def test_block_size_above_n_positions_is_a_config_error(capsys, small_corpus, tmp_path):
    assert main(["tokenize", *stage_args(small_corpus, tmp_path, "--data-block-size", "264")]) == 2
    assert "data.block_size (264) exceeds model.n_positions (256)" in capsys.readouterr().err


def test_shards_build_disjoint_parts_that_load_as_one_dataset(tmp_path, capsys, small_corpus):
    corpus = tmp_path / "three_blocks.txt"
    corpus.write_bytes(small_corpus.read_bytes() * 4)  # ~2.7 MB: three 1 MiB blocks
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    no_dedupe = "--no-data-dedupe"  # dedupe works within one job; across shards it would differ by design

    def shard(index: int) -> list[str]:
        return stage_args(corpus, sharded, no_dedupe, "--data-num-shards", "3", "--data-shard-index", str(index))

    assert main(["train-tokenizer", *stage_args(corpus, single, no_dedupe)]) == 0
    shutil.copytree(single / "tokenizer", sharded / "tokenizer")
    assert main(["tokenize", *stage_args(corpus, single, no_dedupe)]) == 0
    for index in (2, 0):  # any order, any machine
        assert main(["tokenize", *shard(index)]) == 0
    with pytest.raises(UserError, match=r"shard\(s\) 1 of 3 are missing"):
        load_blocks(sharded / "dataset")
    assert main(["tokenize", *shard(1)]) == 0
    whole, parts = load_blocks(single / "dataset"), load_blocks(sharded / "dataset")
    shard_stats = [json.loads(p.read_text()) for p in sorted((sharded / "dataset").glob("shard-*/stats.json"))]
    single_stats = json.loads((single / "dataset" / "stats.json").read_text())
    for split in ("train", "validation"):
        tokens = sum(s["splits"][split]["tokens"] for s in shard_stats)
        assert tokens == single_stats["splits"][split]["tokens"]  # disjoint and complete
        assert parts[split].num_rows == sum(s["splits"][split]["blocks"] for s in shard_stats)
        assert abs(parts[split].num_rows - whole[split].num_rows) <= 3  # one tail per shard at most
    capsys.readouterr()
    assert main(["tokenize", *stage_args(corpus, single, no_dedupe, "--data-num-shards", "3")]) == 2
    assert "holds a single-job dataset" in capsys.readouterr().err


def test_shard_index_outside_the_shard_count_is_a_config_error(capsys, small_corpus, tmp_path):
    assert main(["tokenize", *stage_args(small_corpus, tmp_path, "--data-num-shards", "2",
                                        "--data-shard-index", "2")]) == 2
    assert "data.shard_index must be within 0 .. data.num_shards-1" in capsys.readouterr().err


def test_a_shard_with_no_text_after_cleaning_is_a_clear_error(tmp_path, capsys, small_corpus):
    corpus = tmp_path / "text_then_blanks.txt"
    corpus.write_bytes(small_corpus.read_bytes() + b" \n\t\n" * 400_000)  # second MiB block: only blank lines
    run_dir = tmp_path / "run"
    assert main(["train-tokenizer", *stage_args(corpus, run_dir)]) == 0
    assert main(["tokenize", *stage_args(corpus, run_dir, "--data-num-shards", "2", "--data-shard-index", "1")]) == 2
    err = capsys.readouterr().err
    assert "error: the corpus has no text left after cleaning" in err and "Traceback" not in err
    assert not (run_dir / "dataset" / "shard-00001-of-00002").exists()


def test_compressed_arrays_and_blank_line_documents_reach_the_blocks_whole_and_in_order(tmp_path, small_corpus,
                                                                                       monkeypatch, capsys):
    """Whole-file blocks are read by the main process and tokenized by 2 workers in small chunks."""
    import gzip
    import lzma

    import gpt2zh.dataset.chunks as chunks

    lines = [line for line in small_corpus.read_text(encoding="utf-8").splitlines() if line]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with gzip.open(corpus / "train.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(lines[:900], handle, ensure_ascii=False)
    groups = ["\n".join(lines[i: i + 3]) for i in range(900, 2100, 3)]
    (corpus / "clue.txt").write_text("\n\n".join(groups) + "\n", encoding="utf-8")
    with lzma.open(corpus / "wiki.jsonl.xz", "wt", encoding="utf-8") as handle:
        for i in range(2100, 2400, 2):
            handle.write(json.dumps({"title": lines[i][:8], "text": lines[i + 1]}, ensure_ascii=False) + "\n")
    monkeypatch.setattr(chunks, "CHUNK_CHARS", 5000)
    run_dir = tmp_path / "run"
    args = stage_args(corpus, run_dir, "--data-title-field", "title", "--data-num-proc", "2")
    assert main(["train-tokenizer", *args]) == 0
    assert main(["tokenize", *args]) == 0
    out = capsys.readouterr().out
    assert "blank-line documents in 1 .txt file(s)" in out
    for split in ("train", "validation"):
        stream = expected_stream(corpus, run_dir / "tokenizer", validation=split == "validation", title_field="title")
        blocks = blocks_of(run_dir / "dataset", split)
        assert np.array_equal(blocks.reshape(-1), np.asarray(stream[: blocks.size])), split
    reading = json.loads((run_dir / "dataset" / "stats.json").read_text())["reading"]
    kept = reading["train"]["documents"] + reading["validation"]["documents"]
    assert kept + reading["cleaning"]["duplicates_dropped"] == 900 + 400 + 150  # the demo config dedupes
    assert reading["bytes_read"] == reading["bytes_total"]


_SET_IN_THE_PARENT: list[int] = []  # a forked child has the parent's copy; a fresh interpreter imports it empty


def _parent_state_inherited(item: int) -> bool:
    return bool(_SET_IN_THE_PARENT)


def test_stage_2_workers_start_in_a_fresh_interpreter_not_a_fork_of_the_parent():
    """A forked worker would inherit the parent's threads and locks (after stage 1 in `gpt2zh run`: the Rust
    tokenizer's pool, torch's threads), the classic fork-after-threads deadlock; spawned ones inherit nothing."""
    from gpt2zh.dataset.parallel import ordered_map

    _SET_IN_THE_PARENT.append(1)
    try:
        inherited = list(ordered_map(_parent_state_inherited, iter(range(4)), 2, _no_setup, ()))
    finally:
        _SET_IN_THE_PARENT.clear()
    assert inherited == [False] * 4


def _no_setup(in_worker_process: bool = True) -> None:
    return None


def test_peak_memory_is_this_process_s_own_not_that_of_the_process_it_was_exec_ed_from():
    """A 600 MB parent that execs the probe: ru_maxrss would still say 600 MB, VmHWM starts afresh."""
    probe = "from gpt2zh.memory import peak_rss_mb; print(round(peak_rss_mb()))"
    parent = ("import os, sys\n"
              "ballast = bytearray(600 * 2**20)  # touched: resident\n"
              f"os.execv(sys.executable, [sys.executable, '-c', {probe!r}])\n")
    result = subprocess.run([sys.executable, "-c", parent], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 300, f"peak {result.stdout.strip()} MB includes the parent's 600 MB"


def _validation_warning(tmp_path, capsys, documents: list[str], fraction: str) -> tuple[str, dict]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(documents) + "\n", encoding="utf-8")  # blank lines between documents
    args = ["--data-files", str(corpus), "--run-dir", str(tmp_path / "run"), "--tokenizer-vocab-size", "3000",
            "--tokenizer-character-coverage", "0.995", "--data-validation-fraction", fraction,
            "--data-block-size", "32", "--model-n-positions", "32"]
    assert main(["train-tokenizer", *args]) == 0 and main(["tokenize", *args]) == 0
    held_out = json.loads((tmp_path / "run" / "dataset" / "stats.json").read_text())["reading"]["validation"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "the validation split has" in line]
    return (warnings[0] if warnings else ""), held_out


def test_a_validation_split_of_a_few_long_documents_is_warned_about_with_the_fraction_that_gives_enough(
        tmp_path, capsys, demo_documents):
    """(NU9) Enough held-out blocks and characters, from a handful of documents: its loss follows their topics."""
    long_documents = ["\n".join(demo_documents[i: i + 60]) for i in range(0, 3600, 60)]  # 60 of ~5,000 characters
    warning, held_out = _validation_warning(tmp_path, capsys, long_documents, "0.05")
    assert held_out["documents"] < 20 and held_out["characters"] >= 10_000
    assert f"the validation split has {held_out['documents']} document(s), {held_out['characters']:,} characters" \
           in warning and "its loss measures these few texts" in warning
    assert "use --data-validation-fraction 0.34 (about 20 documents)" in warning


def test_a_validation_split_of_few_characters_is_warned_about_however_many_documents_it_has(
        tmp_path, capsys, demo_documents):
    short = [document for document in demo_documents if len(document) < 60][:800]
    warning, held_out = _validation_warning(tmp_path, capsys, short, "0.04")
    assert held_out["documents"] >= 20 and held_out["characters"] < 10_000
    assert f"the validation split has {held_out['documents']} document(s)" in warning and "add text" in warning
