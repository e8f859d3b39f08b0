"""`gpt2zh evaluate --model M [--model M2 ...]`: models compared on the same cleaned documents, by bits per
character.

Each model is evaluated on its own: the documents are tokenized by its tokenizer (no automatic special tokens),
each followed by its document separator (eos; [SEP] for a UER model), after one start-of-document marker
(bos; [CLS]) so that the first document's first token is predicted as every later one's is, after a marker —
the stream stage 2 packs. The stream is scored through a sliding window over the model's context
(pipeline/inference/scoring.py); the figures are in pipeline/inference/figures.py. A model trained on a corpus
converted to one Chinese script reads the documents converted to it (pipeline/inference/script.py), and the
characters its tokenizer cannot represent are counted (pipeline/models/coverage.py): a model that loses more than
a small share of them is listed apart, never ranked above one that loses none.

Against stage 3's figure (training_summary.json final_bits_per_char): stage 3 scores fixed blocks (the first
token of each block unscored, no context carried across a block start), only the first
--training-eval-max-blocks of them, never the final partial block, and turns its loss per token into bits per
character with the token/character ratio of the whole split. Evaluate scores every token of every held-out
document once (the held-out stream it builds is token for token stage 2's validation blocks). On the tests'
12-step run (`trained` in tests/conftest.py: 25 held-out documents, 1,524 characters, 1,277 tokens; stage 3
read 8 of the 19 blocks of 64) stage 3 reported 9.9682 bits/char; evaluate gives 9.9721 with --stride 64 (the
block size: +0.0039), 9.9739 with the default stride 32 (+0.0057) and 9.9842 with --stride 1 (+0.016). That
model has barely learned (1% below its initial loss), so more context does not help it yet; the differences are
of the order of the sampling error of stage 3's 504 scored tokens (0.007 bits/char).
"""

import json
import logging

import numpy as np

from gpt2zh.config.options import overrides_from
from gpt2zh.console import progress
from gpt2zh.errors import UserError
from gpt2zh.inference.documents import CHOOSE, EvaluationText, file_text, held_out_text, run_of, run_specials
from gpt2zh.inference.figures import COMPARISON_NOTE, LOST_NOTE, ModelFigures, json_rows, table_lines
from gpt2zh.inference.loading import InferenceModel, inference_device, open_model, precision_name
from gpt2zh.inference.scoring import default_stride, stream_nats
from gpt2zh.inference.script import NAMES, in_script
from gpt2zh.models.coverage import lost_characters, unknown_id
from gpt2zh.report import StageReport
from gpt2zh.request import command_request

log = logging.getLogger("gpt2zh")
ENCODE_BATCH = 1000  # documents per call into the Rust tokenizer: its speed, without holding every list at once


def document_stream(tokenizer, texts: list[str], ids: dict[str, int]) -> np.ndarray:
    """[bos] + each document's ids and eos after it, as int64."""
    parts = [np.array([ids["bos"]], np.int64)]
    for start in range(0, len(texts), ENCODE_BATCH):
        # verbose=False: a document longer than the model's context is expected here (the window reads it).
        encoded = tokenizer(texts[start:start + ENCODE_BATCH], add_special_tokens=False, verbose=False)["input_ids"]
        for document in encoded:
            parts += [np.asarray(document, np.int64), np.array([ids["eos"]], np.int64)]
    return np.concatenate(parts)


def model_texts(model: InferenceModel, text: EvaluationText, cleaned_script: str) -> tuple[list[str], int]:
    """The documents in the Chinese script the model was trained on (PITFALLS.md NU12), and how many changed;
    documents cleaned to that script already (the run's own data.chinese_script) are left as they are."""
    if model.script in ("keep", cleaned_script):
        return text.texts, 0
    texts, changed = in_script(model.script, text.texts)
    log.info("evaluate: %s was trained on %s (data.chinese_script %s): the documents converted to it for this "
             "model, %d of %d changed", model.label, NAMES[model.script], model.script, changed, len(texts))
    return texts, changed


def evaluate_model(model: InferenceModel, text: EvaluationText, stride: int | None, device,
                   cleaned_script: str = "keep") -> ModelFigures:
    """cleaned_script: the data.chinese_script the documents were cleaned with."""
    import torch

    texts, converted = model_texts(model, text, cleaned_script)
    stream = document_stream(model.tokenizer, texts, model.ids)
    unk_id = unknown_id(model.tokenizer, model.ids)
    # offsets only where the stream holds an unknown token: most tokenizers never produce one
    loss = lost_characters(model.tokenizer, texts, unk_id if unk_id is not None and (stream == unk_id).any() else None)
    stride = stride or default_stride(model.context)
    network = model.weights(device)
    with progress(len(stream) - 1, "tok", f"scoring {model.label}", scale=True) as bar:
        nats, tokens = stream_nats(network, torch.from_numpy(stream), model.context, stride, device, bar.update)
    return ModelFigures(model=model.label, reference=model.source.reference, documents=len(texts),
                        characters=loss.characters, tokens=tokens, nats=nats, context=model.context, stride=stride,
                        lost=loss.lost, unknown_token=model.tokenizer.unk_token if unk_id is not None else None,
                        converted=converted)


def _check_numbers(args) -> None:
    if args.stride is not None and args.stride < 1:
        raise UserError(f"--stride {args.stride}: a window must move by at least one token", "pass --stride >= 1")
    if args.max_documents is not None and args.max_documents < 1:
        raise UserError(f"--max-documents {args.max_documents} leaves nothing to evaluate", "pass a number >= 1")


def _check_stride(stride: int | None, models: list[InferenceModel]) -> None:
    for model in models:
        if stride is not None and stride > model.context:
            raise UserError(f"--stride {stride} is longer than the context of {model.where} ({model.context} "
                            "tokens): tokens between two windows would never be scored",
                            f"pass --stride {model.context} or less (default: half the context)")


def run_evaluate(args) -> int:
    _check_numbers(args)
    models = {}
    for reference in args.models:  # all found before the long read; one model named twice is scored once
        model = open_model(reference)
        models.setdefault(model.label, model)  # a run and its model/ are one folder
    if len(models) < len(args.models):
        log.info("evaluate: a model named more than once (%d --model, %d models) is scored once",
                 len(args.models), len(models))
    models = list(models.values())
    _check_stride(args.stride, models)
    files_given = "data.files" in overrides_from(args)
    if args.run_dir is None and not files_given:
        found = run_of(args.models)
        if found is None:
            raise UserError("evaluate: no documents to evaluate on (no --run-dir, no --data-files, and no --model "
                            "is a run's model)", CHOOSE)
        args.run_dir = str(found[0])
        log.info("evaluate: the held-out documents of %s, the run of --model %s (--data-files evaluates on others)",
                 *found)
    request = command_request(args)
    report = StageReport("evaluate")
    # A special token's text inside a document would reach a model as that token: removed for every model, as
    # stage 2 removes the run's own, so that all of them score the same text.
    run = run_specials(request.run_dir) if args.run_dir else ()
    reserved = tuple(dict.fromkeys([*run, *(text for model in models for text in model.special_strings)]))
    data = request.config.data
    text = file_text(data, reserved, args.max_documents) if files_given else \
        held_out_text(request.run_dir, data, reserved, args.max_documents)
    device = inference_device()
    figures = [evaluate_model(model, text, args.stride, device, data.chinese_script) for model in models]
    if args.json:
        for f in figures:  # the table says it below the ranked rows; the JSON, on stdout, in a field
            if f.listed_apart:
                log.warning("evaluate: %s is listed apart, unranked: %s (PITFALLS.md NU10)", f.model, f.listed_apart)
        print(json.dumps(json_rows(figures), ensure_ascii=False, indent=2), flush=True)
        return 0
    report.row("documents", f"{text.described} ({text.characters:,} characters)")
    report.row("device", f"{device.type} ({precision_name(device)})")
    print(report.render(), *table_lines(figures), f"  {COMPARISON_NOTE}", f"  {LOST_NOTE}", sep="\n", flush=True)
    return 0
