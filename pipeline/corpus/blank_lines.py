"""Text files whose documents are groups of lines separated by blank lines (CLUECorpusSmall's layout).

Read as one document per line, such a corpus puts <|endoftext|> after every sentence and the model
learns to stop after one. data.document_boundary decides per file: `line`, `blank-line`, or `auto`,
which looks at the first 64 KiB (see detect_boundary).

A blank line holds ASCII whitespace only, judged the same way on bytes and on text. A document
belongs to the block its first line starts in and is read to its end even past the block, so with
blocks of any size every document is read exactly once and whole: a block's reader first decides
whether its first line continues a document of an earlier block (the line before it is not blank)
and skips that document if so. The lines of a document are joined with "\n"; a document longer than
data.max_line_chars follows data.long_lines like an over-long line does.
"""

from collections.abc import Iterator
from pathlib import Path

from gpt2zh.corpus.compression import open_bytes
from gpt2zh.corpus.encoding import SAMPLE_BYTES, FileEncoding
from gpt2zh.corpus.lines import LineCounts, LinePolicy, RangeReader, line_number_at

WHITESPACE = " \t\n\r\x0b\x0c"
_WHITESPACE_BYTES = frozenset(WHITESPACE.encode())
MIN_BREAKS = 2  # auto: one stray blank line is not a layout
MIN_LINES_PER_GROUP = 2.0  # auto: blank lines that only space out single lines leave documents as they are


def detect_boundary(path: Path, encoding: FileEncoding, requested: str) -> tuple[str, str, str]:
    """(rule, reason, figures) for a .txt file: rule is 'line' or 'blank-line'; files with the same
    reason are summarised together, figures are this file's own."""
    if requested != "auto":
        return requested, "set by --data-document-boundary", ""
    with open_bytes(path) as handle:
        sample = handle.read(SAMPLE_BYTES)
        whole_file = not handle.read(1)
    lines = sample.decode(encoding.codec, errors="replace").splitlines()
    if not whole_file:  # then the sample is SAMPLE_BYTES long: lines is not empty
        lines.pop()  # probably cut by the sample
    groups, content, in_group = 0, 0, False
    for line in lines:
        in_group, was_in_group = bool(line.strip(WHITESPACE)), in_group
        content += in_group
        if in_group and not was_in_group:
            groups += 1
    breaks = max(groups - 1, 0)  # a group ends only at a blank line: every later group follows one
    where = "in the first 64 KiB" if not whole_file else "in the file"
    if breaks == 0:
        return "line", "no blank lines between lines", where
    if breaks < MIN_BREAKS:
        return "line", f"fewer than {MIN_BREAKS} blank-line breaks", f"{breaks} {where}"
    per_group = content / groups
    if per_group < MIN_LINES_PER_GROUP:
        return "line", "blank lines only space out single lines", f"{per_group:.1f} lines per group {where}"
    return "blank-line", "blank lines separate groups of lines", f"{per_group:.1f} lines per group on average {where}"


def _line_before_is_blank(reader: RangeReader, handle, start: int) -> bool:
    """Whether the line holding byte start-1 is blank; leaves handle after that line."""
    tail_blank = reader.skip_straddling_line(handle, start)
    after = handle.tell()
    blank = tail_blank
    position = start - 1  # the line's bytes before start-1, scanned backwards to the previous newline
    while blank and position > 0:
        step = min(position, 4096)
        handle.seek(position - step)
        for byte in reversed(handle.read(step)):
            if byte == 0x0A:
                position = 0
                break
            if byte not in _WHITESPACE_BYTES:
                blank = False
                break
        else:
            position -= step
    handle.seek(after)
    return blank


def _assemble(lines: Iterator[tuple[int, str]], end: int, at_boundary: bool,
              reader: RangeReader) -> Iterator[tuple[int, str]]:
    limit, counts = reader.policy.max_line_chars, reader.counts
    outside = not at_boundary  # inside a document that an earlier block owns
    start, parts, length, action, last = None, [], 0, None, None

    def finished() -> Iterator[tuple[int, str]]:
        if start is not None and length:  # a skipped document keeps length 0
            if action == "split":
                counts.long_line_pieces += 1
            yield start, "".join(parts)

    for position, text in lines:
        new_line, last = position != last, position
        if new_line and not text.strip(WHITESPACE):
            yield from finished()
            start, outside = None, False
            if position >= end:
                return
            continue
        if outside:
            continue
        if start is None:
            if position >= end:
                return  # the next block's document
            start, parts, length, action = position, [], 0, None
        elif new_line and action != "skip":
            parts.append("\n")
            length += 1
        if action == "skip":
            continue
        parts.append(text)
        length += len(text)
        if length > limit:
            if action is None:
                line = line_number_at(reader.path, start) if start >= 0 else -start  # -N: line N of UTF-16 text
                action = reader.too_long(line, "the document starting at line", always=True)
            if action == "skip":
                parts, length = [], 0
                continue
            joined = "".join(parts)
            while len(joined) > limit:
                counts.long_line_pieces += 1
                yield start, joined[:limit]
                joined = joined[limit:]
            parts, length = [joined], len(joined)
    yield from finished()


def blank_line_documents(path: Path, encoding: FileEncoding, start: int, end: int, policy: LinePolicy,
                         counts: LineCounts) -> Iterator[tuple[int, str]]:
    """(position of the first line, text) of each document whose first line starts in [start, end)."""
    reader = RangeReader(path, encoding, policy, counts, line_policy=False)
    if not encoding.ascii_compatible:  # UTF-16/32: one block, read as text
        yield from _assemble(reader.whole_text_file(), end, True, reader)
        return
    with open_bytes(path) as handle:
        at_boundary = start == 0 or _line_before_is_blank(reader, handle, start)
        position = handle.tell() if start > 0 else 0  # a decompressing stream has no tell(); its block starts at 0
        yield from _assemble(reader.lines_from(handle, position, start, end, stop_at_end=False), end, at_boundary,
                             reader)
