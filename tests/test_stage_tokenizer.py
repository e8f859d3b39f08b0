"""Stage 1 through the real command line: reuse and rebuild, interruption, bad input, entry points; line breaks
learnt as text, and tokenizers of the older format (trained on lines) kept until retrained."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from gpt2zh.cli import main
from gpt2zh.config.schema import Config, DataConfig, TokenizerConfig
from gpt2zh.corpus import CorpusReader, sources_for
from gpt2zh.dataset.chunks import TextChunk
from gpt2zh.dataset.worker import WorkerSetup, init_worker, tokenize_block
from gpt2zh.fingerprints import dataset_inputs
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.rundir import fingerprint
from gpt2zh.tokenizer.corpus_sample import read_sample
from gpt2zh.tokenizer.encoding import document_encoder
from gpt2zh.tokenizer.quality import measure
from gpt2zh.tokenizer.specials import END_OF_TEXT_ID, SPECIAL_TOKENS
from gpt2zh.tokenizer.spm_train import train_sentencepiece
from tests.conftest import REPO, TINY_DATA, TINY_TOKENIZER, TINY_TRAIN, copy_run, run_cli, tree_checksums


def stage(capsys, run_dir: Path, corpus: Path, *extra: str) -> tuple[int, str]:
    code = main(["train-tokenizer", "--data-files", str(corpus), "--run-dir", str(run_dir), *TINY_TOKENIZER, *extra])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def created(run_dir: Path) -> str:
    return json.loads((run_dir / "tokenizer" / "manifest.json").read_text())["created_utc"] + \
        str((run_dir / "tokenizer" / "tokenizer.json").stat().st_mtime_ns)


def test_rerun_reuses_force_rebuilds_and_changed_inputs_are_refused_unless_forced(tmp_path, capsys, small_corpus):
    run_dir = tmp_path / "run"
    corpus = tmp_path / "corpus.txt"
    shutil.copyfile(small_corpus, corpus)
    assert stage(capsys, run_dir, corpus)[0] == 0
    first = created(run_dir)

    code, out = stage(capsys, run_dir, corpus, "--training-max-steps", "70")  # a group stage 1 does not read
    assert code == 0 and "up to date" in out and created(run_dir) == first

    code, out = stage(capsys, run_dir, corpus, "--force")
    assert code == 0 and "up to date" not in out and created(run_dir) != first
    second = created(run_dir)

    assert stage(capsys, run_dir, corpus, "--tokenizer-split-digits")[0] == 0  # same value as before: reused
    assert created(run_dir) == second
    code, out = stage(capsys, run_dir, corpus, "--no-tokenizer-split-digits")  # another setting: refused
    assert code == 2 and "tokenizer.split_digits (True -> False)" in out and "--force" in out
    assert created(run_dir) == second
    assert stage(capsys, run_dir, corpus, "--no-tokenizer-split-digits", "--force")[0] == 0
    third = created(run_dir)
    assert third != second

    with corpus.open("a", encoding="utf-8") as handle:  # the corpus changed on disk: refused, then forced
        handle.write("新增的一行文本。\n")
    code, out = stage(capsys, run_dir, corpus)
    assert code == 2 and "corpus files changed since (corpus.txt" in out and created(run_dir) == third
    code, out = stage(capsys, run_dir, corpus, "--force")
    assert code == 0 and "up to date" not in out and created(run_dir) != third


def test_summary_says_what_was_read_written_and_measured(tmp_path, capsys, small_corpus):
    code, out = stage(capsys, tmp_path / "run", small_corpus)
    assert code == 0
    for label in ("corpus", "read", "documents", "cleaning", "sample", "tokenizer", "quality", "verified", "wrote"):
        assert f"\n  {label}" in out, label
    assert "train-tokenizer: done in" in out and "chars/token" in out and "byte fallback" in out


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _start_stage(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpt2zh", "train-tokenizer", "--run-dir", str(run_dir), *extra],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_killed_build_never_leaves_output_that_passes_as_complete(tmp_path):
    run_dir = tmp_path / "run"
    partial = lambda: list(run_dir.glob(".tokenizer.partial-*"))  # noqa: E731

    process = _start_stage(run_dir)  # the whole demo corpus, vocab 8000: ~2 s inside the build
    assert _wait_for(partial, timeout=120), "the stage never started building"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "tokenizer").exists()  # nothing a later stage could mistake for complete

    result = run_cli("train-tokenizer", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert not partial() and (run_dir / "tokenizer" / "manifest.json").exists()
    before = tree_checksums(run_dir / "tokenizer")

    process = _start_stage(run_dir, "--force")  # killed while rebuilding: the previous output survives
    assert _wait_for(partial, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert tree_checksums(run_dir / "tokenizer") == before
    result = run_cli("train-tokenizer", "--run-dir", str(run_dir))
    assert "up to date" in result.stderr and not partial()


@pytest.fixture()
def finished_run(tmp_path, trained_run) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    return run_dir


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    invalid = tmp_path / "invalid.txt"
    invalid.write_bytes(("正常文本" * 50 + "\n").encode() + b"\xff\xfe\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 100)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    no_text = tmp_path / "no_text"
    no_text.mkdir()
    (no_text / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    long_line = tmp_path / "long.txt"
    long_line.write_text("长" * 5000 + "\n", encoding="utf-8")
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text('{"body": "正文"}\n', encoding="utf-8")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tokenizer:\n  vocab_sise: 8000\n", encoding="utf-8")
    return {
        "invalid utf-8": (["--data-files", str(invalid)], "line 2, byte 601: cannot decode"),
        "binary file": (["--data-files", str(binary)], "binary.txt: looks binary"),
        "empty file": (["--data-files", str(empty)], "no training text"),
        "missing path": (["--data-files", str(tmp_path / "nope.txt")], "nope.txt does not exist"),
        "no text files": (["--data-files", str(no_text)], "has no .txt, .jsonl, .json, .parquet files"),
        "long line": (["--data-files", str(long_line), "--data-max-line-chars", "1000", "--data-long-lines", "error"],
                      "line 1 is longer than 1,000 characters"),
        "jsonl field": (["--data-files", str(jsonl)], "no field 'text' (found: body)"),
        "unknown yaml key": (["--config", str(bad_yaml)], "did you mean tokenizer.vocab_size?"),
        "wrong type": (["--tokenizer-character-coverage", "most"], "expected a number, got 'most'"),
        "vocab too small": (["--tokenizer-vocab-size", "500"], "--tokenizer-vocab-size 500 is too small"),
    }


def test_bad_input_is_one_line_nonzero_and_leaves_earlier_output_untouched(tmp_path, capsys, finished_run,
                                                                           small_corpus):
    before = tree_checksums(finished_run)
    for name, (flags, expected) in _bad_inputs(tmp_path).items():
        argv = ["train-tokenizer", "--run-dir", str(finished_run), "--force", *flags]
        if "--data-files" not in flags:
            argv += ["--data-files", str(small_corpus)]
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], (name, err)
        assert "Traceback" not in err, name
        assert tree_checksums(finished_run) == before, name
        assert not list(finished_run.glob(".tokenizer.*")), name


def test_bad_input_through_a_real_process_exits_2_without_traceback(tmp_path, finished_run):
    binary = tmp_path / "data.txt"
    binary.write_bytes(b"\x00\x01\x02\x03" * 1000)
    before = tree_checksums(finished_run)
    result = run_cli("train-tokenizer", "--run-dir", str(finished_run), "--force", "--data-files", str(binary))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()  # at most the one-line notice of the run's saved settings before it
    assert lines[-1].startswith("error:") and len(lines) <= 2
    assert not any(line.startswith("error:") for line in lines[:-1])
    assert "Traceback" not in result.stderr and tree_checksums(finished_run) == before


def test_the_token_never_reaches_the_run_directory(tmp_path, small_corpus):
    secret = "hf_gpt2zhNeverWriteMe0123456789"
    run_dir = tmp_path / "run"
    result = run_cli("train-tokenizer", "--run-dir", str(run_dir), "--data-files", str(small_corpus), *TINY_TOKENIZER,
                     env={"HF_TOKEN": secret})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert not any(secret.encode() in content for content in tree_checksums(run_dir).values())


def test_every_entry_point_runs_the_same_command():
    console = Path(sys.executable).parent / "gpt2zh"
    for executable in ([sys.executable, "-m", "gpt2zh"], [str(console)],
                       [sys.executable, str(REPO / "scripts" / "01_train_tokenizer.py")]):
        args = ["--help"] if executable[-1].endswith(".py") else ["train-tokenizer", "--help"]
        result = run_cli(*args, executable=executable)
        assert result.returncode == 0, (executable, result.stderr)
        assert "--tokenizer-vocab-size" in result.stdout
    assert run_cli("--version").stdout.startswith("gpt2zh ")


def test_reading_is_bounded_on_a_corpus_larger_than_the_sample(tmp_path, capsys, small_corpus):
    # (G9) the stage stops after read_factor × input_sentence_size sentences, from random blocks
    big = tmp_path / "big.txt"
    big.write_bytes(small_corpus.read_bytes() * 8)  # ~5.6 MB: six 1 MiB blocks
    run_dir = tmp_path / "run"
    code, _ = stage(capsys, run_dir, big, "--tokenizer-input-sentence-size", "3000", "--tokenizer-read-factor", "1")
    assert code == 0
    stats = json.loads((run_dir / "tokenizer" / "stats.json").read_text())
    reading, sample = stats["reading"], stats["sample"]
    assert reading["bytes_read"] < reading["bytes_total"] / 2
    assert sample["sentences_used"] == 3000 and sample["sentences_seen"] >= 3000


def test_run_command_runs_the_stages_in_order(tmp_path, capsys, small_corpus):
    code = main(["run", "--data-files", str(small_corpus), "--run-dir", str(tmp_path / "run"), *TINY_DATA, *TINY_TRAIN])
    assert code == 0
    for stage in ("tokenizer", "dataset", "model"):
        assert (tmp_path / "run" / stage / "manifest.json").exists(), stage
    out = capsys.readouterr().out
    assert out.index("train-tokenizer: done") < out.index("tokenize: done") < out.index("pretrain: done")


def _train_as_stage_1(corpus: Path, model: Path) -> list[str]:
    """Stage 1's own sample of the corpus (every sentence: nothing held out, the reservoir holds them all) and
    training, at the tiny tokenizer's settings."""
    cfg = TokenizerConfig(vocab_size=4000, character_coverage=0.995)
    sample = read_sample(CorpusReader(sources_for([str(corpus)])[0], DataConfig(validation_fraction=0.0)), cfg)
    train_sentencepiece(sample.reservoir.items, model, cfg)
    return sample.reservoir.items


def _stage_2_tokens(model: Path, documents: list[str]) -> np.ndarray:
    """Stage 2's worker on these documents: every document's ids, each followed by <|endoftext|>."""
    init_worker(WorkerSetup(spm_model=str(model), data=DataConfig(), reserved_strings=SPECIAL_TOKENS,
                            end_of_text_id=END_OF_TEXT_ID, dtype="uint16", keep_digests=False), False)
    return tokenize_block(TextChunk(tuple(documents))).tokens


def test_a_clue_style_corpus_encodes_line_breaks_as_pieces_with_the_byte_fallback_of_its_lines(tmp_path,
                                                                                               demo_documents):
    # (NU1) Documents of 4 paragraphs (single line breaks), separated by blank lines as CLUECorpusSmall is.
    paragraphs = list(demo_documents)
    random.Random(1).shuffle(paragraphs)
    training, held_out = paragraphs[:3000], paragraphs[3000:4200]
    corpus = tmp_path / "clue.txt"
    corpus.write_text("\n\n".join("\n".join(training[i: i + 4]) for i in range(0, 3000, 4)) + "\n", encoding="utf-8")
    documents = [document.text for document in CorpusReader(sources_for([str(corpus)])[0], DataConfig()).documents()]
    assert len(documents) == 750 and all(document.count("\n") == 3 for document in documents)

    sample = _train_as_stage_1(corpus, tmp_path / "clue.model")
    assert "".join(sample) == "".join(documents), "stage 1's sample keeps every line break and indentation"
    lines_corpus = tmp_path / "lines.txt"  # the same text, one paragraph a line: no '\n' inside a document
    lines_corpus.write_text("\n".join(training) + "\n", encoding="utf-8")
    assert "\n" not in "".join(_train_as_stage_1(lines_corpus, tmp_path / "lines.model"))

    held_out_documents = ["\n".join(held_out[i: i + 4]) for i in range(0, len(held_out), 4)]
    for model in ("clue.model", "lines.model"):
        newline_byte = spm.SentencePieceProcessor(model_file=str(tmp_path / model)).piece_to_id("<0x0A>")
        encoded = document_encoder(str(tmp_path / model))(held_out_documents)
        assert not any(newline_byte in ids for ids in encoded), model
    clue = measure(tmp_path / "clue.model", held_out_documents, True)
    lines = measure(tmp_path / "lines.model", held_out, True)
    assert "\n" not in clue.byte_fallback_characters
    assert abs(clue.byte_fallback_rate - lines.byte_fallback_rate) <= 0.003, (clue, lines)

    # Stage 1's figures are stage 2's: whole documents, encoded by stage 2's own worker.
    tokens = _stage_2_tokens(tmp_path / "clue.model", held_out_documents)
    assert clue.tokens == len(tokens) - len(held_out_documents)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "clue.model"))
    byte_tokens = sum(processor.is_byte(int(i)) for i in tokens)
    assert clue.byte_fallback_rate == pytest.approx(byte_tokens / clue.tokens)


def _make_older_format(run_dir: Path) -> None:
    """What a run directory of an earlier gpt2zh holds: no text_format, a dataset fingerprint without the file."""
    tokenizer = json.loads((run_dir / "tokenizer" / "manifest.json").read_text())
    del tokenizer["text_format"]
    (run_dir / "tokenizer" / "manifest.json").write_text(json.dumps(tokenizer, indent=2))
    dataset = json.loads((run_dir / "dataset" / "manifest.json").read_text())
    del dataset["inputs"]["tokenizer_sha256"]
    older = TokenizerManifest.read(run_dir / "tokenizer")  # read as the stages read it
    assert dataset_inputs(Config(), [], older).keys() == dataset["inputs"].keys()
    dataset["fingerprint"] = fingerprint(dataset["inputs"])
    (run_dir / "dataset" / "manifest.json").write_text(json.dumps(dataset, indent=2))


def test_an_older_format_tokenizer_keeps_its_run_until_retrained_and_retraining_rebuilds_the_dataset(
        tmp_path, capsys, small_corpus, trainable_run):
    # (NU17) format 1 learnt from lines: its runs go on as they are, with one line saying how to retrain
    run_dir = copy_run(trainable_run, tmp_path)
    _make_older_format(run_dir)
    before = tree_checksums(run_dir)

    def command(name: str, *extra: str) -> str:
        code = main([name, "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA, *extra])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return captured.err + captured.out

    out = command("train-tokenizer")
    assert "up to date" in out and "trained on lines (an older format)" in out and "PITFALLS.md NU17" in out
    assert "up to date" in command("tokenize")
    assert tree_checksums(run_dir) == before, "nothing rebuilt unasked"

    out = command("train-tokenizer", "--force")
    tokenizer = json.loads((run_dir / "tokenizer" / "manifest.json").read_text())
    assert tokenizer["text_format"] == 2 and "older format" not in out
    assert "up to date" not in command("tokenize"), "a dataset of the old ids is never taken for this tokenizer's"
    dataset = json.loads((run_dir / "dataset" / "manifest.json").read_text())
    assert dataset["inputs"]["tokenizer_sha256"] == tokenizer["tokenizer_sha256"]
