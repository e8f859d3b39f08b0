"""A .json file holding one array of documents, parsed incrementally (a multi-GB array is never loaded).

Elements are strings (GPT2-Chinese's train.json) or objects with the text in data.text_field
(pleisto/wikipedia-cn's `completion`). ijson's C backend does the parsing; when it finds invalid
JSON, the file is parsed again with ijson's pure-Python backend, which knows the position, so the
one-line error names the byte offset (error path only: it is slower).
"""

import codecs
import io
import re
from collections.abc import Iterator
from pathlib import Path

from gpt2zh.corpus.compression import open_bytes
from gpt2zh.corpus.encoding import FileEncoding
from gpt2zh.errors import UserError

INVALID_FIX = "fix the JSON (a .json corpus holds one array of strings or objects, or JSON Lines)"


class _Utf8(io.RawIOBase):
    """The file's text re-encoded as UTF-8, for ijson (GBK or UTF-16 JSON exists in the wild)."""

    def __init__(self, path: Path, codec: str):
        self.text = io.TextIOWrapper(open_bytes(path), encoding=codec, newline="")
        self.encoder = codecs.getincrementalencoder("utf-8")()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            chunk = self.text.read(1 << 16)
            if not chunk:
                break
            self.pending += self.encoder.encode(chunk)
        data, self.pending = self.pending[: len(buffer)], self.pending[len(buffer):]
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.text.close()
        super().close()


def _utf8_stream(path: Path, encoding: FileEncoding):
    if encoding.codec == "utf-8":
        return open_bytes(path)
    return io.BufferedReader(_Utf8(path, encoding.codec))


def starts_with_array(path: Path, encoding: FileEncoding) -> bool:
    """Whether the first non-blank character is `[` (else the .json file is read as JSON Lines)."""
    with _utf8_stream(path, encoding) as stream:
        head = stream.read(4096).lstrip()
    return head.startswith(b"[")


def _byte_offset(path: Path, encoding: FileEncoding) -> int:
    """Where the pure-Python parser fails, as a byte offset of the UTF-8 text (the end if it does not say)."""
    import ijson

    with _utf8_stream(path, encoding) as stream:
        try:
            for _ in ijson.get_backend("python").items(stream, "item", use_float=True):
                pass
        except ijson.JSONError as err:
            match = re.search(r"at (\d+)", str(err))
            if match is None:
                return stream.tell()
            characters = int(match.group(1))
        else:
            return stream.tell()
    with _utf8_stream(path, encoding) as stream:
        decoder, seen, consumed = codecs.getincrementaldecoder("utf-8")(errors="replace"), 0, 0
        while seen < characters:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            text = decoder.decode(chunk)
            if seen + len(text) >= characters:
                return consumed + len(text[: characters - seen].encode("utf-8"))
            seen += len(text)
            consumed += len(chunk)
    return consumed


def array_elements(path: Path, encoding: FileEncoding) -> Iterator[tuple[int, object]]:
    """(index, element) of the top-level array, streamed."""
    import ijson

    with _utf8_stream(path, encoding) as stream:
        index = -1
        try:
            for index, element in enumerate(ijson.items(stream, "item", use_float=True)):
                yield index, element
        except ijson.JSONError:
            offset = _byte_offset(path, encoding)
            raise UserError(f"{path}: invalid JSON at byte {offset:,} (after {index + 1:,} elements of the array)",
                            INVALID_FIX) from None
    if index < 0 and not starts_with_array(path, encoding):
        raise UserError(f"{path}: not a JSON array", INVALID_FIX)
