"""The text normalisation rule, written once: cleaning applies it to the corpus, the saved tokenizer to prompts.

data.normalization:
- zh (default): NFKC, except for the punctuation Chinese is written with. Full-width Latin letters and
  digits become ASCII (１９９８ -> 1998, ＡＢＣ -> ABC) and other compatibility forms fold as NFKC
  folds them (⼀ -> 一, ﬁ -> fi, ｡ -> 。), but these stay as they are:
  - full-width punctuation and symbols (，！？：；（）［］｛｝＂＇～￥ …), the vertical and small
    presentation forms (︐ ﹐), and any other wide punctuation NFKC would narrow;
  - punctuation NFKC would spell out in ASCII: … (not ...), ‥, ‼, ⁇;
  - U+3000, the ideographic space: it is the space of full-width typesetting (`电　（记者`);
    folding it would mix an ASCII space into full-width text, which no Chinese typesetter does.
  The noncharacters U+FDD0-U+FDEF are removed: they are never text, and the tokenizer's normalizer
  uses U+FDD0 internally (see below).
  A kept character cuts the text in pieces that are normalised separately (NFKC(a) + ， + NFKC(b)):
  a combining mark after a kept character never composes across it.
- nfkc: plain NFKC (turns ，！？ into ,!?: only for corpora meant to be read that way).
- none: no normalisation.

The Hugging Face tokenizer gets the same rule as a `tokenizers` normalizer: each kept character is
swapped for a placeholder (a noncharacter plus an index) that NFKC leaves alone, NFKC runs, the
placeholders are swapped back. The `tokenizers` library ships older Unicode tables than Python's
unicodedata; characters whose folding it does not know yet are folded explicitly first. A test checks
every code point of the BMP and mixed strings against this module.
"""

import re
import unicodedata
from functools import cache

MODES = ("zh", "nfkc", "none")
DESCRIPTIONS = {"zh": "NFKC with Chinese punctuation kept full-width", "nfkc": "NFKC", "none": "no normalisation"}
NONCHARACTERS = "\ufdd0-\ufdef"  # a BMP range: 9x faster to scan than a class that adds U+xFFFE/U+xFFFF
_NONCHARACTER = re.compile(f"[{NONCHARACTERS}]")
_PLACEHOLDER_MARK = "\ufdd0"
_PLACEHOLDER_INDEX_BASE = 0x4E00  # CJK ideographs: NFKC-stable starters that never compose


# What the zh rule keeps although NFKC would change it (see kept_by_zh_rule, which a test checks this
# against for every code point): … ‥ ․ ‼ ⁇ ⁈ ⁉, super/subscript parentheses, U+3000, the vertical,
# compatibility and small forms, and the full-width punctuation and symbols of U+FF01-U+FFE6.
ZH_KEPT_RANGES = ((0x2024, 0x2026), (0x203C, 0x203C), (0x2047, 0x2049), (0x207D, 0x207E), (0x208D, 0x208E),
                  (0x3000, 0x3000), (0xFE10, 0xFE19), (0xFE30, 0xFE44), (0xFE47, 0xFE52), (0xFE54, 0xFE61),
                  (0xFE63, 0xFE63), (0xFE68, 0xFE68), (0xFE6A, 0xFE6B), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20),
                  (0xFF3B, 0xFF40), (0xFF5B, 0xFF60), (0xFFE0, 0xFFE6))


def kept_by_zh_rule(char: str) -> bool:
    """The zh rule for one character: punctuation Chinese is written with, that NFKC would change."""
    folded = unicodedata.normalize("NFKC", char)
    if folded == char or unicodedata.normalize("NFC", char) != char:
        return False  # unchanged anyway, or canonically equivalent to its folding (U+037E is ';')
    category, width = unicodedata.category(char), unicodedata.east_asian_width(char)
    if char == "\u3000":
        return True
    if category.startswith("P"):
        return width in ("F", "W") or folded.isascii()  # wide punctuation, or … ‼ spelt out in ASCII
    return category.startswith("S") and width == "F"  # ＄＋＜＝＞＾｀｜～￠￡￢￣￤￥￦


def zh_kept_characters() -> str:
    return "".join(chr(cp) for low, high in ZH_KEPT_RANGES for cp in range(low, high + 1))


@cache
def _kept_pattern() -> re.Pattern:
    return re.compile("([" + re.escape(zh_kept_characters()) + "])")


def normalize_zh(text: str) -> str:
    if _NONCHARACTER.search(text):
        text = _NONCHARACTER.sub("", text)
    # Each piece between kept characters is a substring of a normalised string, hence normalised.
    if unicodedata.is_normalized("NFKC", _kept_pattern().sub("", text)):
        return text
    pieces = _kept_pattern().split(text)  # odd indices are the kept characters themselves
    return "".join(piece if index % 2 else unicodedata.normalize("NFKC", piece) for index, piece in enumerate(pieces))


@cache
def _may_change_under_zh() -> re.Pattern:
    """Characters whose presence means normalize_zh may change a text: in the BMP, those NFKC changes
    (but the kept ones), combining marks, the second halves of canonical compositions (Hangul vowel
    and final jamo included) and the noncharacters; beyond the BMP, everything (rare in Chinese text,
    left to the exact check). A text with none of them is NFKC-normal by UAX #15's quick check."""
    kept, flagged = set(zh_kept_characters()), set(map(chr, range(0xFDD0, 0xFDF0)))
    flagged |= set(map(chr, range(0x1161, 0x1176))) | set(map(chr, range(0x11A8, 0x11C3)))
    for char in map(chr, range(0x10000)):
        decomposition = unicodedata.decomposition(char)
        if decomposition and not decomposition.startswith("<") and len(parts := decomposition.split()) == 2:
            flagged.add(chr(int(parts[1], 16)))
        if unicodedata.combining(char) or (decomposition and char not in kept
                                           and not unicodedata.is_normalized("NFKC", char)):
            flagged.add(char)
    return re.compile("[" + _as_ranges(sorted(map(ord, flagged))) + "\U00010000-\U0010ffff]")


def _as_ranges(code_points: list[int]) -> str:
    """A character-class body for sorted code points, runs written as ranges (compiles 5x faster)."""
    runs, start = [], 0
    for index in range(1, len(code_points) + 1):
        if index == len(code_points) or code_points[index] != code_points[index - 1] + 1:
            low, high = code_points[start], code_points[index - 1]
            runs.append(re.escape(chr(low)) + (f"-{re.escape(chr(high))}" if high > low else ""))
            start = index
    return "".join(runs)


def is_stable_zh(text: str) -> bool:
    """Whether normalize_zh(text) == text: a fast scan decides for most texts (a whole batch of documents
    joined by newlines, typically), the exact check the rest."""
    if not _may_change_under_zh().search(text):
        return True
    return not _NONCHARACTER.search(text) and unicodedata.is_normalized("NFKC", _kept_pattern().sub("", text))


def normalize_nfkc(text: str) -> str:
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def normalizer_for(mode: str):
    """The function str -> str of a data.normalization mode."""
    if mode not in MODES:
        raise ValueError(f"unknown normalization {mode!r}")
    return {"zh": normalize_zh, "nfkc": normalize_nfkc, "none": lambda text: text}[mode]


def stability_check_for(mode: str):
    """A function str -> bool: True when the mode's normaliser leaves the text as it is."""
    return {"zh": is_stable_zh, "nfkc": lambda text: unicodedata.is_normalized("NFKC", text),
            "none": lambda text: True}[mode]


def _unknown_to_tokenizers() -> list[tuple[str, str]]:
    """(character, NFKC folding) where the tokenizers library's Unicode tables lag behind Python's."""
    from tokenizers import normalizers

    theirs = normalizers.NFKC()
    changed = (c for c in map(chr, range(0x110000))
               if not 0xD800 <= ord(c) <= 0xDFFF and not unicodedata.is_normalized("NFKC", c))
    return [(c, unicodedata.normalize("NFKC", c)) for c in changed
            if theirs.normalize_str(c) != unicodedata.normalize("NFKC", c)]


def tokenizers_normalizer(mode: str):
    """A `tokenizers` normalizer that does to a prompt exactly what normalizer_for(mode) does to the corpus."""
    from tokenizers import Regex, normalizers

    if mode == "none":
        return normalizers.Sequence([])
    catch_up = [normalizers.Replace(char, folded) for char, folded in _unknown_to_tokenizers()
                if mode == "nfkc" or char not in zh_kept_characters()]
    if mode == "nfkc":
        return normalizers.Sequence([*catch_up, normalizers.NFKC()])
    kept = zh_kept_characters()
    placeholders = [_PLACEHOLDER_MARK + chr(_PLACEHOLDER_INDEX_BASE + i) for i in range(len(kept))]
    return normalizers.Sequence([
        normalizers.Replace(Regex(f"[{NONCHARACTERS}]"), ""),
        *catch_up,
        *(normalizers.Replace(char, placeholder) for char, placeholder in zip(kept, placeholders, strict=True)),
        normalizers.NFKC(),
        *(normalizers.Replace(placeholder, char) for char, placeholder in zip(kept, placeholders, strict=True)),
    ])
