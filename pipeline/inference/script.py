"""The Chinese script a model was trained on, and text converted to it before the model reads it.

A run with --data-chinese-script simplified converted its whole corpus with OpenCC (pipeline/corpus/cleaning.py):
its tokenizer and model saw simplified characters only. A prompt typed in traditional characters would reach it
through pieces it rarely or never saw (16 tokens, much of it byte fallback, against 11 for the same prompt in
simplified; PITFALLS.md NU12). The saved tokenizer already applies the run's normalisation to what it encodes,
but OpenCC converts phrases, which a tokenizer's normalizer cannot: so the run's settings, saved beside the
model (model/run_config.yaml; gpt2zh_config.yaml on the Hub), say which script, and the same conversion is
applied here. A model from elsewhere has no such file: its text is left as written.
"""

from pathlib import Path

from gpt2zh.corpus.cleaning import OPENCC_CONFIG, script_converter
from gpt2zh.models.source import SETTINGS_FILES

NAMES = {"simplified": "simplified Chinese", "traditional": "traditional Chinese"}


def trained_script(folder: Path) -> str:
    """data.chinese_script of the run that trained the model in folder: simplified, traditional or keep."""
    import yaml

    for name in SETTINGS_FILES:
        if (path := folder / name).is_file():
            settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            script = (settings.get("data") or {}).get("chinese_script", "keep")
            return script if script in OPENCC_CONFIG else "keep"
    return "keep"


def in_script(script: str, texts: list[str]) -> tuple[list[str], int]:
    """texts converted to script as cleaning converted the model's corpus, and how many of them changed."""
    convert = script_converter(script)
    if convert is None:
        return texts, 0
    converted = [convert(text) for text in texts]
    return converted, sum(a != b for a, b in zip(texts, converted, strict=True))
