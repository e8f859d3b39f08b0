"""Stage 1: corpus -> <run-dir>/tokenizer/ (SentencePiece model + Hugging Face fast tokenizer).

The corpus is read in random 1 MiB blocks until read_factor × input_sentence_size sentences were
seen, so the stage's time is bounded on a corpus of any size (G9: "10+ minutes"); stage 2
reads every byte. Held-out documents never enter the training sample; they measure the result.
"""

import json
import logging
import random
import time

from gpt2zh.config import dump_config
from gpt2zh.config.schema import TokenizerConfig
from gpt2zh.corpus import CorpusReader
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import tokenizer_inputs
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.remote.checkpoints import wants_hub_checkpoint
from gpt2zh.report import StageReport, human_duration
from gpt2zh.rundir import StageOutput, file_sha256, fingerprint
from gpt2zh.stages import StageRequest
from gpt2zh.tokenizer.corpus_sample import CorpusSample, read_sample, report_sample_rows
from gpt2zh.tokenizer.hf_convert import SPM_FILE, convert, verify
from gpt2zh.tokenizer.quality import describe_characters, measure
from gpt2zh.tokenizer.specials import (
    END_OF_TEXT,
    END_OF_TEXT_ID,
    PAD,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
)
from gpt2zh.tokenizer.spm_train import TEXT_FORMAT

log = logging.getLogger("gpt2zh")
STAGE = "train-tokenizer"
def _verification_lines(sample: CorpusSample, cfg: TokenizerConfig) -> list[str]:
    lines = sample.held_out[: cfg.verify_lines]
    missing = cfg.verify_lines - len(lines)
    if missing > 0:
        pool = sample.reservoir.items
        lines += random.Random(cfg.seed).sample(pool, min(missing, len(pool)))
    return lines


def _report_adopted(report: StageReport, corpus: str, manifest: TokenizerManifest) -> TokenizerManifest:
    pushed = manifest.pushed_with_checkpoint
    report.row("corpus", corpus)
    report.row("adopted", f"the tokenizer pushed with {pushed['repo_id']}'s checkpoint (step {pushed['step']}, commit "
                          f"{pushed['commit'][:12]}): made from this corpus and these settings, so the checkpoint "
                          "resumes with the same token ids")
    report.row("tokenizer", f"vocab {manifest.vocab_size:,}")
    report.print()
    return manifest


def _mention_older_format(manifest: TokenizerManifest, folder) -> None:
    """An older tokenizer is kept as it is (its run goes on with the same ids); retraining is the user's call."""
    if manifest.pushed_with_checkpoint is None and (manifest.text_format or 1) < TEXT_FORMAT:
        log.info("%s: %s was trained on lines (an older format): each line break of a document is the byte piece "
                 "<0x0A>; kept as it is. To learn line breaks as pieces, retrain it: `gpt2zh run --from-stage "
                 "train-tokenizer --force` (the dataset and model are rebuilt from it; PITFALLS.md NU17)",
                 STAGE, folder)


def train_tokenizer(request: StageRequest) -> TokenizerManifest:
    config, cfg = request.config, request.config.tokenizer
    report = StageReport(STAGE)
    sources, corpus = request.corpus()
    if config.model.init_from:
        from gpt2zh.tokenizer.adopt import adopt_tokenizer

        return adopt_tokenizer(request, sources, corpus, report)
    parts = tokenizer_inputs(config, sources)
    output = StageOutput(request.run_dir.tokenizer, TokenizerManifest, fingerprint(parts), parts)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s is up to date for this corpus and config; skipped (--force retrains)", STAGE, output.final)
        _mention_older_format(manifest, output.final)
        return manifest
    output.refuse_replacing(request.replace)
    if not request.force and TokenizerManifest.read(output.final) is None and wants_hub_checkpoint(config):
        from gpt2zh.tokenizer.pushed import adopt_pushed_tokenizer

        if (manifest := adopt_pushed_tokenizer(config, output)) is not None:  # a new machine (PITFALLS.md RA5)
            return _report_adopted(report, corpus, manifest)

    reader = CorpusReader(sources, config.data, SPECIAL_TOKENS)
    sample = read_sample(reader, cfg)
    if not sample.reservoir.items:
        raise UserError(f"the corpus has no training text after cleaning ({reader.stats.files} file(s), "
                        f"{len(reader.stats.empty_files)} empty, {reader.stats.validation.documents} held out)",
                        "check --data-files and --data-validation-fraction")
    with output.build() as staging:
        model = staging / SPM_FILE
        log.info("%s: training SentencePiece %s, vocab %s, on %s sentences…", STAGE, cfg.model_type,
                 f"{cfg.vocab_size:,}", f"{len(sample.reservoir.items):,}")
        started = time.monotonic()
        from gpt2zh.tokenizer.spm_train import train_sentencepiece

        train_sentencepiece(sample.reservoir.items, model, cfg, request.cpu_count)
        train_seconds = time.monotonic() - started
        convert(model, staging, config.data.normalization)
        checked = verify(staging, model, _verification_lines(sample, cfg), config.data.normalization)
        held_out = bool(sample.held_out)
        quality = measure(model, sample.held_out if held_out else sample.training_documents, held_out)
        stats = {
            "corpus": corpus, "normalization": config.data.normalization, "reading": reader.stats.as_dict(),
            "sample": {"sentences_used": len(sample.reservoir.items), "sentences_seen": sample.reservoir.seen,
                       "sentences_cut": sample.sentences_cut, "read_target": sample.target},
            "tokenizer": {"model_type": cfg.model_type, "vocab_size": checked.vocab_size, "text_format": TEXT_FORMAT,
                          "special_tokens": {UNK: UNK_ID, END_OF_TEXT: END_OF_TEXT_ID, PAD: PAD_ID}},
            "quality": quality.as_dict(), "verified_lines": checked.lines,
            "seconds": {"training": round(train_seconds, 2), "total": round(report.elapsed, 2)},
        }
        (staging / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        dump_config(config, staging / "config.yaml")
        output.manifest_extra.update(
            tokenizer_sha256=file_sha256(staging / "tokenizer.json"), spm_sha256=file_sha256(model),
            vocab_size=checked.vocab_size, text_format=TEXT_FORMAT,
            special_tokens={UNK: UNK_ID, END_OF_TEXT: END_OF_TEXT_ID, PAD: PAD_ID},
            special_token_ids={"unk": UNK_ID, "bos": END_OF_TEXT_ID, "eos": END_OF_TEXT_ID, "pad": PAD_ID})

    report_sample_rows(report, corpus, reader, sample)
    report.row("tokenizer", f"{cfg.model_type}, vocab {checked.vocab_size:,}, "
                            f"trained in {human_duration(train_seconds)}; "
                            f"{END_OF_TEXT}={END_OF_TEXT_ID} (bos/eos), {PAD}={PAD_ID}, {UNK}={UNK_ID}")
    measured_on = (f"{quality.documents:,} whole held-out document(s)" if held_out  # as stage 2 encodes them
                   else f"{quality.documents:,} whole training document(s) (no held-out documents)")
    spelled = (f" (most often {describe_characters(quality.byte_fallback_characters, 3)})"
               if quality.byte_fallback_characters else "")
    report.row("quality", f"{quality.chars_per_token:.2f} chars/token, byte fallback {quality.byte_fallback_rate:.2%} "
                          f"of tokens{spelled}, <unk> {quality.unk_tokens} on {measured_on}")
    report.row("verified", f"{checked.lines:,} lines: same ids as SentencePiece, decode(encode(x)) == x for all")
    report.row("wrote", f"{output.final}/ (tokenizer.json, tokenizer_config.json, {SPM_FILE}, stats.json, config.yaml)")
    report.row("load it", f"AutoTokenizer.from_pretrained({str(output.final)!r})")
    report.print()
    return output.published
