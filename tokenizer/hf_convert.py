"""SentencePiece model -> Hugging Face fast tokenizer, and the proof that both agree.

Traps measured with transformers 5:
- `LlamaTokenizerFast(vocab_file=...)` silently builds a 3-token tokenizer; `from_pretrained` on a
  folder holding `tokenizer.model` converts the real vocabulary (protobuf required).
- The Llama tokenizer class rebuilds its pipeline from code and ignores an edited tokenizer.json,
  and adds a bos token by default. We convert through it once, then save the converted pipeline
  under the generic class, so `tokenizer.json` alone defines the behaviour for every loader.

The saved tokenizer applies the corpus' normalisation rule to its input (data.normalization,
pipeline/corpus/normalization.py), as cleaning did to the training text: a prompt typed with
full-width digits (１９９８) gets the tokens the model was trained on, and with the default rule ，！
stay full-width in both. The rule is idempotent, so on cleaned text the ids are exactly SentencePiece's.
"""

import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.corpus.normalization import normalizer_for, tokenizers_normalizer
from gpt2zh.errors import UserError
from gpt2zh.tokenizer.specials import END_OF_TEXT, PAD, UNK

SPM_FILE = "tokenizer.model"
GENERIC_CLASS = "PreTrainedTokenizerFast"  # known to AutoTokenizer in transformers 4.x and 5.x
# Strings that stress the conversion beyond corpus lines: runs of spaces, tabs, Latin text, digits,
# rare CJK (byte fallback), emoji, line breaks inside a document (newline pieces, PITFALLS.md NU1),
# full-width punctuation and the ideographic space. Like corpus text they are normalised by the run's
# rule before the comparison.
PROBES = ("  两个空格  开头和结尾  ", "中文 English 混排 123 4567", "制表\t符", "罕见字:𠀀𪚥龘 emoji 😀👍",
          "第一段\n第二段", "标题\n\n　　缩进的段落。\n\t第三段！\n", "全角已归一: ABC 123",
          "你好，世界！（测试）：；？……“引号”《书名》【注】",
          "新华社北京１月１日电　（记者）１９９８年ＡＢＣ")


@dataclass
class Verification:
    lines: int
    vocab_size: int


def convert(spm_model: Path, out_dir: Path, normalization: str) -> None:
    """Write tokenizer.json + tokenizer_config.json (+ the .model) for `spm_model` into out_dir."""
    if importlib.util.find_spec("google.protobuf") is None:
        raise UserError("converting the SentencePiece model needs protobuf", "pip install protobuf")
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    specials = dict(unk_token=UNK, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, pad_token=PAD)
    with tempfile.TemporaryDirectory(prefix="gpt2zh-spm-") as staging:
        shutil.copyfile(spm_model, Path(staging) / SPM_FILE)
        converted = LlamaTokenizer.from_pretrained(
            staging, legacy=False, add_prefix_space=False, add_bos_token=False, add_eos_token=False, **specials)
    backend = converted.backend_tokenizer
    backend.normalizer = tokenizers_normalizer(normalization)
    generic = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **specials)
    generic.save_pretrained(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config["tokenizer_class"] = GENERIC_CLASS
    config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if spm_model.resolve() != (out_dir / SPM_FILE).resolve():
        shutil.copyfile(spm_model, out_dir / SPM_FILE)


def _check_normalizer(loaded, normalization: str, texts: list[str], fix: str) -> None:
    """Every distinct character of the sample, alone, is normalised as cleaning does (catches a
    tokenizers release whose Unicode tables disagree with Python's for characters this corpus uses)."""
    ours, theirs = normalizer_for(normalization), loaded.backend_tokenizer.normalizer
    for char in sorted(set().union(*map(set, texts))):
        if theirs is not None and theirs.normalize_str(char) != ours(char):
            raise UserError(f"the tokenizer normalises {char!r} (U+{ord(char):04X}) to {theirs.normalize_str(char)!r}, "
                            f"cleaning to {ours(char)!r}", fix)


def verify(hf_dir: Path, spm_model: Path, lines: list[str], normalization: str) -> Verification:
    """Load hf_dir exactly as users will and compare it with SentencePiece; fail loudly on any difference."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    loaded = AutoTokenizer.from_pretrained(str(hf_dir))
    fix = "report this with `gpt2zh doctor` output; check the transformers, tokenizers and protobuf versions"
    if len(loaded) != processor.get_piece_size():
        raise UserError(f"converted tokenizer has {len(loaded)} tokens, "
                        f"SentencePiece has {processor.get_piece_size()}", fix)
    if loaded.eos_token_id is None or loaded.pad_token_id is None or loaded.eos_token_id == loaded.pad_token_id:
        raise UserError(f"converted tokenizer lost its special tokens "
                        f"(eos {loaded.eos_token_id}, pad {loaded.pad_token_id})", fix)
    normalize = normalizer_for(normalization)
    samples = [*(normalize(probe) for probe in PROBES), *lines]
    _check_normalizer(loaded, normalization, samples, fix)
    expected = processor.encode(samples)
    actual = loaded(samples, add_special_tokens=True)["input_ids"]
    for text, want, got in zip(samples, expected, actual, strict=True):
        if want != got:
            raise UserError(f"ids differ between SentencePiece and the converted tokenizer on {text[:60]!r}: "
                            f"{want[:12]} vs {got[:12]}", fix)
        decoded = loaded.decode(got)
        if decoded != text:
            raise UserError(f"decode(encode(x)) != x for {text[:60]!r} (got {decoded[:60]!r})", fix)
    return Verification(lines=len(samples), vocab_size=len(loaded))
