#!/usr/bin/env python3
"""Benchmark stage 2 against transformers' run_clm.py data pipeline and against the raw-encode limit.

(a) speed: our stage vs the reference — load_dataset("text"), map(tokenizer, batched=True,
    num_proc=2), map(group_texts) — on the same demo text file and the same tokenizer, both warm,
    median of --repeat runs. Goal: ours >= 5x faster.
(b) the raw-encode limit: `gpt2zh tokenize` as a whole process (start-up, reading, cleaning,
    hashing, packing, writing) vs SentencePiece's own encode of the same lines in the same number
    of spawned processes, on the demo text x6 (~53 MB of plain UTF-8 Chinese), alternating, median
    of --repeat. Goal: ours <= 1.5x the limit. The same for the text compressed with gzip, against
    the limit plus decompressing it once.
(c) memory: stage 2 alone, in a fresh process, on the demo corpus x1 and x10 (replicated);
    goal: peak RSS x10 / x1 <= 1.5.

    python scripts/bench_data.py [--repeat 3] [--num-proc 2]
"""

import argparse
import contextlib
import gzip
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpt2zh.hf_env import prepare_hf_environment

BLOCK_SIZE = 256


def run_clm_reference(text_file: Path, tokenizer_dir: Path, num_proc: int, cache_dir: Path) -> int:
    """transformers/examples/pytorch/language-modeling/run_clm.py's data path, condensed; returns blocks."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    raw = load_dataset("text", data_files={"train": str(text_file)}, cache_dir=str(cache_dir))
    tokenized = raw.map(lambda batch: tokenizer(batch["text"]), batched=True, num_proc=num_proc,
                        remove_columns=["text"], desc=None)

    def group_texts(examples):
        concatenated = {k: sum(examples[k], []) for k in examples}
        total = (len(concatenated["input_ids"]) // BLOCK_SIZE) * BLOCK_SIZE
        result = {k: [t[i: i + BLOCK_SIZE] for i in range(0, total, BLOCK_SIZE)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True, num_proc=num_proc)
    return grouped["train"].num_rows


_processor = None


def _load_processor(model_file: str) -> None:
    global _processor
    import sentencepiece as spm

    _processor = spm.SentencePieceProcessor(model_file=model_file)


def _encode_lines(lines: list[str]) -> int:
    return sum(map(len, _processor.encode(lines)))


def encode_lines_in_processes(text_file: str, model_file: str, num_proc: int) -> None:
    """SentencePiece alone: the file's lines, 2,000 at a time, in num_proc spawned processes."""
    import multiprocessing

    with open(text_file, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    batches = [lines[i: i + 2000] for i in range(0, len(lines), 2000)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_proc, initializer=_load_processor, initargs=(model_file,)) as pool:
        tokens = sum(pool.imap(_encode_lines, batches, chunksize=4))
    print(tokens)


def raw_encode_limit(text_file: Path, model_file: Path, num_proc: int) -> float:
    """Seconds for encode_lines_in_processes as a whole process, like `gpt2zh tokenize` is timed."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--raw-encode", str(text_file), str(model_file), str(num_proc)],
                   check=True, capture_output=True)
    return time.perf_counter() - started


def whole_process(*args: str) -> float:
    started = time.perf_counter()
    cli(*args)
    return time.perf_counter() - started


def cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "gpt2zh", *args], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"bench: `gpt2zh {' '.join(args)}` failed:\n{result.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--raw-encode", nargs=3, metavar=("TEXT", "MODEL", "PROCESSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_encode:
        encode_lines_in_processes(args.raw_encode[0], args.raw_encode[1], int(args.raw_encode[2]))
        return
    prepare_hf_environment()
    import datasets
    import transformers  # noqa: F401  (warm imports: neither side pays them inside the timing)

    from gpt2zh.config import find_config, load_config
    from gpt2zh.console import setup_logging
    from gpt2zh.corpus import CorpusReader, sources_for
    from gpt2zh.dataset.stage import tokenize_dataset
    from gpt2zh.resolution import resolve_file
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import StageRequest

    datasets.disable_caching()
    datasets.disable_progress_bars()
    setup_logging(quiet=True)
    demo = load_config(find_config("demo"))
    text = "\n".join(doc.text for doc in CorpusReader(sources_for([])[0], demo.data).documents()) + "\n"
    common = ["--config", "demo", "--no-data-dedupe", "--data-block-size", str(BLOCK_SIZE), "--quiet",
              "--data-num-proc", str(args.num_proc)]
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as tmp:
        root = Path(tmp)
        corpora = {}
        for factor in (1, 10):
            corpora[factor] = root / f"demo_x{factor}.txt"
            corpora[factor].write_text(text * factor, encoding="utf-8")
            run_dir = str(root / f"run{factor}")
            cli("train-tokenizer", "--data-files", str(corpora[factor]), "--run-dir", run_dir, *common)
        size_mb = corpora[1].stat().st_size / 1e6

        resolved = resolve_file(find_config("demo"), {"data.files": [str(corpora[1])], "data.dedupe": False,
                                                      "data.block_size": BLOCK_SIZE, "data.num_proc": args.num_proc})
        ours, reference, blocks = [], [], {}
        for attempt in range(args.repeat):
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                manifest = tokenize_dataset(StageRequest(resolved, RunDir(root / "run1"), force=True))
            ours.append(time.perf_counter() - started)
            blocks["ours"] = manifest.rows["train"] + manifest.rows["validation"]
            started = time.perf_counter()
            blocks["run_clm"] = run_clm_reference(corpora[1], RunDir(root / "run1").tokenizer, args.num_proc,
                                                  root / f"hf-cache-{attempt}")
            reference.append(time.perf_counter() - started)
        ours_s, reference_s = statistics.median(ours), statistics.median(reference)
        print(f"demo text {size_mb:.1f} MB, block {BLOCK_SIZE}, num_proc {args.num_proc}, median of {args.repeat}")
        print(f"  ours     {ours_s:6.2f} s  {size_mb / ours_s:6.1f} MB/s  {blocks['ours']:,} blocks"
              f"  (runs: {', '.join(f'{t:.2f}' for t in ours)})")
        print(f"  run_clm  {reference_s:6.2f} s  {size_mb / reference_s:6.1f} MB/s  {blocks['run_clm']:,} blocks"
              f"  (runs: {', '.join(f'{t:.2f}' for t in reference)})")
        speedup = reference_s / ours_s
        print(f"  speed-up {speedup:.2f}x  ({'meets' if speedup >= 5 else 'MISSES'} the goal of >= 5x)")

        limit_corpus = root / "demo_x6.txt"
        limit_corpus.write_text(text * 6, encoding="utf-8")
        packed = root / "demo_x6.txt.gz"
        packed.write_bytes(gzip.compress(limit_corpus.read_bytes(), compresslevel=6))
        limit_mb = limit_corpus.stat().st_size / 1e6
        model = RunDir(root / "run1").tokenizer / "tokenizer.model"
        timings: dict[str, list[float]] = {"limit": [], "ours": [], "decompress": [], "ours_gz": []}
        for corpus, key in ((limit_corpus, "ours"), (packed, "ours_gz")):
            cli("train-tokenizer", "--data-files", str(corpus), "--run-dir", str(root / key), *common)
        for _ in range(args.repeat):
            timings["limit"].append(raw_encode_limit(limit_corpus, model, args.num_proc))
            for corpus, key in ((limit_corpus, "ours"), (packed, "ours_gz")):
                timings[key].append(whole_process("tokenize", "--data-files", str(corpus), "--run-dir",
                                                  str(root / key), "--force", *common))
            started = time.perf_counter()
            with gzip.open(packed, "rb") as handle:
                while handle.read(1 << 20):
                    pass
            timings["decompress"].append(time.perf_counter() - started)
        median = {key: statistics.median(values) for key, values in timings.items()}
        print(f"demo text x6 {limit_mb:.1f} MB, whole process, num_proc {args.num_proc}, median of {args.repeat}")
        for key, label in (("limit", "raw encode limit"), ("ours", "gpt2zh tokenize"),
                           ("decompress", "gunzip alone"), ("ours_gz", "gpt2zh tokenize .gz")):
            print(f"  {label:<20} {median[key]:6.2f} s  {limit_mb / median[key]:6.1f} MB/s"
                  f"  (runs: {', '.join(f'{t:.2f}' for t in timings[key])})")
        plain_ratio = median["ours"] / median["limit"]
        gz_ratio = median["ours_gz"] / (median["limit"] + median["decompress"])
        print(f"  ours / limit = {plain_ratio:.2f}  ({'meets' if plain_ratio <= 1.5 else 'MISSES'} the goal of <= 1.5)")
        print(f"  ours .gz / (limit + gunzip) = {gz_ratio:.2f}  ({'meets' if gz_ratio <= 1.5 else 'MISSES'} "
              "the goal of <= 1.5)")
        print(f"  reading .gz costs {median['ours_gz'] - median['ours']:.2f} s more than plain text; "
              f"decompressing it alone takes {median['decompress']:.2f} s")

        peaks = {}
        for factor in (1, 10):
            run_dir = str(root / f"run{factor}")  # --force: the timing runs above left an up-to-date dataset
            cli("tokenize", "--data-files", str(corpora[factor]), "--run-dir", run_dir, "--force", *common)
            stats = json.loads((RunDir(root / f"run{factor}").dataset / "stats.json").read_text())
            peaks[factor] = stats["peak_rss_mb"]["total"]  # main process + workers, each its own peak
            print(f"  x{factor:<3} {corpora[factor].stat().st_size / 1e6:7.1f} MB  peak RSS {peaks[factor]:7.1f} MB  "
                  f"{stats['mb_per_second']:.1f} MB/s  {stats['splits']['train']['blocks']:,} training blocks")
        ratio = peaks[10] / peaks[1]
        print(f"  peak RSS x10/x1 = {ratio:.2f}  ({'meets' if ratio <= 1.5 else 'MISSES'} the goal of <= 1.5)")


if __name__ == "__main__":
    main()
