"""Fast paths of the line reader for the common case: plain text that decodes and has no over-long line.

Reading a line at a time costs ~2.5 µs a line in Python, more than SentencePiece spends on a short
sentence. Here a block (or a decompressed stream, 1 MiB at a time) is read and decoded in one call
and split at b"\n", which is where bytes' readline ends lines too. At the first sign of anything
else (a decode error, a line over the length limit or over CHUNK_BYTES), the exact reader in
lines.py takes over from the start of that piece, so errors, policies and counts are its alone.
"""

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from gpt2zh.corpus.compression import open_bytes
from gpt2zh.corpus.encoding import FileEncoding
from gpt2zh.corpus.lines import CHUNK_BYTES, LineCounts, LinePolicy, RangeReader, read_lines

LONGEST_PIECE = 4 * CHUNK_BYTES  # a longer line is left to the exact reader, which streams it


def _split(data: bytes, reader: RangeReader) -> list[str] | None:
    """Whole lines of data (which ends at a line end or the end of the file), or None for the exact reader."""
    try:
        text = data.decode(reader.encoding.codec)
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    if max(map(len, lines), default=0) > reader.policy.max_line_chars:
        return None
    return lines


def _whole_lines(reader: RangeReader, start: int, end: int) -> list[str] | None:
    """The lines whose first byte lies in [start, end) of a plain file: byte_range's texts, in one read."""
    with open(reader.path, "rb") as handle:
        position = 0
        if start > 0:
            reader.skip_straddling_line(handle, start)
            position = handle.tell()
        if position >= end:
            return []
        data = handle.read(end - position)
        if not data.endswith(b"\n"):
            rest = handle.readline(CHUNK_BYTES)
            if len(rest) == CHUNK_BYTES and not rest.endswith(b"\n"):
                return None
            data += rest
    lines = _split(data, reader)
    if lines is not None:
        reader.counts.lines += len(lines)
    return lines


class _Prefixed(io.RawIOBase):
    """Bytes already taken from a stream, then the rest of it: where the exact reader takes over."""

    def __init__(self, prefix: bytes, stream):
        self.prefix, self.stream = prefix, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.prefix[: len(buffer)] if self.prefix else self.stream.read(len(buffer))
        self.prefix = self.prefix[len(data):]
        buffer[: len(data)] = data
        return len(data)


class LinePieces:
    """(offset, bytes, last) of a stream in pieces of whole lines, about CHUNK_BYTES each; the last piece
    may lack its final newline, and may be empty. A line longer than LONGEST_PIECE ends the pieces
    early: `rest_lines` then reads the rest of the stream with the exact reader, which never holds a
    line whole."""

    def __init__(self, stream):
        self.stream = stream
        self.rest: tuple[int, bytes] | None = None  # (offset, bytes already read) where the pieces stopped

    def __iter__(self) -> Iterator[tuple[int, bytes, bool]]:
        offset, pending = 0, b""
        while True:
            chunk = self.stream.read(CHUNK_BYTES)
            data = pending + chunk
            if not chunk:
                yield offset, data, True
                return
            cut = data.rfind(b"\n") + 1
            if not cut and len(data) > LONGEST_PIECE:
                self.rest = (offset, data)
                return
            if cut:
                yield offset, data[:cut], False
            offset, pending = offset + cut, data[cut:]

    def rest_lines(self, reader: RangeReader) -> Iterator[str]:
        offset, data = self.rest
        handle = io.BufferedReader(_Prefixed(data, self.stream), buffer_size=CHUNK_BYTES)
        return (line for _, line in reader.lines_from(handle, offset, offset, 1 << 62, stop_at_end=False))


def _streamed_lines(reader: RangeReader) -> Iterator[str]:
    """Every line of a (compressed) file read as one stream, a piece of whole lines at a time."""
    with open_bytes(reader.path) as stream:
        pieces = LinePieces(stream)
        for offset, data, _ in pieces:
            yield from block_lines(reader.path, reader.encoding, offset, offset + len(data), reader.policy,
                                   reader.counts, False, data)
        if pieces.rest is not None:
            yield from pieces.rest_lines(reader)


def block_lines(path: Path, encoding: FileEncoding, start: int, end: int, policy: LinePolicy,
                counts: LineCounts, whole_file: bool, data: bytes | None = None) -> Iterable[str]:
    """The lines of a block without their positions, by the fastest path that gives read_lines' result.

    data: the block's bytes when the main process already decompressed them (whole lines).
    """
    if data is not None:
        reader = RangeReader(path, encoding, policy, counts)
        lines = _split(data, reader) if encoding.codec != "utf-8-sig" else None
        if lines is not None:
            counts.lines += len(lines)
            return lines
        return (line for _, line in reader.lines_from(io.BytesIO(data), start, start, end, stop_at_end=False))
    if encoding.ascii_compatible and encoding.codec != "utf-8-sig":  # utf-8-sig strips a BOM per line there
        reader = RangeReader(path, encoding, policy, counts)
        if whole_file:
            return _streamed_lines(reader)
        lines = _whole_lines(reader, start, end)
        if lines is not None:
            return lines
    return (line for _, line in read_lines(path, encoding, start, end, policy, counts))
