"""Reading .gz, .bz2, .xz and .zst corpus files as streams of their decompressed bytes.

A compressed file cannot be entered at a byte offset, so it is one unit of work: stage 1 reads it from
the start in its random order of blocks (stopping at the sentence target like anywhere else) and
stage 2 decompresses it in the main process, handing its documents to the workers in chunks.
Decompression is the standard library's (gzip, bz2, lzma) or zstandard's; damaged and truncated
files are one-line errors naming the file.
"""

import bz2
import gzip
import io
import lzma
from collections.abc import Callable
from pathlib import Path

from gpt2zh.errors import UserError

SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
DAMAGED_FIX = "the file is truncated or damaged: download or compress it again (or remove it from --data-files)"


def compression_of(path: Path) -> str:
    """'' for a plain file, else the compression named by its suffix."""
    return SUFFIXES.get(path.suffix.lower(), "")


def inner_suffix(path: Path) -> str:
    """The suffix that says the format: `.txt` for both `a.txt` and `a.txt.gz`."""
    return Path(path.stem).suffix.lower() if compression_of(path) else path.suffix.lower()


class _Checked(io.RawIOBase):
    """A decompressing stream whose damage errors become one-line UserErrors naming the file."""

    def __init__(self, path: Path, stream, raw):
        self.path, self.stream, self.raw = path, stream, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.stream.read(len(buffer))
        except (EOFError, OSError, lzma.LZMAError, ValueError) as err:
            raise UserError(f"{self.path}: cannot decompress ({err})", DAMAGED_FIX) from None
        except Exception as err:  # zstandard.ZstdError has no common base with the above
            if type(err).__name__ != "ZstdError":
                raise
            raise UserError(f"{self.path}: cannot decompress ({err})", DAMAGED_FIX) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.raw.close()
            super().close()


class _Zstd:
    """zstd frames one after another; a stream that ends inside a frame raises EOFError, as gzip does
    (zstandard's stream_reader returns what it has and stops, so a truncated file would pass as whole)."""

    def __init__(self, raw):
        import zstandard  # imported on first use: zstd corpora are the least common

        self.raw, self.new_frame = raw, zstandard.ZstdDecompressor().decompressobj
        self.frame, self.started, self.ready = self.new_frame(), False, b""

    def read(self, size: int) -> bytes:
        while len(self.ready) < size:
            data = self.frame.unused_data if self.frame.eof else self.raw.read(1 << 16)
            if self.frame.eof:
                self.frame, self.started = self.new_frame(), False
                if not data:
                    data = self.raw.read(1 << 16)
            if not data:
                if self.started:
                    raise EOFError("compressed file ended before the end of a zstd frame")
                break
            self.started = True
            self.ready += self.frame.decompress(data)
        taken, self.ready = self.ready[:size], self.ready[size:]
        return taken

    def close(self) -> None:
        return None


def _decompressor(kind: str, raw):
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    return _Zstd(raw)


_positions: dict[Path, Callable[[], int]] = {}


def open_bytes(path: Path):
    """A binary stream of the file's (decompressed) bytes; plain files are opened as they are."""
    kind = compression_of(path)
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes the returned stream
    _positions[path] = raw.tell
    if not kind:
        return raw
    return io.BufferedReader(_Checked(path, _decompressor(kind, raw), raw), buffer_size=1 << 20)


def stream_position(path: Path) -> int:
    """How far into the file (its compressed bytes) the stream last opened on it has read: progress for
    readers that cannot say it themselves. 0 if none was opened, or it is closed."""
    tell = _positions.get(path)
    try:
        return tell() if tell is not None else 0
    except (ValueError, OSError):
        return 0
