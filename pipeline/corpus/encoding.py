"""Deciding how to decode one file: UTF-8 as is, GB18030/GBK/Big5 detected, binary refused.

Chinese corpora often arrive as GBK (mainland Windows), Big5 (Taiwan, Hong Kong) or UTF-16 with a
BOM (Windows Notepad's "Unicode"). Detection is charset-normalizer's, restricted to those families:
unrestricted, a 16-byte GBK line comes back as Korean cp949.
"""

import codecs
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer

from gpt2zh.corpus.compression import open_bytes
from gpt2zh.errors import UserError

SAMPLE_BYTES = 64 * 1024
CANDIDATES = ["utf_8", "gb18030", "big5", "cp950", "big5hkscs"]
# Decode with the superset of what was detected: GB18030 ⊃ GBK ⊃ GB2312; Big5-HKSCS ⊃ Big5.
DECODER_FOR = {"gb2312": "gb18030", "gbk": "gb18030", "cp936": "gb18030", "gb18030": "gb18030",
               "big5": "big5hkscs", "big5hkscs": "big5hkscs", "cp950": "cp950"}
BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]
# Above this share of NUL bytes a file is binary (or BOM-less UTF-16); a few stray NULs in text are
# removed by cleaning and counted instead.
MAX_NUL_SHARE = 0.01


@dataclass(frozen=True)
class FileEncoding:
    codec: str
    label: str
    detected: bool  # not UTF-8: decoded after detection, which the reader announces with a warning

    @property
    def ascii_compatible(self) -> bool:
        """Newline is the byte 0x0A and never part of a multi-byte character (not UTF-16/32)."""
        return not self.codec.startswith(("utf-16", "utf-32"))


def _trim_to_whole_lines(sample: bytes, whole_file: bool) -> bytes:
    if whole_file:
        return sample
    cut = sample.rfind(b"\n")
    return sample[: cut + 1] if cut > 0 else sample


def _mostly_utf8(sample: bytes) -> bool:
    """Valid UTF-8 but for rare bad bytes: a UTF-8 file with corruption, not another encoding."""
    text = sample.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    multibyte = sum(1 for ch in text if ord(ch) > 0x7F) - bad
    if bad == 0:
        return True
    if len(sample) < SAMPLE_BYTES and text.endswith("\ufffd") and bad == 1:
        return True  # a character cut by the sample boundary
    return multibyte >= 20 * bad


def sniff_encoding(path: Path, forced: str = "auto") -> FileEncoding | None:
    """The encoding of `path` (decompressed); None for an empty file. Raises UserError for binary or unknown data."""
    with open_bytes(path) as handle:
        sample = handle.read(SAMPLE_BYTES)
        whole_file = len(handle.read(1)) == 0
    if not sample.strip():
        return None
    if forced != "auto":
        try:
            name = codecs.lookup(forced).name
        except LookupError:
            raise UserError(f"--data-encoding: unknown encoding {forced!r}",
                            "use auto, utf-8, gb18030, big5, utf-16 …") from None
        return FileEncoding(codec=name, label=name.upper(), detected=False)
    for bom, codec in BOMS:
        if sample.startswith(bom):
            label = codec.upper().replace("-SIG", " (BOM)")
            return FileEncoding(codec=codec, label=label, detected=codec != "utf-8-sig")
    nul_share = sample.count(0) / len(sample)
    if nul_share > MAX_NUL_SHARE:
        raise UserError(f"{path}: looks binary ({nul_share:.0%} NUL bytes in the first {len(sample):,} bytes)",
                        "remove it from --data-files; if it is UTF-16 text without a BOM, convert it to UTF-8")
    lines = _trim_to_whole_lines(sample, whole_file)
    if _mostly_utf8(lines):
        return FileEncoding(codec="utf-8", label="UTF-8", detected=False)
    best = charset_normalizer.from_bytes(lines, cp_isolation=CANDIDATES).best()
    if best is not None and best.encoding in DECODER_FOR:
        codec = DECODER_FOR[best.encoding]
        return FileEncoding(codec=codec, label=codec.upper(), detected=True)
    if charset_normalizer.is_binary(sample):
        raise UserError(f"{path}: looks binary, not text", "remove it from --data-files")
    guess = charset_normalizer.from_bytes(lines).best()
    named = f" (looks like {guess.encoding})" if guess is not None else ""
    raise UserError(f"{path}: not UTF-8, GB18030/GBK or Big5{named}",
                    "convert it to UTF-8 (iconv -f ENC -t UTF-8) or pass --data-encoding ENC")
