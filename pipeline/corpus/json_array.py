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
DECODE_FIX = "fix the file, or convert it to UTF-8 (iconv -c drops what does not decode)"


class _Utf8(io.RawIOBase):
    """The file's text re-encoded as UTF-8, for ijson (GBK or UTF-16 JSON exists in the wild)."""

    def __init__(self, path: Path, encoding: FileEncoding):
        self.path, self.label = path, encoding.label
        self.text = io.TextIOWrapper(open_bytes(path), encoding=encoding.codec, newline="")
        self.encoder = codecs.getincrementalencoder("utf-8")()
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            try:
                chunk = self.text.read(1 << 16)
            except UnicodeDecodeError as err:  # past the 64 KiB the encoding was detected on
                bad = err.object[err.start: err.end]
                raise UserError(f"{self.path}: cannot decode {bad!r} as {self.label}", DECODE_FIX) from None
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
    return io.BufferedReader(_Utf8(path, encoding))


def starts_with_array(path: Path, encoding: FileEncoding) -> bool:
    """Whether the first non-blank character is `[` (else the .json file is read as JSON Lines)."""
    with _utf8_stream(path, encoding) as stream:
        while chunk := stream.read(4096):
            if head := chunk.lstrip():
                return head.startswith(b"[")
    return False


def _byte_offset(path: Path, encoding: FileEncoding) -> int:
    """Where the pure-Python parser fails, as a byte offset of the UTF-8 text (the end if it does not say)."""
    import ijson

    with _utf8_stream(path, encoding) as stream:
        try:
            for _ in ijson.get_backend("python").basic_parse(stream):
                pass
            return stream.tell()
        except ijson.JSONError as err:
            cause = err.args[0] if err.args else None
            if isinstance(cause, UnicodeDecodeError):  # not UTF-8: `object` is the undecoded bytes up to tell()
                return stream.tell() - len(cause.object) + cause.start
            match = re.search(r"at (\d+)", str(err))
            if match is None:
                return stream.tell()
    return _utf8_length(path, encoding, int(match.group(1)))


def _utf8_length(path: Path, encoding: FileEncoding, characters: int) -> int:
    """The bytes of the first `characters` characters of the UTF-8 text (the parser counts characters)."""
    with _utf8_stream(path, encoding) as stream:
        decoder, seen, consumed = codecs.getincrementaldecoder("utf-8")(errors="replace"), 0, 0
        while chunk := stream.read(1 << 16):
            text = decoder.decode(chunk)
            if seen + len(text) >= characters:
                return consumed + len(text[: characters - seen].encode("utf-8"))
            seen += len(text)
            consumed += len(text.encode("utf-8"))  # not len(chunk): a character cut by the chunk is in the next text
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
