"""Raw document texts of one block of a source, per file format.

Formats: .txt (one document per line; blank lines are ignored), .jsonl (one JSON object per line,
text in data.text_field), .parquet (column data.text_field, one block per row group) and the demo's
People's Daily file (`word/pos` tokens; tags stripped, words joined without spaces).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.corpus.encoding import FileEncoding
from pipeline.corpus.lines import LineCounts, LinePolicy, position_label, read_lines
from pipeline.corpus.sources import Source
from pipeline.errors import UserError

BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Block:
    """A byte range [start, end) of a text source, or row group `start` of a parquet file."""

    source: Source
    encoding: FileEncoding | None
    start: int
    end: int


def _parquet_file(source: Source, text_field: str):
    import pyarrow.parquet as pq  # imported on first use: most corpora are text

    try:
        parquet = pq.ParquetFile(source.path)
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError variants for damaged files
        raise UserError(f"{source.path}: not a readable parquet file ({err})",
                        "re-export it or remove it from --data-files") from None
    columns = parquet.schema_arrow.names
    if text_field not in columns:
        raise UserError(f"{source.path}: no column {text_field!r} (columns: {', '.join(columns)})",
                        "pass --data-text-field with the column that holds the text")
    return parquet


def plan_blocks(source: Source, encoding: FileEncoding | None, text_field: str) -> list[Block]:
    if source.format == "parquet":
        parquet = _parquet_file(source, text_field)
        return [Block(source, None, group, group + 1) for group in range(parquet.num_row_groups)]
    if encoding is None:
        return []  # empty file
    if not encoding.ascii_compatible:
        return [Block(source, encoding, 0, source.size)]  # UTF-16/32 is read whole, as text
    return [Block(source, encoding, start, min(start + BLOCK_BYTES, source.size))
            for start in range(0, source.size, BLOCK_BYTES)]


def _strip_pos_tags(line: str) -> str:
    # `迈向/v  充满/v` -> `迈向充满`; compounds `[中央/n  人民/n]nt` lose their brackets.
    return "".join(token.rpartition("/")[0].lstrip("[") for token in line.split())


def _json_text(block: Block, position: int, line: str, text_field: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        where = position_label(block.source.path, position)
        raise UserError(f"{block.source.path}: {where}: invalid JSON ({err.msg})", "fix or remove that line") from None
    if not isinstance(record, dict) or text_field not in record:
        where = position_label(block.source.path, position)
        keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise UserError(f"{block.source.path}: {where}: no field {text_field!r} (found: {keys})",
                        "pass --data-text-field with the field that holds the text")
    value = record[text_field]
    if value is None:
        return None
    if not isinstance(value, str):
        where = position_label(block.source.path, position)
        raise UserError(f"{block.source.path}: {where}: field {text_field!r} is {type(value).__name__}, not text",
                        "store the document text as a JSON string")
    return value


def _parquet_texts(block: Block, text_field: str, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    table = _parquet_file(block.source, text_field).read_row_group(block.start, columns=[text_field])
    column = table.column(text_field)
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise UserError(f"{block.source.path}: column {text_field!r} has type {column.type}, not text",
                        "pass --data-text-field with a string column")
    for value in column.to_pylist():
        counts.lines += 1
        if value is None:
            continue
        if len(value) > policy.max_line_chars:
            if policy.long_lines == "error":
                raise UserError(f"{block.source.path}: a document is longer than {policy.max_line_chars:,} characters",
                                "raise --data-max-line-chars, or pass --data-long-lines split or skip")
            if policy.long_lines == "skip":
                counts.long_lines_skipped += 1
                continue
            counts.long_lines_split += 1
            for start in range(0, len(value), policy.max_line_chars):
                counts.long_line_pieces += 1
                yield value[start: start + policy.max_line_chars]
            continue
        yield value


def block_texts(block: Block, text_field: str, policy: LinePolicy, counts: LineCounts) -> Iterator[str]:
    """Uncleaned document texts of a block, in file order."""
    fmt = block.source.format
    if fmt == "parquet":
        yield from _parquet_texts(block, text_field, policy, counts)
        return
    if fmt == "jsonl":
        policy = LinePolicy(policy.decode_errors, policy.max_line_chars, policy.long_lines, splittable=False)
    for position, line in read_lines(block.source.path, block.encoding, block.start, block.end, policy, counts):
        if fmt == "txt":
            yield line
        elif fmt == "pku":
            yield _strip_pos_tags(line)
        elif line.strip():  # jsonl; blank lines between records are harmless
            text = _json_text(block, position, line, text_field)
            if text is not None:
                yield text
