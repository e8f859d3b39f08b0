#!/usr/bin/env python3
"""Benchmark stage 1 on the demo corpus ×1 and ×10 (replicated), in one run.

Goal: the ×10 run takes at most 2× the ×1 time, because the stage reads a bounded sample of random
1 MiB blocks (G9) instead of the whole corpus. Dedupe is off: replication would otherwise
collapse ×10 back to ×1. Libraries are imported before timing so neither run pays for imports.

    python scripts/bench_tokenizer.py [--repeat 3] [--vocab-size 8000]
"""

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from gpt2zh.hf_env import prepare_hf_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is reported")
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    prepare_hf_environment()

    import sentencepiece  # noqa: F401  (warm imports)
    import transformers  # noqa: F401

    from gpt2zh.config import find_config, load_config
    from gpt2zh.console import setup_logging
    from gpt2zh.corpus import CorpusReader, sources_for
    from gpt2zh.resolution import resolve_file
    from gpt2zh.rundir import RunDir
    from gpt2zh.stages import StageRequest
    from gpt2zh.tokenizer.stage import train_tokenizer

    setup_logging(quiet=True)
    config_path = find_config("demo")
    documents = [doc.text for doc in CorpusReader(sources_for([])[0], load_config(config_path).data).documents()]
    text = "\n".join(documents) + "\n"
    with tempfile.TemporaryDirectory(prefix="gpt2zh-bench-") as tmp:
        results = {}
        for factor in (1, 10):
            corpus = Path(tmp) / f"demo_x{factor}.txt"
            corpus.write_text(text * factor, encoding="utf-8")
            timings, stats = [], None
            for attempt in range(args.repeat):
                resolved = resolve_file(config_path, {"data.files": [str(corpus)], "data.dedupe": False,
                                                      "tokenizer.vocab_size": args.vocab_size})
                request = StageRequest(resolved, RunDir(Path(tmp) / f"run_x{factor}_{attempt}"), force=True)
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    manifest = train_tokenizer(request)
                timings.append(time.perf_counter() - started)
                stats = manifest
            read = __import__("json").loads((request.run_dir.tokenizer / "stats.json").read_text())["reading"]
            results[factor] = (statistics.median(timings), corpus.stat().st_size, read["bytes_read"], stats)
            print(f"x{factor:<3} corpus {corpus.stat().st_size / 1e6:7.1f} MB  "
                  f"read {read['bytes_read'] / 1e6:6.1f} MB  "
                  f"stage time median {results[factor][0]:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in timings)})")
    ratio = results[10][0] / results[1][0]
    verdict = "meets" if ratio <= 2.0 else "MISSES"
    print(f"ratio x10/x1 = {ratio:.2f}  ({verdict} the goal of <= 2.0)")


if __name__ == "__main__":
    main()
