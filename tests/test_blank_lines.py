"""Blank-line documents read directly (gpt2zh.corpus.blank_lines): how `auto` decides, which block reads
which document at which byte offset, and where a document meets data.max_line_chars."""

import gzip
import tracemalloc

import pytest

from gpt2zh.corpus.blank_lines import blank_line_documents, detect_boundary
from gpt2zh.corpus.encoding import FileEncoding
from gpt2zh.corpus.lines import LineCounts, LinePolicy
from gpt2zh.errors import UserError

UTF8 = FileEncoding("utf-8", "UTF-8", False)
UTF16 = FileEncoding("utf-16", "UTF-16", True)  # what sniff_encoding gives a file with a UTF-16 BOM


def documents(path, start=0, end=None, encoding=UTF8, **policy) -> tuple[list[tuple[int, str]], LineCounts]:
    counts = LineCounts()
    end = path.stat().st_size if end is None else end
    return list(blank_line_documents(path, encoding, start, end, LinePolicy(**policy), counts)), counts


def test_a_boundary_set_by_the_user_is_taken_without_reading_the_file(tmp_path):
    missing = tmp_path / "not-there.txt"
    for rule in ("line", "blank-line"):
        assert detect_boundary(missing, UTF8, rule) == (rule, "set by --data-document-boundary", "")


def test_auto_judges_a_large_file_by_its_first_64_kib_in_bounded_memory(tmp_path):
    path = tmp_path / "big.txt"
    group = "甲\n乙\n丙\n\n\n"  # 14 bytes: the 64 KiB sample ends inside 甲, on a line it drops
    path.write_text(group * ((8 << 20) // 14), encoding="utf-8")
    tracemalloc.start()
    verdict = detect_boundary(path, UTF8, "auto")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert verdict == ("blank-line", "blank lines separate groups of lines",
                       "3.0 lines per group on average in the first 64 KiB")
    assert peak < 4 << 20  # the sample's 20,000 lines take about 1.4 MiB; reading the file would take 8


def test_auto_keeps_one_document_per_line_for_a_single_break_or_blank_lines_between_single_lines(tmp_path):
    stray, double = tmp_path / "stray.txt", tmp_path / "double.txt"
    stray.write_text("甲\n乙\n\n丙\n丁\n", encoding="utf-8")
    double.write_text("一\n\n二\n\n三\n", encoding="utf-8")
    assert detect_boundary(stray, UTF8, "auto") == ("line", "fewer than 2 blank-line breaks", "1 in the file")
    assert detect_boundary(double, UTF8, "auto") == ("line", "blank lines only space out single lines",
                                                     "1.0 lines per group in the file")


def test_only_ascii_whitespace_makes_a_line_blank(tmp_path):
    """A line of full-width spaces (U+3000, common in Chinese text) is text, when auto counts lines and
    when documents are read."""
    spaced, grouped = tmp_path / "spaced.txt", tmp_path / "grouped.txt"
    spaced.write_text("甲\n乙\n\u3000\n丙\n丁\n\u3000\n戊\n己\n", encoding="utf-8")
    grouped.write_text("\n \t\r\n甲\n\u3000\n\n乙\n\u3000\n \n丙\n\u3000\n", encoding="utf-8")  # leading blank lines
    assert detect_boundary(spaced, UTF8, "auto") == ("line", "no blank lines between lines", "in the file")
    assert detect_boundary(grouped, UTF8, "auto") == ("blank-line", "blank lines separate groups of lines",
                                                      "2.0 lines per group on average in the file")
    path = tmp_path / "doc.txt"
    path.write_text("甲\n\u3000\n乙\n\n丙\n", encoding="utf-8")
    assert documents(path)[0] == [(0, "甲\n\u3000\n乙"), (len("甲\n\u3000\n乙\n\n".encode()), "丙")]


def test_utf16_text_is_judged_and_read_as_text_with_line_numbers_for_positions(tmp_path):
    path = tmp_path / "notepad.txt"
    path.write_bytes("甲\n乙\n\n丙\n丁\n\n戊\n己\n".encode("utf-16"))
    assert detect_boundary(path, UTF16, "auto") == ("blank-line", "blank lines separate groups of lines",
                                                    "2.0 lines per group on average in the file")
    assert documents(path, encoding=UTF16)[0] == [(-1, "甲\n乙"), (-4, "丙\n丁"), (-7, "戊\n己")]
    long = tmp_path / "long.txt"
    long.write_bytes("甲\n\n丙丁丙\n丁丁\n".encode("utf-16"))
    with pytest.raises(UserError) as err:
        documents(long, encoding=UTF16, max_line_chars=4, long_lines="error")
    assert err.value.message == f"{long}: the document starting at line 3 is longer than 4 characters"


def test_a_document_of_exactly_the_limit_is_whole_and_one_character_more_follows_long_lines(tmp_path):
    path = tmp_path / "limit.txt"
    # 甲乙\n丙丁 is 5 characters with its newline, 子丑寅\n卯辰 is 6 before its third line 巳.
    path.write_text("甲乙\n丙丁\n\n子丑寅\n卯辰\n巳\n\n尾\n", encoding="utf-8")
    second, tail = len("甲乙\n丙丁\n\n".encode()), len("甲乙\n丙丁\n\n子丑寅\n卯辰\n巳\n\n".encode())
    texts, counts = documents(path, max_line_chars=5, long_lines="skip")
    assert texts == [(0, "甲乙\n丙丁"), (tail, "尾")]
    assert (counts.long_lines_skipped, counts.long_lines_split, counts.long_line_pieces) == (1, 0, 0)
    texts, counts = documents(path, max_line_chars=5, long_lines="split")
    assert texts == [(0, "甲乙\n丙丁"), (second, "子丑寅\n卯"), (second, "辰\n巳"), (tail, "尾")]
    assert (counts.long_lines_skipped, counts.long_lines_split, counts.long_line_pieces) == (0, 1, 2)
    with pytest.raises(UserError) as err:  # the first document, at byte 0, is line 1
        documents(path, max_line_chars=4, long_lines="error")
    assert err.value.message == f"{path}: the document starting at line 1 is longer than 4 characters"


def test_an_over_long_line_follows_long_lines_with_its_whole_document(tmp_path):
    path = tmp_path / "long-line.txt"
    path.write_text("短\n\n甲乙丙丁戊己庚辛壬癸子\n丑\n\n尾\n", encoding="utf-8")  # line 3 has 11 characters
    tail = len("短\n\n甲乙丙丁戊己庚辛壬癸子\n丑\n\n".encode())
    texts, counts = documents(path, max_line_chars=5, long_lines="skip")
    assert texts == [(0, "短"), (tail, "尾")]  # 丑 goes with the line before it
    assert (counts.long_lines_skipped, counts.long_lines_split) == (1, 0)
    texts, counts = documents(path, max_line_chars=5, long_lines="split")
    assert texts == [(0, "短"), (5, "甲乙丙丁戊"), (5, "己庚辛壬癸"), (5, "子\n丑"), (tail, "尾")]
    assert (counts.long_lines_split, counts.long_line_pieces) == (1, 3)  # one document split, not one line


def test_a_block_reads_the_documents_that_start_in_it_at_their_byte_offsets(tmp_path):
    path = tmp_path / "blocks.txt"
    path.write_text("\n甲\n乙\n\n丙\n \t\n丁\n", encoding="utf-8")  # 甲 at 1, 丙 at 10, 丁 at 17
    assert documents(path, start=1)[0] == [(1, "甲\n乙"), (10, "丙"), (17, "丁")]
    assert documents(path, end=10)[0] == [(1, "甲\n乙")]  # 丙 starts the next block
    assert documents(path, end=3)[0] == [(1, "甲\n乙")]  # read to its end, past the block's
    assert documents(path, start=2)[0] == [(10, "丙"), (17, "丁")]  # inside 甲's document: it is the first block's
    for start in (9, 10):  # at or just after the blank line before 丙
        assert documents(path, start=start)[0] == [(10, "丙"), (17, "丁")]
    for start in (15, 16):  # inside the whitespace-only line before 丁
        assert documents(path, start=start)[0] == [(17, "丁")]


def test_a_compressed_file_is_read_from_its_start_without_asking_the_stream_where_it_is(tmp_path):
    path = tmp_path / "clue.txt.gz"
    path.write_bytes(gzip.compress("甲\n乙\n\n丙\n".encode()))  # its stream cannot tell() its position
    assert documents(path, end=1 << 20)[0] == [(0, "甲\n乙"), (len("甲\n乙\n\n".encode()), "丙")]


def test_a_block_starting_in_the_trailing_spaces_of_a_text_line_leaves_its_document_to_the_first_block(tmp_path):
    path = tmp_path / "trailing.txt"
    path.write_text("a \nb\n\nc\n", encoding="utf-8")  # the bytes before the space, back to byte 0, decide
    for start in (1, 2):
        assert documents(path, start=start)[0] == [(6, "c")]


def test_a_block_stops_at_the_blank_line_that_starts_the_next_block(tmp_path):
    """The line after that blank line is the next block's: this block never reads it, so its bad bytes are
    reported once, by the block it belongs to."""
    path = tmp_path / "bad.txt"
    path.write_bytes("甲\n".encode() + b"\n\xff\n")  # the blank line at byte 4 starts the second block
    assert documents(path, end=4)[0] == [(0, "甲")]
    with pytest.raises(UserError, match=r"bad\.txt: line 3, byte 5: cannot decode b'\\xff'"):
        documents(path, start=4)


def test_a_block_starting_inside_a_long_whitespace_line_reads_the_document_after_it(tmp_path):
    """The line is scanned back to its newline and found blank, so reading resumes after it; read from inside
    it instead, its last 22 spaces would come in pieces of 5 and the later ones would start a document."""
    path = tmp_path / "spaces.txt"
    path.write_text("甲\n" + " " * 30 + "\n乙\n", encoding="utf-8")  # 乙 at byte 35
    assert documents(path, start=13, max_line_chars=5)[0] == [(35, "乙")]
