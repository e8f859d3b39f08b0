"""Deciding how to decode a corpus file: BOMs, UTF-8 with rare bad bytes, GB18030/Big5 detection, binary refused."""

import codecs
import random

import pytest

from gpt2zh.corpus.encoding import FileEncoding, _trim_to_whole_lines, sniff_encoding
from gpt2zh.errors import UserError

UTF8 = FileEncoding("utf-8", "UTF-8", False)


def sniffed(tmp_path, data: bytes, forced: str = "auto"):
    path = tmp_path / "sample.txt"
    path.write_bytes(data)
    return sniff_encoding(path, forced)


@pytest.mark.parametrize("data, expected", [
    ("中文\n".encode("utf-8-sig"), FileEncoding("utf-8-sig", "UTF-8 (BOM)", False)),
    (codecs.BOM_UTF16_LE + "中文\n".encode("utf-16-le"), FileEncoding("utf-16", "UTF-16", True)),
    (codecs.BOM_UTF16_BE + "中文\n".encode("utf-16-be"), FileEncoding("utf-16", "UTF-16", True)),
    (codecs.BOM_UTF32_LE + "中文\n".encode("utf-32-le"), FileEncoding("utf-32", "UTF-32", True)),  # not UTF-16's BOM
    (codecs.BOM_UTF32_BE + "中文\n".encode("utf-32-be"), FileEncoding("utf-32", "UTF-32", True)),
])
def test_a_byte_order_mark_names_the_encoding(tmp_path, data, expected):
    assert sniffed(tmp_path, data) == expected


def test_empty_and_blank_files_have_no_encoding_even_when_one_is_forced(tmp_path):
    assert sniffed(tmp_path, b"") is None
    assert sniffed(tmp_path, b" \r\n\t\n", forced="gbk") is None


def test_a_forced_encoding_is_used_as_named_and_an_unknown_one_is_refused(tmp_path):
    gbk = "简体中文\n".encode("gbk")
    assert sniffed(tmp_path, gbk, forced="GBK") == FileEncoding("gbk", "GBK", False)
    assert sniffed(tmp_path, gbk, forced="utf8") == UTF8  # forced, never detected: no warning
    with pytest.raises(UserError) as err:
        sniffed(tmp_path, gbk, forced="klingon")
    assert err.value.one_line() == ("--data-encoding: unknown encoding 'klingon' — use auto, utf-8, gb18030, big5, "
                                    "utf-16 …")


def test_more_than_one_percent_of_nul_bytes_is_binary(tmp_path):
    assert sniffed(tmp_path, b"\x00" + b"a" * 99) == UTF8  # 1 %: stray NULs are cleaned away
    path = tmp_path / "sample.txt"
    with pytest.raises(UserError) as err:
        sniffed(tmp_path, b"\x00\x00" + b"a" * 98)
    assert err.value.one_line() == (f"{path}: looks binary (2% NUL bytes in the first 100 bytes) — remove it from "
                                    "--data-files; if it is UTF-16 text without a BOM, convert it to UTF-8")


def test_utf8_with_one_bad_byte_per_20_other_characters_is_still_utf8(tmp_path):
    assert sniffed(tmp_path, "中".encode() * 20 + b"\xff\n") == UTF8
    assert sniffed(tmp_path, "中".encode() * 40 + b"\xff\xfe\n") == UTF8
    with pytest.raises(UserError, match="looks binary, not text"):  # 19 to 1: not UTF-8, and nothing else either
        sniffed(tmp_path, "中".encode() * 19 + b"\xff\n")
    cut = "中文".encode() * 3 + "中".encode()[:2]  # a small file cut inside its last character
    assert sniffed(tmp_path, cut) == UTF8


def test_a_sample_is_cut_after_its_last_whole_line_unless_it_is_the_whole_file():
    assert _trim_to_whole_lines(b"ab\ncd", whole_file=False) == b"ab\n"
    assert _trim_to_whole_lines(b"ab\ncd", whole_file=True) == b"ab\ncd"
    assert _trim_to_whole_lines(b"a\nb\ncd", whole_file=False) == b"a\nb\n"
    assert _trim_to_whole_lines(b"abcd", whole_file=False) == b"abcd"  # one long line: kept as it is
    assert _trim_to_whole_lines(b"\nabcd", whole_file=False) == b"\nabcd"


def test_a_gbk_file_larger_than_the_sample_is_detected_on_whole_lines(tmp_path):
    line = "中华人民共和国国务院今天发布了新的规定，自下月起施行。\n".encode("gbk")
    data = line * (3 * 65536 // len(line))
    assert 65536 % len(line) not in (0, len(line) - 1)  # the 64 KiB sample ends inside a line
    assert sniffed(tmp_path, data) == FileEncoding("gb18030", "GB18030", True)


def test_text_in_another_encoding_or_binary_data_is_refused_by_name(tmp_path):
    path = tmp_path / "sample.txt"
    with pytest.raises(UserError) as err:
        sniffed(tmp_path, "日本語のテキストです。\n".encode("shift_jis") * 20)
    assert err.value.one_line() == (f"{path}: not UTF-8, GB18030/GBK or Big5 (looks like cp932) — convert it to "
                                    "UTF-8 (iconv -f ENC -t UTF-8) or pass --data-encoding ENC")
    rng = random.Random(1)
    with pytest.raises(UserError) as err:
        sniffed(tmp_path, bytes(rng.randrange(1, 256) for _ in range(3000)))
    assert err.value.one_line() == f"{path}: looks binary, not text — remove it from --data-files"
