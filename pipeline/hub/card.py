"""The model card (README.md), generated from what the run directory records.

Metadata comes from huggingface_hub's ModelCardData, so the Hub's validation accepts it. The text
holds no timestamps: pushing the same run twice produces the same card, and the Hub sees no change.
"""

import json
import os
import re
from collections import Counter
from pathlib import Path

from gpt2zh.manifests import TokenizerManifest
from gpt2zh.report import context_verdict, human_bytes, human_duration
from gpt2zh.rundir import RunDir
from gpt2zh.tokenizer.specials import END_OF_TEXT, END_OF_TEXT_ID, PAD, PAD_ID, UNK

TAGS = ["gpt2", "chinese", "text-generation", "pretraining", "gpt2zh"]
HUB_SCHEMES = ("hf://", "ms://")  # corpus files read from a hub, named by their url with its commit
# ModelScope reads the framework and task of a model from configuration.json beside the weights (its pipelines and
# the site's model page). Nothing that lets its pipelines run code from the repository.
MODELSCOPE_CONFIGURATION = {"framework": "pytorch", "task": "text-generation"}


def hub_files(provider: str) -> dict[str, str]:
    """Files the hub needs beside the weights and the card, by name."""
    if provider == "modelscope":
        return {"configuration.json": json.dumps(MODELSCOPE_CONFIGURATION, indent=2) + "\n"}
    return {}


def load_snippet(provider: str, repo_id: str) -> str:
    """One line of Python that loads the pushed model with transformers."""
    if provider == "modelscope":  # transformers reads a folder: ModelScope's SDK downloads one
        return f"pipeline('text-generation', model=modelscope.snapshot_download({repo_id!r}))"
    return f"pipeline('text-generation', model={repo_id!r})"


def base_model_page(base: dict) -> str:
    if base.get("provider") == "modelscope":
        return f"https://modelscope.cn/models/{base['hub']}"
    return f"https://huggingface.co/{base['hub']}"


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
    """Per split: documents and characters (stage 2 read every byte), tokens and blocks; and the corpus files.

    A dataset removed to save space leaves stage 1's figures: its documents, without tokens."""
    from gpt2zh.dataset.loading import dataset_parts
    from gpt2zh.errors import UserError

    run, splits = RunDir(run_dir), ("train", "validation")
    figures = {"corpus": "", "sources": [], "complete": True, "separator": END_OF_TEXT,
               **{key: dict.fromkeys(splits, 0) for key in ("documents", "characters", "tokens", "blocks")}}
    try:
        parts = dataset_parts(run.dataset)
    except UserError:
        parts = [(run.tokenizer, TokenizerManifest.read(run.tokenizer))]
        figures["complete"] = False
    for folder, manifest in parts:
        stats = _json(folder / "stats.json")
        figures["corpus"] = stats.get("corpus", "")
        figures["separator"] = stats.get("separator", figures["separator"])  # [SEP] for a UER model's tokenizer
        figures["sources"] = manifest.inputs.get("sources", []) if manifest else []  # every shard read the same
        for split in splits:
            for key in ("documents", "characters"):
                figures[key][split] += stats.get("reading", {}).get(split, {}).get(key, 0)
            for key in ("tokens", "blocks"):
                figures[key][split] += stats.get("splits", {}).get(split, {}).get(key, 0)
    return figures


def _schedule_words(summary: dict) -> str:
    from gpt2zh.training.schedule import Schedule

    saved = summary.get("schedule")  # models trained before the schedule was recorded had the cosine one
    return Schedule.from_dict(saved).in_words() if saved else "linear warmup then cosine decay"


def _file_rows(sources: list[list], limit: int = 20) -> list[str]:
    """The corpus files as table rows: a Hub file by its path in the dataset and its hf:// url (with the
    commit), a local one by its path below the folder the files share (never this machine's full path)."""
    local = [Path(entry[0]) for entry in sources if not str(entry[0]).startswith(HUB_SCHEMES)]
    common = Path(os.path.commonpath(local)) if len(local) > 1 else None
    rows = []
    for entry in sources[:limit]:
        if str(entry[0]).startswith(HUB_SCHEMES):  # [url, content id, format, size]
            url, size = entry[0], entry[3]
            rows.append(f"| `{url.split('/', 5)[-1]}` | {human_bytes(size)} | `{url}` |")
        else:  # [name below the corpus folder, format, size, digest]
            path = Path(entry[0])
            rows.append(f"| `{path.relative_to(common) if common else path.name}` | {human_bytes(entry[2])} | |")
    if len(sources) > limit:
        rest = sum(entry[3] if str(entry[0]).startswith(HUB_SCHEMES) else entry[2] for entry in sources[limit:])
        rows.append(f"| … and {len(sources) - limit:,} more files | {human_bytes(rest)} | |")
    return rows


def _training_data(data: dict, description: str, normalization: str, block_size: int) -> list[str]:
    from gpt2zh.corpus.sources import DEMO_CORPUS

    lines = ["## Training data", ""]
    if description.strip():
        lines += [description.strip(), ""]
    if data["corpus"] == DEMO_CORPUS or not data["sources"]:
        lines += [f"Corpus: {data['corpus'] or 'not recorded'}.", ""]
    else:
        lines += ["| file | size | on the Hub |", "|---|---|---|", *_file_rows(data["sources"]), ""]
    lines += ["| split | documents | characters | tokens | blocks |", "|---|---|---|---|---|"]
    for split in ("train", "validation"):
        counts = [f"{data[key][split]:,}" if data["complete"] or key in ("documents", "characters") else "?"
                  for key in ("documents", "characters", "tokens", "blocks")]
        lines.append(f"| {split} | {' | '.join(counts)} |")
    lines += ["", f"Cleaning: {normalization}, control characters removed, exact duplicates removed where "
                  f"configured. Each document is followed by `{data['separator']}` and packed into blocks of "
                  f"{block_size} tokens; the validation documents are held out by a hash of their text."
                  + ("" if data["complete"] else " (The dataset folder was removed since training: the counts are "
                                                 "of what stage 1 read, and the tokens are not known.)"), ""]
    return lines


def _base_name(base: dict) -> str:
    """A Hub model by its link and commit; a local folder by its last two path parts, never this machine's path."""
    if base.get("hub"):
        return f"[{base['hub']}]({base_model_page(base)}) (commit {base['commit']})"
    folder = Path(base["model"])
    return f"`{folder.parent.name}/{folder.name}`" if folder.parent.name else f"`{folder.name}`"


def _adopted_tokenizer(base: dict, tokenizer: dict, vocab_size: int) -> str:
    quality = tokenizer.get("quality", {})
    return (f"The tokenizer of {_base_name(base)}, unchanged ({tokenizer.get('tokenizer', {}).get('class', '?')}, "
            f"{vocab_size:,} entries). On held-out text: {quality.get('chars_per_token', 0):.2f} characters per "
            f"token, " + (f"{quality.get('unk_tokens', 0):,} `{quality['unknown_token']}` tokens "
                          f"({quality.get('unk_rate', 0):.3%})." if quality.get("unknown_token") else
                          "byte-level: no character is unknown."))


def _parameters(count: int) -> str:
    """`125.4 M`; a model under a million parameters by its count (a tiny one is not `0.0 M`)."""
    return f"{count / 1e6:.1f} M" if count >= 1_000_000 else f"{count:,}"


def _devices(hardware: dict) -> str:
    """`8 x NVIDIA H100 80GB HBM3`: each GPU model once, with its count, not named eight times."""
    if not hardware["gpus"]:
        return f"CPU ({hardware['cpu_count']} cores)"
    return ", ".join(f"{count} x {name}" if count > 1 else name for name, count in Counter(hardware["gpus"]).items())


def _limitations(summary: dict, data: dict, license_id: str) -> list[str]:
    """What the model is not, said by the card itself: a user deciding whether to use it reads this first."""
    validation = data["documents"]["validation"]
    licence = (f"Licence: `{license_id}`, as stated by the author; the training corpus's own terms apply as well."
               if license_id else
               "Licence: none was stated (`--hub-license` was not given). The weights carry the terms of the corpus "
               "they learned from; ask the author before reusing them.")
    return [
        "## Limitations",
        "",
        f"- A small model ({_parameters(summary['parameters'])} parameters, {summary['tokens_seen']:,} training "
        "tokens): its continuations are often wrong, repetitive or incoherent, the more so the longer they run.",
        "- It knows only its training data (above) and repeats its topics, style, errors and biases; it has no "
        "knowledge of anything outside that corpus or after it was collected.",
        "- It is a pretrained language model, not instruction-tuned or aligned: it continues text, it does not "
        "follow instructions or answer questions, and it may produce offensive or false statements.",
        "- The evaluation covers only the held-out split of the same corpus"
        + (f" ({validation:,} documents)" if validation else "")
        + ": how well it predicts text like its training data, not its quality on other text or on any task; "
          "no benchmark was run.",
        f"- {licence}",
        "",
    ]


def render_model_card(run_dir: Path, summary: dict, repo_id: str, license_id: str,
                      dataset_description: str = "", provider: str = "huggingface") -> str:
    """summary: model/training_summary.json, already read by the caller; dataset_description: the user's words
    (hub.dataset_description), written as is."""
    from huggingface_hub import ModelCardData

    from gpt2zh.corpus.normalization import DESCRIPTIONS
    from gpt2zh.training.samples import TEMPERATURE, TOP_K  # what generated the samples shown

    tokenizer = _json(RunDir(run_dir).tokenizer / "stats.json")
    data = _dataset_figures(run_dir)
    model, plan = summary["model"], summary["plan"]
    base = summary.get("base_model") or {}
    hub_datasets = sorted({"/".join(str(entry[0]).split("/")[3:5]).split("@")[0] for entry in data["sources"]
                           if str(entry[0]).startswith("hf://")})  # the Hub links the model to its corpus
    hf_base = base.get("hub") if not base.get("provider") else None  # a ModelScope id means nothing to the Hub
    metadata = ModelCardData(language="zh", license=license_id or None, library_name="transformers",
                             pipeline_tag="text-generation", tags=TAGS, model_name=repo_id.split("/")[-1],
                             datasets=hub_datasets or None, base_model=hf_base)
    if provider == "modelscope":  # the fields ModelScope's model page reads from the same front matter
        metadata.frameworks, metadata.tasks = ["PyTorch"], ["text-generation"]
    quality = tokenizer.get("quality", {})
    wordpiece = "Bert" in tokenizer.get("tokenizer", {}).get("class", "")  # UER's character vocabulary
    normalization = DESCRIPTIONS[tokenizer.get("normalization", "nfkc")]  # runs from before the setting: NFKC
    hardware = summary["hardware"]
    device = _devices(hardware)
    final, initial, unigram = summary["final_eval_loss"], summary["initial_eval_loss"], summary["unigram_entropy"]
    lines = [
        f"---\n{metadata.to_yaml()}\n---",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A Chinese GPT-2 with {_parameters(summary['parameters'])} parameters, "
        + (f"continued from {_base_name(base)} (its tokenizer and weights) with gpt2zh (packed blocks, "
           "transformers' Trainer)." if base else
           "pretrained from scratch with gpt2zh (SentencePiece tokenizer, packed blocks, transformers' Trainer)."),
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
        _adopted_tokenizer(base, tokenizer, summary["vocab_size"]) if base else
        f"SentencePiece {tokenizer.get('tokenizer', {}).get('model_type', 'bpe').upper()}, "
        f"{summary['vocab_size']:,} pieces, byte fallback (no `{UNK}`), digits split, "
        f"{normalization} applied to the input. `{END_OF_TEXT}` (id {END_OF_TEXT_ID}) separates documents and is "
        f"both bos and eos; `{PAD}` is id {PAD_ID}. "
        f"On held-out text: {quality.get('chars_per_token', 0):.2f} characters per token, "
        f"{quality.get('byte_fallback_rate', 0):.2%} of tokens are byte fallback.",
        "",
        *_training_data(data, dataset_description, normalization, summary["block_size"]),
        "## Training",
        "",
        f"{summary['steps']:,} optimizer steps, {summary['tokens_seen']:,} tokens, global batch "
        f"{plan['per_device_batch_size'] * plan['gradient_accumulation_steps'] * plan['world_size']} sequences; "
        f"{plan['precision']}, {plan['attention']} attention, {plan['optimizer']}, {_schedule_words(summary)}. "
        f"Hardware: {device}, {hardware['world_size']} process(es), preset `{summary.get('preset') or 'none'}`. "
        f"Training time: {human_duration(summary['train_seconds_this_run'])}"
        + (f" (the session that finished the run, resumed at step {summary['resumed_from_step']:,})."
           if summary.get("resumed_from_step") else "."),
        "",
        "## Evaluation (validation split)",
        "",
    ]
    if final is None:  # no validation blocks, or stopped before its first evaluation: no empty table
        lines.append("Not evaluated: the run recorded no validation loss.")
    else:
        lines += ["| metric | value |", "|---|---|",
                  f"| loss (nats/token) | {final:.3f} (initial {initial:.3f}) |",
                  f"| perplexity | {summary['final_perplexity']:.1f} |",
                  f"| bits per character | {summary['final_bits_per_char']:.3f} |",
                  f"| against token frequencies alone | {context_verdict(final, unigram)} |"]
    lines += ["", "![training and validation loss](loss.png)", ""]
    samples = final_samples(RunDir(run_dir).model / "samples.md")  # of these weights, not of a later run
    if samples:
        lines += ["## Samples", "", f"Temperature {TEMPERATURE:g}, top-k {TOP_K}, at the end of training:", ""]
        lines += [f"- **{prompt}**{continuation}" for prompt, continuation in samples]
        lines.append("")
    lines += _limitations(summary, data, license_id)
    lines += [
        "## How to use",
        "",
        "```python",
        *(["from modelscope import snapshot_download"] if provider == "modelscope" else []),
        "from transformers import pipeline",
        "",
        f'generate = pipeline("text-generation", model=snapshot_download("{repo_id}"))' if provider == "modelscope"
        else f'generate = pipeline("text-generation", model="{repo_id}")',
        f'print(generate({json.dumps(samples[0][0] if samples else "今天", ensure_ascii=False)}, '
        + ("add_special_tokens=False, " if wordpiece else "") + 'max_new_tokens=50)[0]["generated_text"])',
        "```",
        "",
        *(["`add_special_tokens=False` keeps the WordPiece tokenizer from wrapping the prompt in `[CLS]` … `[SEP]` "
           "(`[SEP]` ends a document); its decoding puts a space between Chinese characters, which "
           "`gpt2zh generate --model <this repository>` removes.", ""] if wordpiece else []),
        "`training_history.csv` has the loss, learning rate, gradient norm, throughput and validation metrics of "
        "every logged step; `gpt2zh_config.yaml` is the complete configuration of the run.",
        "",
    ]
    return "\n".join(lines)
