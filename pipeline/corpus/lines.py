"""Decoded lines of one byte range of a file, in bounded memory.

A file is read as byte ranges ("blocks") so that stage 1 can sample random parts of a huge corpus
and stage 2 can spread the work; a line belongs to the block its first byte is in. Lines are read
at most CHUNK_BYTES at a time, so a 100 MB line never sits in memory whole. Undecodable bytes and
over-long lines follow the data.decode_errors / data.long_lines policies; whatever is not an error
is counted and announced once per file.
"""

import codecs
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gpt2zh.corpus.compression import open_bytes
from gpt2zh.corpus.encoding import FileEncoding
from gpt2zh.corpus.tally import Tally
from gpt2zh.errors import UserError

log = logging.getLogger("gpt2zh")
CHUNK_BYTES = 1 << 20
DECODE_FIX = "fix the file, or pass --data-decode-errors replace (U+FFFD) or skip (drop such lines)"


@dataclass
class LineCounts(Tally):
    lines: int = 0
    replaced_chars: int = 0
    undecodable_lines_skipped: int = 0
    long_lines_split: int = 0
    long_line_pieces: int = 0
    long_lines_skipped: int = 0
    warned: set = field(default_factory=set, repr=False, compare=False)  # (kind, file) already announced


@dataclass(frozen=True)
class LinePolicy:
    decode_errors: str = "strict"   # strict | replace | skip
    max_line_chars: int = 1_000_000
    long_lines: str = "split"       # split | skip | error
    splittable: bool = True         # False for JSON lines: a piece of a record is not a record


def line_number_at(path: Path, offset: int) -> int:
    """1-based line number of a byte offset, counted only when a message needs it."""
    newlines = 0
    with open_bytes(path) as handle:
        remaining = offset
        while remaining > 0:
            chunk = handle.read(min(remaining, CHUNK_BYTES))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            remaining -= len(chunk)
    return newlines + 1


def warn_once(counts: LineCounts, kind: str, path: Path, message: str) -> None:
    if (kind, path) not in counts.warned:
        counts.warned.add((kind, path))
        log.warning("%s (further cases in this file are counted in the summary)", message)


class RangeReader:
    """Lines of one file. With line_policy=False an over-long line comes in pieces of at most
    max_line_chars sharing one position, uncounted: the caller applies the policy to whole documents."""

    def __init__(self, path: Path, encoding: FileEncoding, policy: LinePolicy, counts: LineCounts,
                 line_policy: bool = True):
        self.path, self.encoding, self.policy, self.counts = path, encoding, policy, counts
        self.line_policy = line_policy
        self.consumed = 0  # end offset of the last line read by lines_from

    def _decode_error(self, raw: bytes, offset: int, err: UnicodeDecodeError) -> UserError:
        line = line_number_at(self.path, offset + err.start)
        bad = raw[err.start: err.end]
        return UserError(f"{self.path}: line {line}, byte {offset + err.start}: cannot decode {bad!r} as "
                         f"{self.encoding.label}", DECODE_FIX)

    def decode_line(self, raw: bytes, offset: int) -> str | None:
        try:
            return raw.decode(self.encoding.codec)
        except UnicodeDecodeError as err:
            if self.policy.decode_errors == "strict":
                raise self._decode_error(raw, offset, err) from None
            line = line_number_at(self.path, offset)
            if self.policy.decode_errors == "skip":
                self.counts.undecodable_lines_skipped += 1
                warn_once(self.counts, "skip", self.path, f"{self.path}: line {line}: undecodable bytes, line skipped")
                return None
            text = raw.decode(self.encoding.codec, errors="replace")
            self.counts.replaced_chars += text.count("\ufffd")
            warn_once(self.counts, "replace", self.path,
                       f"{self.path}: line {line}: undecodable bytes replaced by U+FFFD")
            return text

    def too_long(self, line: int, what: str = "line", always: bool = False) -> str:
        """Apply the long-line policy to `what` at line `line` (always: even with line_policy off, for
        a whole document); returns 'split' or 'skip' (raises for 'error')."""
        if not (self.line_policy or always):
            return "split"
        limit, subject = self.policy.max_line_chars, f"{self.path}: {what} {line} is longer than"
        if self.policy.long_lines == "error":
            raise UserError(f"{subject} {limit:,} characters",
                            "raise --data-max-line-chars, or pass --data-long-lines split or skip")
        if self.policy.long_lines == "split" and self.policy.splittable:
            self.counts.long_lines_split += 1
            warn_once(self.counts, "split", self.path, f"{subject} {limit:,} characters; split into pieces")
            return "split"
        self.counts.long_lines_skipped += 1
        reason = "" if self.policy.splittable else " (a JSON record cannot be split)"
        warn_once(self.counts, "longskip", self.path, f"{subject} {limit:,} characters; skipped{reason}")
        return "skip"

    def _count_piece(self) -> None:
        if self.line_policy:
            self.counts.long_line_pieces += 1

    def pieces(self, text: str) -> Iterator[str]:
        limit = self.policy.max_line_chars
        for start in range(0, len(text), limit):
            self._count_piece()
            yield text[start: start + limit]

    def stream_long_line(self, handle, first: bytes, offset: int) -> Iterator[str]:
        """A physical line longer than CHUNK_BYTES: decode it incrementally, never holding it whole."""
        errors = "strict" if self.policy.decode_errors == "strict" else "replace"
        decoder = codecs.getincrementaldecoder(self.encoding.codec)(errors=errors)
        limit = self.policy.max_line_chars
        action, pending, consumed, raw = None, "", offset, first
        while True:
            last = raw.endswith(b"\n") or len(raw) < CHUNK_BYTES
            try:
                text = decoder.decode(raw, final=last)
            except UnicodeDecodeError as err:
                if self.policy.decode_errors == "strict":
                    raise self._decode_error(err.object, consumed - (len(err.object) - len(raw)), err) from None
                raise  # replace never raises
            consumed += len(raw)
            if errors == "replace":  # under `skip` a streamed line keeps its pieces, bad bytes replaced
                self.counts.replaced_chars += text.count("\ufffd")
            if action != "skip":
                pending += text
                if len(pending) > limit and action is None:
                    action = self.too_long(line_number_at(self.path, offset))
                if action == "split":
                    while len(pending) > limit:
                        self._count_piece()
                        yield pending[:limit]
                        pending = pending[limit:]
                elif action == "skip":
                    pending = ""
            if last:
                break
            raw = handle.readline(CHUNK_BYTES)
            if not raw:
                break
        self.consumed = consumed
        if action == "split" and pending.rstrip("\r\n"):
            self._count_piece()
            yield pending.rstrip("\r\n")
        elif action is None:
            yield pending.rstrip("\r\n")

    def skip_straddling_line(self, handle, start: int) -> bool:
        """Move past the line holding byte start-1 (it belongs to an earlier block).

        Returns whether the part of it from byte start-1 on is blank (ASCII whitespace only).
        """
        handle.seek(start - 1)
        blank = True
        while True:
            skipped = handle.readline(CHUNK_BYTES)
            blank = blank and not skipped.strip()
            if not skipped or skipped.endswith(b"\n"):
                return blank

    def lines_from(self, handle, position: int, start: int, end: int, stop_at_end: bool) -> Iterator[tuple[int, str]]:
        """(offset, text) of the lines from `position` (where handle is) on, without terminators.

        Lines whose first byte lies in [start, end) are counted; with stop_at_end, reading stops
        before the first line that starts at or after end.
        """
        while not (stop_at_end and position >= end):
            raw = handle.readline(CHUNK_BYTES)
            if not raw:
                break
            offset = position
            position += len(raw)
            if start <= offset < end:
                self.counts.lines += 1
            if not raw.endswith(b"\n") and len(raw) == CHUNK_BYTES:
                for piece in self.stream_long_line(handle, raw, offset):
                    yield offset, piece
                position = self.consumed
                continue
            self.consumed = position
            text = self.decode_line(raw, offset)
            if text is None:
                continue
            text = text.rstrip("\r\n")
            if len(text) > self.policy.max_line_chars:
                if self.too_long(line_number_at(self.path, offset)) == "split":
                    for piece in self.pieces(text):
                        yield offset, piece
                continue
            yield offset, text

    def byte_range(self, start: int, end: int) -> Iterator[tuple[int, str]]:
        with open_bytes(self.path) as handle:
            if start > 0:
                self.skip_straddling_line(handle, start)
            yield from self.lines_from(handle, handle.tell() if start > 0 else 0, start, end, stop_at_end=True)

    def whole_text_file(self) -> Iterator[tuple[int, str]]:
        """UTF-16/32: newline is not a single byte, so the file is read as text (no byte offsets)."""
        errors = "strict" if self.policy.decode_errors == "strict" else "replace"
        limit = self.policy.max_line_chars
        line, continuing = 0, None  # continuing: None, or the long-line action for the rest of a line
        with io.TextIOWrapper(open_bytes(self.path), encoding=self.encoding.codec, errors=errors, newline="") as handle:
            while True:
                try:
                    text = handle.readline(limit)
                except UnicodeDecodeError:
                    raise UserError(f"{self.path}: after line {line}: cannot decode as {self.encoding.label}",
                                    DECODE_FIX) from None
                if not text:
                    break
                complete = text.endswith("\n")
                if continuing is None:
                    line += 1
                    self.counts.lines += 1
                    if not complete and len(text) >= limit:
                        continuing = self.too_long(line)
                bad = text.count("\ufffd") if errors == "replace" else 0
                if continuing is None and bad and self.policy.decode_errors == "skip":
                    self.counts.undecodable_lines_skipped += 1
                    continue
                self.counts.replaced_chars += bad
                if continuing == "split":
                    self._count_piece()
                if continuing != "skip":
                    yield -line, text.rstrip("\r\n")
                if complete:
                    continuing = None


def position_label(path: Path, position: int) -> str:
    """'line N' for a position yielded by read_lines (byte offset, or minus the line number)."""
    return f"line {-position}" if position < 0 else f"line {line_number_at(path, position)}"


def read_lines(path: Path, encoding: FileEncoding, start: int, end: int,
               policy: LinePolicy, counts: LineCounts) -> Iterator[tuple[int, str]]:
    """(position, line) for lines whose first byte lies in [start, end), without terminators.

    position is the line's byte offset, or minus its line number in UTF-16/32 files.
    """
    reader = RangeReader(path, encoding, policy, counts)
    if encoding.ascii_compatible:
        return reader.byte_range(start, end)
    return reader.whole_text_file()
