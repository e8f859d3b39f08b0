#!/usr/bin/env python3
"""Benchmark stage 2 with an adopted tokenizer (`--model-init-from`) against that tokenizer's own limit.

A UER-style GPT-2 (BertTokenizerFast over a character vocabulary, built from the demo text by
tests/tiny_models.py) is adopted by stage 1; then `gpt2zh tokenize` as a whole process (start-up,
reading, cleaning, hashing, encoding through the HF fast tokenizer, packing, writing) runs against the
same tokenizer's batch encode of the same lines, 2,000 at a time, in the same number of spawned
processes, on the demo text x4, alternating, median of --repeat. Goal: ours <= 1.5x the limit, the goal
the SentencePiece path meets in scripts/bench_data.py.

    python scripts/bench_adopted.py [--repeat 3] [--num-proc 2]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK_SIZE = 128
_tokenizer = None


def _load_tokenizer(folder: str) -> None:
    global _tokenizer
    import os

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism, as in stage 2
    from transformers import AutoTokenizer

    _tokenizer = AutoTokenizer.from_pretrained(folder)


def _encode_lines(lines: list[str]) -> int:
    return sum(map(len, _tokenizer(lines, add_special_tokens=False)["input_ids"]))


def encode_lines_in_processes(text_file: str, folder: str, num_proc: int) -> None:
    import multiprocessing

    with open(text_file, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    batches = [lines[i: i + 2000] for i in range(0, len(lines), 2000)]
    with multiprocessing.get_context("spawn").Pool(num_proc, _load_tokenizer, (folder,)) as pool:
        print(sum(pool.imap(_encode_lines, batches, chunksize=4)))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--raw-encode", nargs=3, metavar=("TEXT", "TOKENIZER", "PROCESSES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_encode:
        encode_lines_in_processes(args.raw_encode[0], args.raw_encode[1], int(args.raw_encode[2]))
        return
    sys.path.insert(0, str(REPO))
    from gpt2zh.config import find_config, load_config
    from gpt2zh.corpus import CorpusReader, sources_for
    from gpt2zh.models.source import hide_outside_vocabulary_ids
    from gpt2zh.rundir import RunDir
    from tests.tiny_models import uer_style_model

    hide_outside_vocabulary_ids()  # the tiny model's config keeps UER's out-of-vocabulary 50256

    demo = load_config(find_config("demo"))
    text = "\n".join(doc.text for doc in CorpusReader(sources_for([])[0], demo.data).documents()) + "\n"
    cli = [sys.executable, "-m", "gpt2zh"]
    common = ["--config", "demo", "--no-data-dedupe", "--data-block-size", str(BLOCK_SIZE), "--quiet",
              "--data-num-proc", str(args.num_proc)]
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as tmp:
        root = Path(tmp)
        corpus = root / "demo_x4.txt"
        corpus.write_text(text * 4, encoding="utf-8")
        size_mb = corpus.stat().st_size / 1e6
        base = uer_style_model(root / "uer", text)
        run_dir = root / "run"
        timed([*cli, "train-tokenizer", "--data-files", str(corpus), "--run-dir", str(run_dir),
               "--model-init-from", str(base), *common])
        timings: dict[str, list[float]] = {"limit": [], "ours": []}
        for _ in range(args.repeat):
            timings["limit"].append(timed([sys.executable, __file__, "--raw-encode", str(corpus),
                                           str(RunDir(run_dir).tokenizer), str(args.num_proc)]))
            timings["ours"].append(timed([*cli, "tokenize", "--data-files", str(corpus), "--run-dir", str(run_dir),
                                          "--model-init-from", str(base), "--force", *common]))
        median = {key: statistics.median(values) for key, values in timings.items()}
        print(f"demo text x4 {size_mb:.1f} MB, adopted BertTokenizerFast (character vocabulary), whole process, "
              f"num_proc {args.num_proc}, median of {args.repeat}")
        for key, label in (("limit", "HF encode limit"), ("ours", "gpt2zh tokenize")):
            print(f"  {label:<16} {median[key]:6.2f} s  {size_mb / median[key]:6.1f} MB/s"
                  f"  (runs: {', '.join(f'{t:.2f}' for t in timings[key])})")
        ratio = median["ours"] / median["limit"]
        print(f"  ours / limit = {ratio:.2f}  ({'meets' if ratio <= 1.5 else 'MISSES'} the goal of <= 1.5)")


if __name__ == "__main__":
    main()
