"""logs/samples.md: text generated at each evaluation and at the end, from prompts chosen once per run:
--training-sample-prompts, or by default the openings of the run's own held-out documents (a fixed list
of news openings would test a model trained on reviews or novels on text it never saw).

Sampling uses its own seeded generator state (torch.random.fork_rng), so it never moves the
training RNG: a resumed run stays bit-identical to an uninterrupted one.
"""

import logging
import unicodedata
from pathlib import Path

import numpy as np
import torch

from gpt2zh.models.text import decode_text, prompt_ids

log = logging.getLogger("gpt2zh")
TEMPERATURE, TOP_K = 0.8, 50  # against repetitive samples (C5)
PROMPT_CHARS, MIN_PROMPT_CHARS = 8, 2  # a held-out document's opening: long enough to steer, short enough to continue
PROMPT_TOKENS = 48  # decoded per document: at least PROMPT_CHARS characters even in byte-fallback pieces


def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[tuple[str, str]]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        ids_of = model.config  # the tokenizer's ids, put there by stage 3 (PITFALLS.md BM5)
        for prompt in prompts:
            ids = torch.tensor([prompt_ids(tokenizer, prompt, ids_of.bos_token_id)], device=device)
            output = model.generate(ids, do_sample=True, temperature=TEMPERATURE, top_k=TOP_K,
                                    max_new_tokens=max_new_tokens, pad_token_id=ids_of.pad_token_id,
                                    eos_token_id=ids_of.eos_token_id, attention_mask=torch.ones_like(ids))
            results.append((prompt, decode_text(tokenizer, output[0][ids.shape[1]:])))
    if was_training:
        model.train()
    return results


def _opening(text: str) -> str:
    """Up to PROMPT_CHARS characters of a document, from its first letter to the first punctuation or break."""
    start = 0
    while start < len(text) and _cuts(text[start]):
        start += 1  # an opening quote or bracket is no prompt
    end = start
    while end < len(text) and end - start < PROMPT_CHARS and not _cuts(text[end]):
        end += 1
    return text[start:end]


def _cuts(char: str) -> bool:
    return char.isspace() or char == "\ufffd" or unicodedata.category(char)[0] in "PSC"


def held_out_prompts(validation, tokenizer, end_of_text: int, count: int = 4, max_blocks: int = 1000) -> list[str]:
    """Sample prompts from this run's own corpus: the openings of the first `count` distinct validation
    documents, read from stage 2's blocks (the first blocks only: no pass over the data).

    A block can start mid-document, so only documents that begin after an <|endoftext|> count; one cut by the
    block's end counts only when its opening ended before the cut. Openings of MIN_PROMPT_CHARS are preferred;
    a split of shorter documents gives their one-character openings, and one without any document start gives
    the first characters of its first block, so there are prompts whenever there is held-out text."""
    openings, short, fallback = [], [], ""
    for index in range(min(len(validation), max_blocks)):
        ids = np.asarray(validation[index]["input_ids"]).tolist()
        if not fallback:
            fallback = _opening(decode_text(tokenizer, ids[:PROMPT_TOKENS]))
        ends = [i for i, token in enumerate(ids) if token == end_of_text] + [len(ids)]
        for start, stop in zip(ends[:-1], ends[1:], strict=True):
            text = decode_text(tokenizer, ids[start + 1:stop][:PROMPT_TOKENS])
            opening = _opening(text)
            seen_whole = stop < len(ids) and stop - start - 1 <= PROMPT_TOKENS
            # Where the text we decoded stops before the document does, an opening that runs up to that stop
            # may be cut short: not a real opening.
            if not opening or (not seen_whole and text.rstrip("\ufffd").rstrip().endswith(opening)):
                continue
            chosen = openings if len(opening) >= MIN_PROMPT_CHARS else short
            if opening not in chosen:
                chosen.append(opening)
            if len(openings) == count:
                return openings
    return (openings + short)[:count] or ([fallback] if fallback else [])


def choose_prompts(explicit: list[str], max_new_tokens: int, dataset_dir: Path, tokenizer,
                   end_of_text: int) -> list[str]:
    """The run's prompts, chosen once at the start of stage 3 (the same at every evaluation) and logged."""
    if max_new_tokens <= 0:
        return []
    if explicit:
        log.info("pretrain: sample prompts (--training-sample-prompts): %s", " | ".join(explicit))
        return list(explicit)
    from gpt2zh.dataset.loading import load_blocks

    validation = load_blocks(dataset_dir)["validation"].with_format("numpy")  # all of it, not eval_max_blocks
    prompts = held_out_prompts(validation, tokenizer, end_of_text)
    if prompts:
        log.info("pretrain: sample prompts, the openings of held-out documents: %s (--training-sample-prompts "
                 "chooses others)", " | ".join(prompts))
    else:
        log.warning("pretrain: the validation split has no text to take sample prompts from, so no samples are "
                    "drawn; set --training-sample-prompts")
    return prompts


def append_samples(path: Path, heading: str, samples: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"## {heading}", ""]
    lines += [f"- **{prompt}**{continuation.replace(chr(10), ' ')}" for prompt, continuation in samples]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n\n")
