"""Raw document texts of one block of a source, per file format.

Formats: .txt (one document per line, or blank-line separated documents: blank_lines.py), .jsonl
(one JSON object per line, text in data.text_field), .json (one array of strings or objects:
json_array.py; or JSON Lines under a .json name), .parquet (column data.text_field, one block per
row group) and the demo's People's Daily file (`word/pos` tokens; tags stripped, words joined
without spaces). With data.title_field, a record's title becomes the first line of its document.
"""

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from gpt2zh.corpus.blank_lines import blank_line_documents
from gpt2zh.corpus.encoding import FileEncoding
from gpt2zh.corpus.fast_lines import block_lines
from gpt2zh.corpus.json_array import array_elements, starts_with_array
from gpt2zh.corpus.lines import LineCounts, LinePolicy, RangeReader, position_label, read_lines
from gpt2zh.corpus.sources import Source
from gpt2zh.errors import UserError

BLOCK_BYTES = 1 << 20
TO_THE_END = sys.maxsize  # the end of a block that cannot be cut at byte offsets (compressed, JSON array)
FIELD_FIX = "pass --data-text-field (and --data-title-field) with the fields that hold the text"


@dataclass(frozen=True)
class Block:
    """A byte range [start, end) of a text source, or row group `start` of a parquet file.

    layout: how documents are laid out: line | blank-line (.txt), records (.jsonl, JSON Lines in
    .json), array (.json), rows (.parquet), pku (the demo's tagged text).
    """

    source: Source
    encoding: FileEncoding | None
    start: int
    end: int
    layout: str = "line"
    data: bytes | None = None  # whole lines [start, end) of a compressed file, decompressed by the main process

    @property
    def whole_file(self) -> bool:
        """A block that is its whole file, read as one stream (stage 2 splits it into chunks of documents)."""
        return self.end == TO_THE_END


@dataclass(frozen=True)
class Fields:
    text: str
    title: str = ""

    @classmethod
    def of(cls, data) -> "Fields":
        """The record fields a DataConfig names."""
        return cls(data.text_field, data.title_field)


class _BadRecord(Exception):
    """A record without usable text; the caller names where it is."""


def record_text(record, fields: Fields) -> str | None:
    """The document of one JSON object or parquet row: [title + "\\n"] + text; None if the text is null."""
    if not isinstance(record, dict) or fields.text not in record:
        keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise _BadRecord(f"no field {fields.text!r} (found: {keys})")
    text = record[fields.text]
    if text is None:
        return None
    if not isinstance(text, str):
        raise _BadRecord(f"field {fields.text!r} is {type(text).__name__}, not text")
    if not fields.title:
        return text
    if fields.title not in record:
        raise _BadRecord(f"no field {fields.title!r} for --data-title-field (found: {', '.join(record)})")
    title = record[fields.title]
    if not isinstance(title, str) or not title.strip() or text == title or text.startswith(title + "\n"):
        return text  # no title, or the text already starts with it (wiki2019zh repeats it)
    return f"{title}\n{text}"


def _parquet_file(source: Source, fields: Fields):
    import pyarrow.parquet as pq  # imported on first use: most corpora are text

    try:
        parquet = pq.ParquetFile(source.path)
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError variants for damaged files
        raise UserError(f"{source.path}: not a readable parquet file ({err})",
                        "re-export it or remove it from --data-files") from None
    columns = parquet.schema_arrow.names
    for name in filter(None, (fields.text, fields.title)):
        if name not in columns:
            raise UserError(f"{source.path}: no column {name!r} (columns: {', '.join(columns)})",
                            "pass --data-text-field with the column that holds the text")
    return parquet


def plan_blocks(source: Source, encoding: FileEncoding | None, fields: Fields, layout: str) -> list[Block]:
    if source.format == "parquet":
        parquet = _parquet_file(source, fields)
        return [Block(source, None, group, group + 1, "rows") for group in range(parquet.num_row_groups)]
    if encoding is None:
        return []  # empty file
    if source.format == "json":
        layout = "array" if starts_with_array(source.path, encoding) else "records"
    if not source.splittable or layout == "array":
        return [Block(source, encoding, 0, TO_THE_END, layout)]
    if not encoding.ascii_compatible:
        return [Block(source, encoding, 0, source.size, layout)]  # UTF-16/32 is read whole, as text
    return [Block(source, encoding, start, min(start + BLOCK_BYTES, source.size), layout)
            for start in range(0, source.size, BLOCK_BYTES)]


def _strip_pos_tags(line: str) -> str:
    # `迈向/v  充满/v` -> `迈向充满`; compounds `[中央/n  人民/n]nt` lose their brackets.
    return "".join(token.rpartition("/")[0].lstrip("[") for token in line.split())


def _split_long(value: str, where: str, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    """data.long_lines for a record or row (a JSON line that is too long is skipped by the line reader)."""
    if len(value) <= policy.max_line_chars:
        yield value
        return
    if policy.long_lines == "error":
        raise UserError(f"{where}: a document is longer than {policy.max_line_chars:,} characters",
                        "raise --data-max-line-chars, or pass --data-long-lines split or skip")
    if policy.long_lines == "skip":
        counts.long_lines_skipped += 1
        return
    counts.long_lines_split += 1
    for start in range(0, len(value), policy.max_line_chars):
        counts.long_line_pieces += 1
        yield value[start: start + policy.max_line_chars]


def _parquet_texts(block: Block, fields: Fields, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    import pyarrow as pa

    columns = [name for name in (fields.text, fields.title) if name]
    table = _parquet_file(block.source, fields).read_row_group(block.start, columns=columns)
    for name in columns:
        column_type = table.column(name).type
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            raise UserError(f"{block.source.path}: column {name!r} has type {column_type}, not text",
                            "pass --data-text-field with a string column")
    for row in table.to_pylist():
        counts.lines += 1
        text = record_text(row, fields)
        if text is not None:
            yield from _split_long(text, str(block.source.path), policy, counts)


def _array_texts(block: Block, fields: Fields, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    for index, element in array_elements(block.source.path, block.encoding):
        counts.lines += 1
        try:
            text = element if isinstance(element, str) else record_text(element, fields)
        except _BadRecord as problem:
            raise UserError(f"{block.source.path}: element {index:,} of the array: {problem}", FIELD_FIX) from None
        if text is not None:
            yield from _split_long(text, str(block.source.path), policy, counts)


def _json_record(block: Block, position: int, line: str, fields: Fields) -> str | None:
    def where() -> str:  # only for an error: a line number costs a scan of the file up to it
        return f"{block.source.path}: {position_label(block.source.path, position)}"

    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        if block.source.format == "json":  # no `[` first: read as JSON Lines
            raise UserError(f"{where()}: invalid JSON ({err.msg}); a .json file that does not start with [ is read "
                            "as JSON Lines, one object per line", "store one array of documents or one object per "
                            "line (a single object holding the documents is not read)") from None
        raise UserError(f"{where()}: invalid JSON ({err.msg})", "fix or remove that line") from None
    try:
        return record_text(record, fields)
    except _BadRecord as problem:
        raise UserError(f"{where()}: {problem}", FIELD_FIX) from None


def _positioned_lines(block: Block, policy: LinePolicy, counts: LineCounts) -> Iterator[tuple[int, str]]:
    if block.data is None:
        return read_lines(block.source.path, block.encoding, block.start, block.end, policy, counts)
    reader = RangeReader(block.source.path, block.encoding, policy, counts)
    return reader.lines_from(io.BytesIO(block.data), block.start, block.start, block.end, stop_at_end=False)


def block_texts(block: Block, fields: Fields, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    """Uncleaned document texts of a block, in file order."""
    layout, path, encoding = block.layout, block.source.path, block.encoding
    if layout == "rows":
        yield from _parquet_texts(block, fields, policy, counts)
    elif layout == "array":
        yield from _array_texts(block, fields, policy, counts)
    elif layout == "blank-line":
        for _, text in blank_line_documents(path, encoding, block.start, block.end, policy, counts):
            yield text
    elif layout == "records":
        record_policy = LinePolicy(policy.decode_errors, policy.max_line_chars, policy.long_lines, splittable=False)
        for position, line in _positioned_lines(block, record_policy, counts):
            if line.strip():  # blank lines between records are harmless
                text = _json_record(block, position, line, fields)
                if text is not None:
                    yield text
    else:
        lines = block_lines(path, encoding, block.start, block.end, policy, counts, block.whole_file, block.data)
        yield from map(_strip_pos_tags, lines) if layout == "pku" else lines
