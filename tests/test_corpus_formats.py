"""Each file format's reader called directly on small files: the exact documents, counts and messages."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpt2zh.corpus.formats as formats
from gpt2zh.corpus.encoding import sniff_encoding
from gpt2zh.corpus.formats import TO_THE_END, Block, Fields, block_texts, plan_blocks, record_text
from gpt2zh.corpus.lines import LineCounts, LinePolicy
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.errors import UserError

FIELD_FIX = "pass --data-text-field (and --data-title-field) with the fields that hold the text"
LONG_FIX = "raise --data-max-line-chars, or pass --data-long-lines split or skip"
TEXT = Fields("text")


def encoding_of(path):
    return None if path.suffix == ".parquet" else sniff_encoding(path)  # as the reader does


def read_blocks(path, fields=TEXT, layout="records", **policy) -> tuple[list[str], LineCounts]:
    source = resolve_sources([str(path)])[0]
    counts = LineCounts()
    blocks = plan_blocks(source, encoding_of(path), fields, layout)
    return [text for block in blocks for text in block_texts(block, fields, LinePolicy(**policy), counts)], counts


def test_a_record_gets_its_title_as_first_line_unless_the_text_already_starts_with_it():
    titled = Fields("text", "title")
    assert record_text({"title": "数学", "text": "数学是一门学科。"}, titled) == "数学\n数学是一门学科。"
    assert record_text({"title": "数学", "text": "数学"}, titled) == "数学"  # the whole text is the title
    assert record_text({"title": "数学", "text": "数学\n正文。"}, titled) == "数学\n正文。"  # wiki2019zh repeats it
    assert record_text({"title": "数学", "text": "数学是"}, titled) == "数学\n数学是"  # a prefix, not a first line
    assert record_text({"title": " \n", "text": "正文。"}, titled) == "正文。"
    assert record_text({"title": None, "text": "正文。"}, titled) == "正文。"
    assert record_text({"title": "数学", "text": None}, titled) is None
    assert record_text({"text": "正文。", "title": "数学"}, Fields("text")) == "正文。"


@pytest.mark.parametrize("element, fields, problem", [
    (5, Fields("text"), "no field 'text' (found: int)"),
    ([1, 2], Fields("text"), "no field 'text' (found: list)"),
    ({"body": "正文", "id": 1}, Fields("text"), "no field 'text' (found: body, id)"),
    ({"text": 1.5}, Fields("text"), "field 'text' is float, not text"),  # ijson gives floats, not Decimal
    ({"text": ["正文"]}, Fields("text"), "field 'text' is list, not text"),
    ({"text": "正文", "id": 1}, Fields("text", "title"), "no field 'title' for --data-title-field (found: text, id)"),
])
def test_a_bad_array_element_is_named_by_index_with_what_it_holds(tmp_path, element, fields, problem):
    path = tmp_path / "array.json"
    path.write_text(json.dumps(["第一篇", element], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_blocks(path, fields)
    assert err.value.one_line() == f"{path.resolve()}: element 1 of the array: {problem} — {FIELD_FIX}"


def test_bad_json_lines_are_named_by_line_with_the_fix_for_each_kind_of_file(tmp_path):
    records = tmp_path / "a.jsonl"
    records.write_text('{"text": "好"}\n{broken\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_blocks(records)
    assert err.value.one_line() == (f"{records.resolve()}: line 2: invalid JSON (Expecting property name enclosed "
                                    "in double quotes) — fix or remove that line")
    records.write_text('{"text": "好"}\n{"content": "好"}\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_blocks(records)
    assert err.value.one_line() == f"{records.resolve()}: line 2: no field 'text' (found: content) — {FIELD_FIX}"
    one_object = tmp_path / "obj.json"
    one_object.write_text('{\n  "data": ["甲", "乙"]\n}\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_blocks(one_object)
    assert err.value.one_line() == (
        f"{one_object.resolve()}: line 1: invalid JSON (Expecting property name enclosed in double quotes); a .json "
        "file that does not start with [ is read as JSON Lines, one object per line — store one array of documents "
        "or one object per line (a single object holding the documents is not read)")


def write_documents(path, documents: list[str]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"text": documents}), path, row_group_size=3)
    else:
        path.write_text(json.dumps(documents, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("name", ["array.json", "rows.parquet"])
def test_documents_of_arrays_and_rows_follow_the_long_lines_policy_and_are_counted(tmp_path, name):
    path = tmp_path / name
    write_documents(path, ["甲" * 4, "乙" * 9, "丙" * 5, "丁"])  # the first is exactly the limit
    texts, counts = read_blocks(path, max_line_chars=4, long_lines="split")
    assert texts == ["甲" * 4, "乙" * 4, "乙" * 4, "乙", "丙" * 4, "丙", "丁"]
    assert counts == LineCounts(lines=4, long_lines_split=2, long_line_pieces=5)
    texts, counts = read_blocks(path, max_line_chars=4, long_lines="skip")
    assert texts == ["甲" * 4, "丁"] and counts == LineCounts(lines=4, long_lines_skipped=2)
    with pytest.raises(UserError) as err:
        read_blocks(path, max_line_chars=4, long_lines="error")
    assert err.value.one_line() == f"{path.resolve()}: a document is longer than 4 characters — {LONG_FIX}"


def test_parquet_reads_only_the_named_columns_of_string_or_large_string_type(tmp_path):
    path = tmp_path / "wiki.parquet"
    # A column the reader must not touch: pyarrow cannot turn this timestamp into a Python datetime.
    overflowing = pa.array([2**62, 0], pa.timestamp("ms"))
    pq.write_table(pa.table({"text": pa.array(["甲文", "乙文"], pa.large_string()), "at": overflowing}), path)
    assert read_blocks(path) == (["甲文", "乙文"], LineCounts(lines=2))
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(UserError) as err:
        read_blocks(path)
    assert err.value.one_line() == (f"{path.resolve()}: column 'text' has type int64, not text — "
                                    "pass --data-text-field with a string column")
    pq.write_table(pa.table({"text": ["甲"], "n": [1]}), path)
    with pytest.raises(UserError) as err:
        read_blocks(path, Fields("body"))
    assert err.value.one_line() == (f"{path.resolve()}: no column 'body' (columns: text, n) — "
                                    "pass --data-text-field with the column that holds the text")


def test_a_damaged_parquet_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(UserError) as err:
        read_blocks(path)
    assert err.value.message.startswith(f"{path.resolve()}: not a readable parquet file (")
    assert err.value.fix == "re-export it or remove it from --data-files"


def test_tagged_lines_lose_their_tags_and_compound_brackets(tmp_path):
    path = tmp_path / "tagged.txt"
    path.write_text("[中央/n  人民/n]nt  迈向/v  １/３/m  [X光/n  检查/vn]nz\n", encoding="utf-8")
    assert read_blocks(path, layout="pku")[0] == ["中央人民迈向１/３X光检查"]  # a word may hold a slash


def test_blocks_are_planned_per_format(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "BLOCK_BYTES", 4)
    lines, utf16, array, records, parquet, empty = (tmp_path / name for name in (
        "lines.jsonl", "utf16.txt", "array.json", "records.json", "rows.parquet", "empty.txt"))
    lines.write_text('{"text": "1"}\n', encoding="utf-8")  # 14 bytes
    utf16.write_text("甲\n乙\n", encoding="utf-16")
    array.write_text('  ["甲"]', encoding="utf-8")
    records.write_text('{"text": "甲"}', encoding="utf-8")
    pq.write_table(pa.table({"text": ["甲", "乙", "丙"]}), parquet, row_group_size=2)
    empty.write_bytes(b"")

    def planned(path, layout="line"):
        source = resolve_sources([str(path)])[0]
        blocks = plan_blocks(source, encoding_of(path), Fields("text"), layout)
        assert all(block.source == source for block in blocks)
        return [(block.start, block.end, block.layout, block.encoding and block.encoding.codec) for block in blocks]

    assert planned(lines, "records") == [(0, 4, "records", "utf-8"), (4, 8, "records", "utf-8"),
                                         (8, 12, "records", "utf-8"), (12, 14, "records", "utf-8")]
    assert planned(utf16) == [(0, utf16.stat().st_size, "line", "utf-16")]  # read whole, as text
    assert planned(array) == [(0, TO_THE_END, "array", "utf-8")]
    assert planned(records) == [(0, TO_THE_END, "records", "utf-8")]
    assert planned(parquet) == [(0, 1, "rows", None), (1, 2, "rows", None)]
    assert planned(empty) == []
    assert Block(None, None, 0, TO_THE_END).whole_file and not Block(None, None, 0, 4).whole_file
