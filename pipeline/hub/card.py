"""The model card (README.md), generated from what the run directory records.

Metadata comes from huggingface_hub's ModelCardData, so the Hub's validation accepts it. The text
holds no timestamps: pushing the same run twice produces the same card, and the Hub sees no change.
"""

import json
import re
from pathlib import Path

from pipeline.report import human_duration

TAGS = ["gpt2", "chinese", "text-generation", "pretraining", "gpt2zh"]


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def final_samples(samples_md: Path, limit: int = 4) -> list[tuple[str, str]]:
    """The last section of samples.md as (prompt, continuation) pairs."""
    if not samples_md.is_file():
        return []
    sections = samples_md.read_text(encoding="utf-8").split("\n## ")
    pairs = re.findall(r"^- \*\*(.+?)\*\*(.*)$", sections[-1], re.M)
    return pairs[:limit]


def _dataset_figures(run_dir: Path) -> dict:
    from pipeline.dataset.loading import dataset_parts

    figures = {"documents": 0, "characters": 0, "tokens": {"train": 0, "validation": 0},
               "blocks": {"train": 0, "validation": 0}, "corpus": ""}
    for folder, _ in dataset_parts(run_dir / "dataset"):
        stats = _json(folder / "stats.json")
        figures["corpus"] = stats.get("corpus", "")
        for split in ("train", "validation"):
            figures["documents"] += stats["reading"][split]["documents"]
            figures["characters"] += stats["reading"][split]["characters"]
            figures["tokens"][split] += stats["splits"][split]["tokens"]
            figures["blocks"][split] += stats["splits"][split]["blocks"]
    return figures


def render_model_card(run_dir: Path, summary: dict, repo_id: str, license_id: str) -> str:
    """summary: model/training_summary.json, already read by the caller."""
    from huggingface_hub import ModelCardData

    from pipeline.corpus.normalization import DESCRIPTIONS

    tokenizer = _json(run_dir / "tokenizer" / "stats.json")
    data = _dataset_figures(run_dir)
    model, plan = summary["model"], summary["plan"]
    metadata = ModelCardData(language="zh", license=license_id, library_name="transformers",
                             pipeline_tag="text-generation", tags=TAGS, model_name=repo_id.split("/")[-1])
    quality = tokenizer.get("quality", {})
    normalization = DESCRIPTIONS[tokenizer.get("normalization", "nfkc")]  # runs from before the setting: NFKC
    hardware = summary["hardware"]
    device = ", ".join(hardware["gpus"]) if hardware["gpus"] else f"CPU ({hardware['cpu_count']} cores)"
    final, initial, unigram = summary["final_eval_loss"], summary["initial_eval_loss"], summary["unigram_entropy"]
    lines = [
        f"---\n{metadata.to_yaml()}\n---",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A Chinese GPT-2 with {summary['parameters'] / 1e6:.1f} M parameters, pretrained from scratch with "
        "gpt2zh (SentencePiece tokenizer, packed blocks, transformers' Trainer).",
        "",
        "## Model",
        "",
        "| layers | heads | hidden size | context | vocabulary | parameters |",
        "|---|---|---|---|---|---|",
        f"| {model['n_layer']} | {model['n_head']} | {model['n_embd']} | {model['n_positions']} | "
        f"{summary['vocab_size']:,} | {summary['parameters']:,} |",
        "",
        "## Tokenizer",
        "",
        f"SentencePiece {tokenizer.get('tokenizer', {}).get('model_type', 'bpe').upper()}, "
        f"{summary['vocab_size']:,} pieces, byte fallback (no `<unk>`), digits split, "
        f"{normalization} applied to the input. `<|endoftext|>` (id 1) separates documents and is both bos "
        "and eos; `<|pad|>` is id 2. "
        f"On held-out text: {quality.get('chars_per_token', 0):.2f} characters per token, "
        f"{quality.get('byte_fallback_rate', 0):.2%} of tokens are byte fallback.",
        "",
        "## Training data",
        "",
        f"{data['corpus']}: {data['documents']:,} documents, {data['characters']:,} characters after cleaning "
        f"({normalization}, control characters removed, exact duplicates removed where configured). "
        f"{data['tokens']['train']:,} training and {data['tokens']['validation']:,} validation tokens, packed into "
        f"{data['blocks']['train']:,} + {data['blocks']['validation']:,} blocks of {summary['block_size']} tokens; "
        "the validation documents are held out by a hash of their text.",
        "",
        "## Training",
        "",
        f"{summary['steps']:,} optimizer steps, {summary['tokens_seen']:,} tokens, global batch "
        f"{plan['per_device_batch_size'] * plan['gradient_accumulation_steps'] * plan['world_size']} sequences; "
        f"{plan['precision']}, {plan['attention']} attention, {plan['optimizer']}, linear warmup then cosine decay. "
        f"Hardware: {device}, {hardware['world_size']} process(es), preset `{summary.get('preset') or 'none'}`. "
        f"Training time: {human_duration(summary['train_seconds_this_run'])}"
        + (f" (the session that finished the run, resumed at step {summary['resumed_from_step']:,})."
           if summary.get("resumed_from_step") else "."),
        "",
        "## Evaluation (validation split)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    if final is not None:
        lines += [f"| loss (nats/token) | {final:.3f} (initial {initial:.3f}) |",
                  f"| perplexity | {summary['final_perplexity']:.1f} |",
                  f"| bits per character | {summary['final_bits_per_char']:.3f} |",
                  f"| unigram baseline (no context) | {unigram:.3f}, so the model is {unigram - final:.2f} nats/token "
                  "better from context |"]
    lines += ["", "![training and validation loss](loss.png)", ""]
    samples = final_samples(run_dir / "model" / "samples.md")  # of these weights, not of a later run
    if samples:
        lines += ["## Samples", "", "Temperature 0.8, top-k 50, at the end of training:", ""]
        lines += [f"- **{prompt}**{continuation}" for prompt, continuation in samples]
        lines.append("")
    lines += [
        "## How to use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'generate = pipeline("text-generation", model="{repo_id}")',
        'print(generate("今天", max_new_tokens=50)[0]["generated_text"])',
        "```",
        "",
        "`training_history.csv` has the loss, learning rate, gradient norm, throughput and validation metrics of "
        "every logged step; `gpt2zh_config.yaml` is the complete configuration of the run.",
        "",
    ]
    return "\n".join(lines)
