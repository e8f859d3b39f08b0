"""Stage 1 with `--model-init-from`: the base model's tokenizer, adopted instead of trained.

A model only understands the ids it was trained on, so continuing someone's GPT-2 means using its tokenizer
as it is. What that tokenizer does to this corpus is measured on the held-out documents and reported: chars
per token, how many characters it cannot represent (`[UNK]`, common with a character vocabulary such as
UER's 21,128 entries), and whether decoding gives the text back (a character vocabulary drops whitespace and
unseen characters; decoding here removes the spaces WordPiece puts between Chinese characters).
"""

import json
import logging

from gpt2zh.config import dump_config
from gpt2zh.corpus import CorpusReader
from gpt2zh.errors import UserError
from gpt2zh.fingerprints import tokenizer_inputs
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.models.architecture import base_architecture, base_sizes
from gpt2zh.models.coverage import LOSSY_SHARE, lost_characters, unknown_id
from gpt2zh.models.source import fetch_model, read_config
from gpt2zh.models.text import decode_text, load_tokenizer, special_token_ids
from gpt2zh.report import StageReport
from gpt2zh.rundir import StageOutput, file_sha256, fingerprint
from gpt2zh.stages import StageRequest

log = logging.getLogger("gpt2zh")
STAGE = "train-tokenizer"
FLAG = "--model-init-from"


def _figures(tokenizer, texts: list[str], unk_id: int | None) -> dict:
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    tokens = sum(len(ids) for ids in encoded["input_ids"])
    loss = lost_characters(tokenizer, texts, unk_id, encoded)
    inexact = [(text, decode_text(tokenizer, ids)) for text, ids in zip(texts, encoded["input_ids"], strict=True)]
    inexact = [(text, back) for text, back in inexact if back != text]
    characters = sum(map(len, texts))
    return {"documents": len(texts), "characters": characters, "tokens": tokens,
            "chars_per_token": round(characters / tokens, 4) if tokens else 0.0,
            "unk_tokens": loss.unknown_tokens, "unk_rate": round(loss.unknown_tokens / tokens, 6) if tokens else 0,
            "unknown_characters": loss.most_frequent(), "lost_characters": loss.lost,
            "lost_share": round(loss.share, 6), "lost_examples": loss.examples(),
            "round_trip_exact": len(texts) - len(inexact),
            "round_trip_example": [inexact[0][0][:60], inexact[0][1][:60]] if inexact else None}


def adopt_tokenizer(request: StageRequest, sources, corpus: str, report: StageReport) -> TokenizerManifest:
    from gpt2zh.tokenizer.corpus_sample import read_sample, report_sample_rows

    config = request.config
    where = f"{FLAG} {config.model.init_from!r}"
    source = fetch_model(config.model.init_from, FLAG)  # weights too: a missing file fails now, not in stage 3
    base = read_config(source, FLAG)
    identity = source.identity()  # hashes a folder's weights: once
    recorded = {**identity, "label": source.label}
    parts = tokenizer_inputs(config, sources, identity)
    output = StageOutput(request.run_dir.tokenizer, TokenizerManifest, fingerprint(parts), parts)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s holds the tokenizer of %s; skipped", STAGE, output.final, source.label)
        return manifest
    output.refuse_replacing(request.replace)

    tokenizer = load_tokenizer(source.folder, where)
    vocab_size = base["vocab_size"]
    if len(tokenizer) > vocab_size:
        raise UserError(f"{where}: the tokenizer has {len(tokenizer):,} tokens but the model only {vocab_size:,} "
                        "embeddings", "use the tokenizer the model was trained with")
    ids = special_token_ids(tokenizer, where)
    specials = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    reader = CorpusReader(sources, config.data, tuple(specials))
    sample = read_sample(reader, config.tokenizer)
    texts = sample.held_out or sample.reservoir.items[:2000]
    if not texts:
        raise UserError(f"the corpus has no text after cleaning ({reader.stats.files} file(s))", "check --data-files")
    unk_id = unknown_id(tokenizer, ids)
    figures = {**_figures(tokenizer, texts, unk_id), "held_out": bool(sample.held_out),
               "unknown_token": tokenizer.unk_token if unk_id is not None else None}
    _refuse_lossy(where, figures, config.tokenizer.allow_lossy)  # before anything is written: stage 2 never starts
    with output.build() as staging:
        tokenizer.save_pretrained(staging)
        stats = {"corpus": corpus, "normalization": config.data.normalization, "reading": reader.stats.as_dict(),
                 "base_model": recorded,
                 "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": vocab_size, "special_tokens": specials},
                 "quality": figures,
                 "seconds": {"total": round(report.elapsed, 2)}}
        (staging / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        dump_config(config, staging / "config.yaml")
        output.manifest_extra.update(
            tokenizer_sha256=file_sha256(staging / "tokenizer.json"), vocab_size=vocab_size,
            special_tokens=specials, special_token_ids=ids, base_model=recorded,
            base_architecture=base_architecture(base), base_sizes=base_sizes(base))

    report_sample_rows(report, corpus, reader, sample, trains=False)
    _adoption_rows(report, source.label, tokenizer, vocab_size, ids, figures)
    report.row("wrote", f"{output.final}/ (the base model's tokenizer, stats.json, config.yaml)")
    report.print()
    return output.published


def _refuse_lossy(where: str, figures: dict, allowed: bool) -> None:
    """A vocabulary that loses more than LOSSY_SHARE of the corpus's characters trains a model on [UNK] in their
    place, which evaluate would then rank first (PITFALLS.md NU11): refused unless the user insists."""
    if figures["lost_share"] <= LOSSY_SHARE or allowed:
        return
    on = f"{figures['documents']:,} {'held-out ' if figures['held_out'] else ''}document(s)"
    raise UserError(f"{where}: its vocabulary cannot represent {figures['lost_share']:.2%} of the corpus's characters "
                    f"(on {on}; more than {LOSSY_SHARE:.1%}: they would become {figures['unknown_token']} and be lost "
                    f"to the model), most often {figures['lost_examples']}",
                    "train this corpus's own tokenizer (leave out --model-init-from), start from a model whose "
                    "vocabulary covers these characters, or pass --tokenizer-allow-lossy to adopt it anyway "
                    "(PITFALLS.md NU11)")


def _adoption_rows(report: StageReport, label: str, tokenizer, vocab_size: int, ids: dict, figures: dict) -> None:
    names = {key: tokenizer.convert_ids_to_tokens(value) for key, value in ids.items()}
    report.row("tokenizer", f"adopted from {label}: {type(tokenizer).__name__}, vocab {vocab_size:,}; documents end "
                            f"with {names['eos']}={ids['eos']}, pad {names['pad']}={ids['pad']}")
    on = f"{figures['documents']:,} {'held-out ' if figures['held_out'] else ''}document(s)"
    if figures["unknown_token"] is None:  # byte-level BPE: every character has bytes to fall back on
        unknown = "no unknown token (byte-level)"
    else:
        unknown = (f"{figures['unk_tokens']:,} {figures['unknown_token']} ({figures['unk_rate']:.3%} of tokens, "
                   f"{figures['lost_share']:.3%} of characters lost)")
    report.row("quality", f"{figures['chars_per_token']:.2f} chars/token, {unknown} on {on}")
    if figures["unk_tokens"]:
        log.warning("%s: %s cannot represent %s character occurrence(s) of %s (%.3f%% of tokens), e.g. %s: the "
                    "model reads and writes them as %s; stage 2 counts them in the whole corpus (PITFALLS.md BM3)",
                    STAGE, label, f"{figures['unk_tokens']:,}", on, 100 * figures["unk_rate"],
                    " ".join(figures["unknown_characters"]), tokenizer.unk_token)
    if figures["lost_share"] > LOSSY_SHARE:  # only with --tokenizer-allow-lossy (_refuse_lossy)
        log.warning("%s: adopted anyway (--tokenizer-allow-lossy): %.2f%% of the characters are lost, more than "
                    "%.1f%%; `gpt2zh evaluate` lists such a model apart, unranked (PITFALLS.md NU11)", STAGE,
                    100 * figures["lost_share"], 100 * LOSSY_SHARE)
    exact = figures["round_trip_exact"]
    report.row("round trip", f"decode(encode(x)) == x for {exact:,} of {figures['documents']:,} documents")
    if figures["round_trip_example"]:
        text, back = figures["round_trip_example"]
        log.warning("%s: decoding does not give %d document(s) back exactly, e.g. %r -> %r (the tokenizer drops "
                    "what its vocabulary lacks, such as whitespace or unseen characters)", STAGE,
                    figures["documents"] - exact, text, back)
