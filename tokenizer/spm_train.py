"""SentencePiece training with Chinese-appropriate settings (G9), errors made readable.

Settings that keep decode(encode(x)) == x on cleaned text:
- normalization_rule_name=identity: cleaning already normalised the text (data.normalization); a
  second normalisation inside the model would make ids depend on which tool encoded the text.
- add_dummy_prefix=False, remove_extra_whitespaces=False: Chinese has no word-leading spaces, and
  spaces inside mixed text must survive.
- required_chars='▁': SentencePiece turns spaces into '▁'; when a corpus has few spaces '▁' falls
  under character_coverage, gets byte-encoded and decodes back as a literal '▁' instead of a space.
  The other whitespace cleaning keeps is required too (PITFALLS.md NU1): '\n' and '\t' always (a
  corpus of one document per line has no '\n', a prompt may), and any other whitespace character the
  sample holds (U+3000 indentation, ...). Otherwise each '\n' of a document is the byte piece <0x0A>:
  the demo text in 4-paragraph documents had 2.98 % of its tokens in bytes, 1.89 % one paragraph a line.
"""

import re
from pathlib import Path

from gpt2zh.config.schema import TokenizerConfig
from gpt2zh.errors import UserError
from gpt2zh.tokenizer.specials import END_OF_TEXT, END_OF_TEXT_ID, PAD, PAD_ID, UNK, UNK_ID

TOO_FEW_FOR_CHARS = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
# 2: trained on documents' text with its line breaks, whitespace required as pieces (NU1); a tokenizer
# whose manifest has no text_format is 1 (trained on stripped lines): it keeps working, '\n' as <0x0A>.
TEXT_FORMAT = 2
ALWAYS_REQUIRED = "\u2581\n\t"  # the space marker and the ASCII whitespace cleaning keeps (it removes \r\v\f)
OTHER_WHITESPACE = re.compile(r"[^\S \n\t]")
TOO_MANY_PIECES = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


def required_characters(sentences: list[str]) -> str:
    """The characters that get a piece of their own however rare: ALWAYS_REQUIRED and the sample's other
    whitespace (at most a few dozen code points, so a few slots of the vocabulary at worst)."""
    seen = set()
    for start in range(0, len(sentences), 10_000):  # one scan per 10,000 sentences: 3x faster than one each
        seen.update(OTHER_WHITESPACE.findall("".join(sentences[start: start + 10_000])))
    return ALWAYS_REQUIRED + "".join(sorted(seen))


def trainer_arguments(cfg: TokenizerConfig, cpu_count: int = 1, required_chars: str = ALWAYS_REQUIRED) -> dict:
    """cpu_count: from the hardware facts (tokenizer.num_threads 0 means all of them)."""
    return dict(
        model_type=cfg.model_type,
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        byte_fallback=cfg.byte_fallback,
        split_digits=cfg.split_digits,
        input_sentence_size=cfg.input_sentence_size,
        shuffle_input_sentence=cfg.shuffle_input_sentence,
        num_threads=cfg.num_threads or cpu_count,
        max_sentence_length=cfg.max_sentence_bytes,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        required_chars=required_chars,
        unk_id=UNK_ID, unk_piece=UNK,
        eos_id=END_OF_TEXT_ID, eos_piece=END_OF_TEXT,
        pad_id=PAD_ID, pad_piece=PAD,
        bos_id=-1,  # bos is the end-of-text token (GPT-2 style); HF config maps both names to id 1
        minloglevel=2,  # our stage prints the progress and summary; SentencePiece's INFO log is noise
    )


def _translate(err: RuntimeError, cfg: TokenizerConfig, sentences: int) -> UserError | None:
    text = str(err)
    if match := TOO_FEW_FOR_CHARS.search(text):
        needed = int(match.group(2))  # single characters + special tokens + 256 byte pieces
        lower = round(max(cfg.character_coverage - 0.005, 0.9), 4)
        return UserError(
            f"--tokenizer-vocab-size {cfg.vocab_size} is too small: at character_coverage {cfg.character_coverage} "
            f"the corpus needs {needed:,} pieces for single characters, special tokens and byte fallback alone",
            f"raise --tokenizer-vocab-size well above {needed:,} (merges need room too) "
            f"or lower --tokenizer-character-coverage (e.g. {lower})")
    if match := TOO_MANY_PIECES.search(text):
        return UserError(
            f"--tokenizer-vocab-size {cfg.vocab_size} is too large for this corpus: its {sentences:,} sampled "
            f"sentences support at most {int(match.group(2)):,} pieces",
            f"lower --tokenizer-vocab-size to {match.group(2)} or less, or train on more text")
    if "sentences_.empty()" in text:
        return UserError("no training sentences left after cleaning and the held-out split", "check --data-files")
    return None


def train_sentencepiece(sentences: list[str], model_path: Path, cfg: TokenizerConfig, cpu_count: int = 1) -> None:
    """Train on `sentences` and write the model to `model_path` (a .model file)."""
    import sentencepiece as spm

    prefix = str(model_path.with_suffix(""))
    spm.set_random_generator_seed(cfg.seed)
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=prefix,
                                       **trainer_arguments(cfg, cpu_count, required_characters(sentences)))
    except RuntimeError as err:
        translated = _translate(err, cfg, len(sentences))
        if translated is None:
            raise
        raise translated from None
    vocab_listing = Path(prefix + ".vocab")
    if vocab_listing.exists():
        vocab_listing.unlink()  # the .model holds the vocabulary; the listing would only go stale
    produced = Path(prefix + ".model")
    if produced != model_path:
        produced.replace(model_path)
