"""Stage 2: corpus + <run-dir>/tokenizer/ -> <run-dir>/dataset/ (train and validation blocks).

Every byte of the corpus is read, in 1 MiB blocks spread over worker processes; the parent dedupes,
splits and packs documents (each followed by <|endoftext|>) into blocks of exactly block_size tokens,
streaming them to disk. Memory stays flat whatever the corpus size (G10).
"""

import json
import logging
import math
from pathlib import Path

import numpy as np

from gpt2zh.config import dump_config
from gpt2zh.console import progress
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.cleaning import Deduplicator
from gpt2zh.dataset.chunks import WorkItems
from gpt2zh.dataset.packing import BlockPacker
from gpt2zh.dataset.parallel import ordered_map
from gpt2zh.dataset.shards import items_for_shard, shard_folder_name
from gpt2zh.dataset.store import SplitWriter, token_dtype, write_dataset_dict
from gpt2zh.dataset.worker import BlockTokens, WorkerSetup, init_worker, tokenize_block
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import (
    dataset_inputs,
    expected_tokenizer_fingerprint,
    recorded_base_model,
    tokenizer_inputs,
)
from gpt2zh.input_changes import changed_inputs
from gpt2zh.manifests import DatasetManifest, TokenizerManifest
from gpt2zh.memory import peak_rss_mb
from gpt2zh.report import StageReport, human_bytes
from gpt2zh.rundir import StageOutput, file_sha256, fingerprint
from gpt2zh.stages import StageRequest

log = logging.getLogger("gpt2zh")
STAGE = "tokenize"
SPLITS = ("train", "validation")
# Fewer held-out documents than this, or characters, and the validation loss follows a handful of texts' topics.
FEW_VALIDATION_DOCUMENTS, FEW_VALIDATION_CHARACTERS = 20, 10_000
TOKENIZER_FIX = "run `gpt2zh train-tokenizer` (or `gpt2zh run`) with the same --run-dir, corpus and config first"


def checked_tokenizer(tokenizer_dir: Path, config, sources) -> TokenizerManifest:
    """The tokenizer manifest, if the tokenizer on disk is complete and was trained for this corpus and config."""
    manifest = TokenizerManifest.read(tokenizer_dir)
    if manifest is None:
        raise UserError(f"no complete tokenizer in {tokenizer_dir}", TOKENIZER_FIX)
    if manifest.fingerprint != expected_tokenizer_fingerprint(config, sources, manifest):
        expected = tokenizer_inputs(config, sources, recorded_base_model(config, manifest))
        changes = changed_inputs(manifest.inputs, expected) or ["its format"]
        run_dir = tokenizer_dir.parent
        raise UserError(f"the tokenizer in {tokenizer_dir} was trained with other settings than this command's: "
                        f"{'; '.join(changes[:6])}",
                        f"to reuse it, drop what changed (a command without --config starts from the run's saved "
                        f"settings); to retrain it with these settings, run `gpt2zh train-tokenizer --run-dir "
                        f"{run_dir} --force` with the same flags (or `gpt2zh run ... --force`)")
    tokenizer_file, digest = manifest.checked_file()
    if file_sha256(tokenizer_dir / tokenizer_file) != digest:
        raise UserError(f"{tokenizer_dir}/{tokenizer_file} differs from the one stage 1 wrote", TOKENIZER_FIX)
    return manifest


def output_folder(dataset_dir: Path, data) -> Path:
    """The folder this build writes: the dataset, or one shard folder inside it."""
    if data.num_shards == 1:
        return dataset_dir
    if DatasetManifest.read(dataset_dir) is not None:
        raise UserError(f"{dataset_dir} holds a single-job dataset; sharded builds go into shard folders "
                        "inside a dataset folder of their own",
                        "use a new --run-dir for the sharded build, or delete the existing dataset")
    return dataset_dir / shard_folder_name(data.shard_index, data.num_shards)


class _Splits:
    """Dedupe, split, pack and write, in document order."""

    def __init__(self, staging: Path, block_size: int, dtype: np.dtype, fingerprint_value: str, dedupe: bool,
                 unk_id: int | None = None):
        self.writers = {s: SplitWriter(staging / s, s, block_size, dtype, fingerprint_value) for s in SPLITS}
        self.packers = {s: BlockPacker(block_size, self.writers[s].write) for s in SPLITS}
        self.deduplicator = Deduplicator() if dedupe else None
        self.unk_id = unk_id  # an adopted vocabulary's unknown token (BM3), counted in what is packed
        self.unknown = dict.fromkeys(SPLITS, 0)

    def add(self, result: BlockTokens, stats) -> None:
        keep = np.ones(len(result.doc_tokens), bool)
        if self.deduplicator is not None:
            for i in range(len(keep)):
                keep[i] = not self.deduplicator.is_duplicate(result.digests[16 * i: 16 * i + 16])
            stats.cleaning.duplicates_dropped += int((~keep).sum())
        for split, chosen in (("train", keep & ~result.held_out), ("validation", keep & result.held_out)):
            counts = getattr(stats, split)
            counts.documents += int(chosen.sum())
            counts.characters += int(result.doc_chars[chosen].sum())
            if not chosen.any():
                continue
            tokens = result.tokens if chosen.all() else result.tokens[np.repeat(chosen, result.doc_tokens)]
            self.packers[split].add(tokens)
            if self.unk_id is not None:
                self.unknown[split] += int(np.count_nonzero(tokens == self.unk_id))

    def close(self) -> dict[str, dict]:
        figures = {}
        for split in SPLITS:
            packer, writer = self.packers[split], self.writers[split]
            tail = packer.close()
            writer.close()
            figures[split] = {"tokens": packer.tokens_in, "blocks": packer.blocks_out, "dropped_tail_tokens": tail,
                              "unk_tokens": self.unknown[split]}
        return figures


def _memory(worker_peak: float, workers: int) -> dict[str, float]:
    """Peaks of the main process and the largest worker; their sum over all processes bounds the stage."""
    main = peak_rss_mb()
    if workers <= 1:  # tokenized in-process
        return {"main": round(main, 1), "worker": 0.0, "total": round(main, 1)}
    return {"main": round(main, 1), "worker": round(worker_peak, 1), "total": round(main + workers * worker_peak, 1)}


def tokenize_dataset(request: StageRequest) -> DatasetManifest:
    config, data = request.config, request.config.data
    report = StageReport(STAGE)
    sources, corpus = request.corpus()
    tokenizer_dir = request.run_dir.tokenizer
    tokenizer = checked_tokenizer(tokenizer_dir, config, sources)
    parts = dataset_inputs(config, sources, tokenizer)
    output = StageOutput(output_folder(request.run_dir.dataset, data), DatasetManifest, fingerprint(parts), parts)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s is up to date for this corpus, tokenizer and config; skipped (--force rebuilds)",
                 STAGE, output.final)
        return manifest
    output.refuse_replacing(request.replace)

    specials = tokenizer.special_tokens
    reader = CorpusReader(sources, data, tuple(specials))  # checks every file before reading starts
    blocks = items_for_shard(reader.blocks, data.shard_index, data.num_shards)
    if not blocks:
        raise UserError(f"shard {data.shard_index} of {data.num_shards} has no data: the corpus has only "
                        f"{len(reader.blocks)} block(s) of 1 MiB", "use fewer --data-num-shards")
    dtype = token_dtype(tokenizer.vocab_size)
    work = WorkItems(blocks, reader)
    wanted = data.num_proc or min(8, request.cpu_count)  # the hardware facts' count
    workers = wanted if any(block.whole_file for block in blocks) else min(wanted, len(blocks))
    adopted = not tokenizer.trained
    setup = WorkerSetup(spm_model="" if adopted else str(tokenizer_dir / "tokenizer.model"),
                        hf_tokenizer=str(tokenizer_dir) if adopted else "", data=data, reserved_strings=tuple(specials),
                        end_of_text_id=tokenizer.eos_id, dtype=dtype.name,
                        keep_digests=data.dedupe, log_level=log.level)
    stats = reader.stats
    total_bytes = sum(reader.block_bytes(block) for block in blocks)
    worker_peak = 0.0
    with output.build() as staging:
        splits = _Splits(staging, data.block_size, dtype, output.fingerprint, data.dedupe,
                         unknown_token_id(tokenizer) if adopted else None)
        with progress(total_bytes, "B", f"tokenizing ({workers} worker{'s' * (workers > 1)})", scale=True) as bar:
            for result in ordered_map(tokenize_block, work, workers, init_worker, (setup,)):
                splits.add(result, stats)
                worker_peak = max(worker_peak, result.worker_peak_rss_mb)
                stats.lines.add(result.lines)
                stats.cleaning.add(result.cleaning)
                item_bytes = work.sizes.popleft()
                stats.bytes_read += item_bytes
                bar.update(item_bytes)
            stats.blocks_read += len(blocks)
        figures = splits.close()
        _check_sizes(figures, stats, data)
        write_dataset_dict(staging, list(SPLITS))
        seconds = report.elapsed
        summary = {
            "corpus": corpus, "reading": stats.as_dict(), "splits": figures, "block_size": data.block_size,
            "dtype": dtype.name, "vocab_size": tokenizer.vocab_size, "workers": workers,
            "separator": next(token for token, i in specials.items() if i == tokenizer.eos_id),
            "unknown_token": next((token for token, i in specials.items() if i == splits.unk_id), None),
            "shard": {"index": data.shard_index, "count": data.num_shards},
            "chars_per_token": _chars_per_token(stats, figures), "seconds": round(seconds, 2),
            "mb_per_second": round(stats.bytes_read / 1e6 / max(seconds, 1e-9), 2),
            "peak_rss_mb": _memory(worker_peak, workers),
        }
        (staging / "stats.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        dump_config(config, staging / "config.yaml")
        output.manifest_extra.update(
            tokenizer_fingerprint=tokenizer.fingerprint, block_size=data.block_size, dtype=dtype.name,
            rows={split: figures[split]["blocks"] for split in SPLITS},
            shard={"index": data.shard_index, "count": data.num_shards})
    _report(report, corpus, stats, summary, output.final)
    return output.published


def unknown_token_id(tokenizer: TokenizerManifest) -> int | None:
    """The adopted tokenizer's unknown token; None where it is also the separator (GPT-2's BPE names
    <|endoftext|> its unk, and never produces it for text)."""
    ids = tokenizer.special_token_ids
    return ids.get("unk") if ids.get("unk") not in (ids["eos"], ids["bos"]) else None


def _chars_per_token(stats, figures) -> float:
    content_tokens = sum(figures[s]["tokens"] for s in SPLITS) - stats.train.documents - stats.validation.documents
    characters = stats.train.characters + stats.validation.characters
    return round(characters / content_tokens, 4) if content_tokens else 0.0


def _check_sizes(figures: dict, stats, data) -> None:
    where = f" (shard {data.shard_index} of {data.num_shards})" if data.num_shards > 1 else ""
    if stats.train.documents + stats.validation.documents == 0:
        fix = "check --data-files" + (", or use fewer shards" if where else "")
        raise UserError(f"the corpus has no text left after cleaning{where} ({stats.files} file(s), "
                        f"{len(stats.empty_files)} empty)", fix)
    if figures["train"]["blocks"] == 0:
        raise UserError(f"the training split has {figures['train']['tokens']:,} tokens, fewer than one block of "
                        f"{data.block_size}", "lower --data-block-size or add text")
    if data.validation_fraction > 0 and figures["validation"]["blocks"] == 0:
        raise UserError(f"the validation split has {figures['validation']['tokens']:,} tokens, fewer than one block "
                        f"of {data.block_size}", "raise --data-validation-fraction or lower --data-block-size")
    documents, characters = stats.validation.documents, stats.validation.characters
    if data.validation_fraction > 0 and (documents < FEW_VALIDATION_DOCUMENTS
                                         or characters < FEW_VALIDATION_CHARACTERS):
        total = stats.train.documents + documents
        wanted = min(0.5, math.ceil(100 * FEW_VALIDATION_DOCUMENTS / max(1, total)) / 100)
        fix = (f"use --data-validation-fraction {wanted:g} (about {FEW_VALIDATION_DOCUMENTS} documents)"
               if wanted > data.validation_fraction else "add text")
        log.warning("%s: the validation split has %d document(s), %s characters: its loss measures these few texts, "
                    "not the corpus (PITFALLS.md NU9); %s", STAGE, documents, f"{characters:,}", fix)


def _report(report: StageReport, corpus: str, stats, summary: dict, final: Path) -> None:
    figures, block_size = summary["splits"], summary["block_size"]
    report.row("corpus", corpus)
    shard = summary["shard"]
    shard_note = f", shard {shard['index']} of {shard['count']}" if shard["count"] > 1 else ""
    report.row("read", f"{human_bytes(stats.bytes_read)} in {stats.blocks_read} block(s){shard_note}, "
                       f"{summary['workers']} worker(s), {summary['mb_per_second']:.1f} MB/s")
    if layout := stats.layout_line():
        report.row("layout", layout)
    report.row("documents", stats.documents_line("validation"))
    report.row("cleaning", stats.cleaning_line())
    report.row("tokens", f"{figures['train']['tokens']:,} training, {figures['validation']['tokens']:,} validation "
                         f"(one {summary['separator']} after each document); "
                         f"{summary['chars_per_token']:.2f} chars/token")
    if summary["unknown_token"] is not None:
        unknown = sum(figures[split]["unk_tokens"] for split in SPLITS)
        tokens = sum(figures[split]["tokens"] for split in SPLITS)
        report.row("unknown", f"{unknown:,} {summary['unknown_token']} ({unknown / max(tokens, 1):.3%} of tokens): "
                              "characters the adopted vocabulary lacks")
        if unknown:
            log.warning("%s: %s character occurrence(s) of the corpus became %s, which the model can neither read "
                        "nor write back (PITFALLS.md BM3)", STAGE, f"{unknown:,}", summary["unknown_token"])
    report.row("blocks", f"{figures['train']['blocks']:,} training + {figures['validation']['blocks']:,} validation "
                         f"× {block_size} tokens, {summary['dtype']} (vocab {summary['vocab_size']:,})")
    report.row("dropped", f"final tails only: {figures['train']['dropped_tail_tokens']:,} training + "
                          f"{figures['validation']['dropped_tail_tokens']:,} validation tokens")
    memory = summary["peak_rss_mb"]
    per_worker = f", each worker <= {memory['worker']:,.0f} MB" if memory["worker"] else ""
    report.row("memory", f"peak RSS {memory['total']:,.0f} MB in all (main {memory['main']:,.0f} MB{per_worker})")
    report.row("wrote", f"{final}/ (train/, validation/, stats.json, config.yaml)")
    report.row("load it", f"datasets.load_from_disk({str(final)!r})")
    report.print()
