"""The corpus layouts Chinese pretraining users bring: blank-line documents (CLUECorpusSmall), JSON
arrays (GPT2-Chinese, pleisto/wikipedia-cn), wiki2019zh-style compressed JSON lines with titles,
parquet, compressed text, and script conversion."""

import bz2
import gzip
import itertools
import json
import lzma
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import gpt2zh.corpus.formats as formats
from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.formats import Block
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.dataset.shards import items_for_shard
from gpt2zh.errors import UserError
from gpt2zh.tokenizer.specials import SPECIAL_TOKENS

# CLUECorpusSmall's layout: one sentence per line, a blank line between documents.
CLUE_DOCUMENTS = [
    ["新华社北京１月１日电，国务院总理今天上午在人民大会堂会见了来访的客人。", "双方就共同关心的问题交换了意见。",
     "会见结束后，双方签署了合作协议。"],
    ["今天天气很好！", "我们去公园散步吧？"],
    ["《红楼梦》是中国古典四大名著之一。", "作者曹雪芹，字梦阮，号雪芹。", "全书共一百二十回……"],
]


def read(paths, **data) -> tuple[list[str], CorpusReader]:
    reader = CorpusReader(resolve_sources([str(p) for p in paths]), DataConfig(**data), SPECIAL_TOKENS)
    return [doc.text for doc in reader.documents()], reader


def clue_text(documents: list[list[str]], newline: str = "\n") -> str:
    return (newline * 2).join(newline.join(lines) for lines in documents) + newline


def random_blank_line_file(rng: random.Random, documents: int) -> tuple[str, list[str]]:
    """A messy but valid blank-line file: runs of blank and whitespace-only lines, CRLF, long lines."""
    chunks, expected = [rng.choice(["", "\n", " \n\n"])], []
    for index in range(documents):
        lines = []
        for _ in range(rng.randint(1, 6)):
            sentence = "".join(rng.choice("中文句子测试，。！？ab1") for _ in range(rng.randint(1, 120)))
            lines.append(f"{index}号{sentence}")
        expected.append("\n".join(lines))
        ending = rng.choice(["\n", "\r\n"])
        chunks.append(ending.join(lines) + ending)
        chunks.append(rng.choice(["\n", "\n\n", "\t \n", "\r\n\r\n\n"]))
    return "".join(chunks).rstrip("\n") if rng.random() < 0.5 else "".join(chunks), expected


def test_blank_line_documents_are_detected_joined_with_newlines_and_explained(tmp_path):
    path = tmp_path / "clue.txt"
    path.write_text(clue_text(CLUE_DOCUMENTS), encoding="utf-8")
    texts, reader = read([path])
    assert len(texts) == 3
    assert texts[0] == ("新华社北京1月1日电，国务院总理今天上午在人民大会堂会见了来访的客人。\n"
                        "双方就共同关心的问题交换了意见。\n会见结束后，双方签署了合作协议。")
    assert texts[-1] == "《红楼梦》是中国古典四大名著之一。\n作者曹雪芹，字梦阮，号雪芹。\n全书共一百二十回……"
    assert reader.stats.layouts == {str(path.resolve()): "blank-line"}
    assert reader.stats.layout_line() == ("blank-line documents in 1 .txt file(s) (blank lines separate groups "
                                          "of lines: 2.7 lines per group on average in the file)")


def test_one_sentence_per_line_without_blank_lines_stays_one_document_per_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(line for doc in CLUE_DOCUMENTS for line in doc) + "\n", encoding="utf-8")
    texts, reader = read([path])
    assert len(texts) == 8 and reader.stats.layouts[str(path.resolve())] == "line"
    expected = "one document per line in 1 .txt file(s) (no blank lines between lines: in the file)"
    assert reader.stats.layout_line() == expected
    one_document = "\n".join(line for doc in CLUE_DOCUMENTS for line in doc)
    assert read([path], document_boundary="blank-line", normalization="none")[0] == [one_document]
    clue = tmp_path / "clue.txt"
    clue.write_text(clue_text(CLUE_DOCUMENTS), encoding="utf-8")
    assert len(read([clue], document_boundary="line")[0]) == 8


@pytest.mark.parametrize("block_bytes", [1, 2, 7, 64, 97, 333, 1000, 4096])
def test_every_blank_line_document_is_read_exactly_once_whatever_the_block_size(tmp_path, monkeypatch, block_bytes):
    rng = random.Random(block_bytes)
    text, expected = random_blank_line_file(rng, 60)
    path = tmp_path / "messy.txt"
    path.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(formats, "BLOCK_BYTES", block_bytes)
    data = dict(document_boundary="blank-line", normalization="none")
    texts, reader = read([path], **data)
    assert texts == expected
    assert reader.stats.lines.lines == text.count("\n") + (not text.endswith("\n"))  # every line counted once
    # Random block order (stage 1) and shards (stage 2 on several machines) see the same documents.
    sampled = [doc.text for doc in reader.sampled_documents(seed=3)]
    assert sorted(sampled) == sorted(expected)
    sharded = []
    for index in range(3):
        shard_reader = CorpusReader(resolve_sources([str(path)]), DataConfig(**data), SPECIAL_TOKENS)
        shard_reader.blocks = items_for_shard(shard_reader.blocks, index, 3)
        sharded += [doc.text for doc in shard_reader.documents()]
    assert sharded == expected


def test_a_document_longer_than_the_limit_follows_the_long_lines_policy(tmp_path):
    path = tmp_path / "long.txt"
    long_document = ["甲" * 30, "乙" * 30, "丙" * 30]
    path.write_text(clue_text([["短"], long_document, ["尾"]]), encoding="utf-8")
    joined = "\n".join(long_document)
    texts, reader = read([path], document_boundary="blank-line", max_line_chars=40)
    assert texts == ["短", joined[:40], joined[40:80], joined[80:], "尾"]
    assert reader.stats.lines.long_lines_split == 1 and reader.stats.lines.long_line_pieces == 3
    assert read([path], document_boundary="blank-line", max_line_chars=40, long_lines="skip")[0] == ["短", "尾"]
    with pytest.raises(UserError, match=r"long\.txt: the document starting at line 3 is longer than 40 characters"):
        read([path], document_boundary="blank-line", max_line_chars=40, long_lines="error")


def wiki_records() -> list[dict]:
    return [{"id": "13", "url": "https://zh.wikipedia.org/wiki?curid=13", "title": "数学",
             "text": "数学\n\n数学是研究数量、结构以及空间等概念的一门学科。\n\n历史\n\n数学有着久远的历史。"},
            {"id": "18", "url": "https://zh.wikipedia.org/wiki?curid=18", "title": "哲学",
             "text": "哲学是研究普遍的、基本问题的学科。"}]


@pytest.mark.parametrize("suffix, opener", [(".jsonl.gz", gzip.open), (".jsonl.bz2", bz2.open),
                                             (".jsonl.xz", lzma.open), (".jsonl.zst", zstandard.open)])
def test_wiki2019zh_style_compressed_json_lines_keep_paragraphs_and_get_titles(tmp_path, suffix, opener):
    path = tmp_path / f"wiki_00{suffix}"
    with opener(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(record, ensure_ascii=False) for record in wiki_records()) + "\n")
    texts, reader = read([path], title_field="title")
    assert texts == [wiki_records()[0]["text"], "哲学\n哲学是研究普遍的、基本问题的学科。"]  # no title twice
    assert read([path])[0][1] == "哲学是研究普遍的、基本问题的学科。"
    assert reader.blocks[0].whole_file


def test_gpt2_chinese_train_json_is_an_array_of_strings_streamed(tmp_path):
    documents = [f"第{i}篇：这是一篇关于“中文”的文章。\n第二段。" for i in range(500)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(documents, ensure_ascii=False, indent=1), encoding="utf-8")
    texts, reader = read([path])
    assert texts == documents and len(reader.blocks) == 1 and reader.blocks[0].layout == "array"


def test_a_pleisto_style_array_of_objects_reads_the_named_field(tmp_path):
    records = [{"completion": f"词条{i}：内容，说明。", "source": "wikipedia.zh2307"} for i in range(50)]
    path = tmp_path / "wikipedia-cn.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert read([path], text_field="completion")[0] == [r["completion"] for r in records]
    with pytest.raises(UserError, match=r"wikipedia-cn\.json: element 0 of the array: no field 'text' "
                                        r"\(found: completion, source\) — pass --data-text-field"):
        read([path])


def test_a_gbk_encoded_json_array_is_decoded_as_detected_not_refused_as_invalid_json(tmp_path):
    """ijson parses UTF-8 only: GBK bytes handed to it as they are would be 'invalid JSON at byte 2'."""
    records = [{"text": f"第{i}条：简体中文的文章，用国标码保存。\n第二段。"} for i in range(40)]
    path = tmp_path / "gbk.json"
    path.write_bytes(json.dumps(records, ensure_ascii=False, indent=1).encode("gbk"))
    texts, reader = read([path])
    assert texts == [record["text"] for record in records] and reader.blocks[0].layout == "array"
    assert reader.stats.detected_encodings == {str(path.resolve()): "GB18030"}


def test_json_lines_under_a_json_name_are_read_as_records(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("\n".join(json.dumps({"text": f"第{i}行"}, ensure_ascii=False) for i in range(3)), encoding="utf-8")
    texts, reader = read([path])
    assert texts == ["第0行", "第1行", "第2行"] and reader.blocks[0].layout == "records"


def test_invalid_json_in_the_middle_of_an_array_names_the_byte_offset(tmp_path):
    good = json.dumps([f"文本{i}" for i in range(300)], ensure_ascii=False)[:-1]
    broken = good + ", {oops} ]"
    path = tmp_path / "broken.json"
    path.write_text(broken, encoding="utf-8")
    offset = len((good + ", {").encode("utf-8"))  # where the bad token `oops` starts
    with pytest.raises(UserError, match=rf"broken\.json: invalid JSON at byte {offset:,} \(after 300 elements"):
        read([path])


def test_parquet_rows_get_their_title_as_first_line(tmp_path):
    path = tmp_path / "wiki.parquet"
    pq.write_table(pa.table({"title": ["数学", None], "text": ["数学是一门学科。", "没有标题的文章。"]}), path)
    assert read([path], title_field="title")[0] == ["数学\n数学是一门学科。", "没有标题的文章。"]
    with pytest.raises(UserError, match=r"no column 'heading'"):
        read([path], title_field="heading")


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open),
                                             (".zst", zstandard.open)])
def test_compressed_text_reads_like_the_plain_file(tmp_path, suffix, opener):
    plain = tmp_path / "clue.txt"
    plain.write_text(clue_text(CLUE_DOCUMENTS, "\r\n"), encoding="utf-8")
    packed = tmp_path / f"clue.txt{suffix}"
    with opener(packed, "wb") as handle:
        handle.write(plain.read_bytes())
    assert read([packed])[0] == read([plain])[0]
    gbk = tmp_path / f"gbk.txt{suffix}"
    with opener(gbk, "wb") as handle:
        handle.write(("\n".join(["中文编码检测需要解压后的字节。"] * 20) + "\n").encode("gbk"))
    texts, reader = read([gbk])
    assert texts[0] == "中文编码检测需要解压后的字节。"
    assert reader.stats.detected_encodings  # sniffed on the decompressed bytes


def test_a_multi_frame_zst_file_is_read_to_the_end_of_its_last_frame(tmp_path):
    """`zstd` of concatenated streams and pzstd write several frames (pzstd cuts anywhere, even inside a character,
    and puts a skippable frame before each): the text is every frame's, not the first one's."""
    rng = random.Random(26)
    lines = ["".join(rng.choice("中文多帧压缩测试，。ab") for _ in range(rng.randint(1, 90))) for _ in range(3000)]
    data = ("\n".join(f"{i}号{line}" for i, line in enumerate(lines)) + "\n").encode()
    inside = next(i for i in range(100_000, len(data)) if data[i] & 0xC0 == 0x80)  # a UTF-8 continuation byte
    cuts = [0, inside, inside + 70_000, len(data)]  # frames longer than one 64 KiB read
    frames = [zstandard.compress(data[start:end]) for start, end in itertools.pairwise(cuts)]
    skippable = (0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + len(frames[2]).to_bytes(4, "little")
    plain, packed = tmp_path / "frames.txt", tmp_path / "frames.txt.zst"
    plain.write_bytes(data)
    packed.write_bytes(frames[0] + frames[1] + skippable + frames[2])
    texts, reader = read([packed])
    assert texts == read([plain])[0] and texts[-1] == f"{len(lines) - 1}号{lines[-1]}"
    assert reader.stats.lines.lines == len(lines)


def test_a_truncated_gzip_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "cut.txt.gz"
    rng = random.Random(0)
    text = "\n".join("".join(rng.choice("中文汉字测试数据压缩") for _ in range(60)) for _ in range(5000))
    compressed = gzip.compress(text.encode())
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(UserError, match=r"cut\.txt\.gz: cannot decompress .* truncated or damaged"):
        read([path])


def test_traditional_and_simplified_are_converted_and_counted(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("漢字簡化，臺灣電腦\n汉字已经是简体\n", encoding="utf-8")
    texts, reader = read([path], chinese_script="simplified")
    assert texts == ["汉字简化，台湾电脑", "汉字已经是简体"] and reader.stats.cleaning.script_converted == 1
    assert read([path], chinese_script="traditional")[0][1] == "漢字已經是簡體"
    assert read([path])[0][0] == "漢字簡化，臺灣電腦"  # keep is the default


def test_documents_shorter_than_min_chars_are_dropped_and_counted(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("好\n这是一个足够长的句子。\n嗯嗯\n", encoding="utf-8")
    texts, reader = read([path], min_chars=5)
    assert texts == ["这是一个足够长的句子。"] and reader.stats.cleaning.short_dropped == 2


def test_a_compressed_file_with_trouble_deep_inside_reads_exactly_like_the_plain_file(tmp_path):
    """The fast streamed path hands over to the exact reader at the first bad byte or over-long line."""
    rng = random.Random(8)
    lines = ["".join(rng.choice("中文句子测试，。ab") for _ in range(rng.randint(1, 200))) for _ in range(30000)]
    data = ("\n".join(lines[:20000]) + "\n").encode() + b"\xff\xfe bad\n" + ("\n".join(lines[20000:]) + "\n").encode()
    data += ("长" * 3_000_000).encode() + b"\n" + "尾行\n".encode()  # a line longer than a 1 MiB chunk
    plain, packed = tmp_path / "deep.txt", tmp_path / "deep.txt.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    expected, plain_reader = read([plain], decode_errors="replace", max_line_chars=5_000_000)
    texts, reader = read([packed], decode_errors="replace", max_line_chars=5_000_000)
    assert texts == expected and texts[-1] == "尾行" and len(texts[-2]) == 3_000_000
    assert reader.stats.lines.lines == plain_reader.stats.lines.lines == 30003
    with pytest.raises(UserError, match=r"deep\.txt\.gz: line 20001, byte \d+: cannot decode b'\\xff"):
        read([packed])


def test_auto_needs_two_breaks_and_groups_of_two_lines(tmp_path):
    stray, pairs = tmp_path / "stray.txt", tmp_path / "pairs.txt"
    stray.write_text("甲\n乙\n\n丙\n丁\n", encoding="utf-8")
    pairs.write_text("甲\n乙\n\n丙\n丁\n\n戊\n己\n", encoding="utf-8")
    texts, reader = read([stray])
    assert texts == ["甲", "乙", "丙", "丁"]
    assert "fewer than 2 blank-line breaks: 1 in the file" in reader.stats.layout_line()
    texts, reader = read([pairs])
    assert texts == ["甲\n乙", "丙\n丁", "戊\n己"] and "2.0 lines per group" in reader.stats.layout_line()


@pytest.mark.parametrize("block_bytes", [1, 3, 5])
def test_crlf_blank_lines_separate_documents_at_every_block_boundary(tmp_path, monkeypatch, block_bytes):
    path = tmp_path / "crlf.txt"
    path.write_bytes("甲一\r\n甲二\r\n\r\n乙一\r\n乙二\r\n \t\r\n丙一\r\n丙二\r\n".encode())
    monkeypatch.setattr(formats, "BLOCK_BYTES", block_bytes)
    assert read([path], document_boundary="blank-line")[0] == ["甲一\n甲二", "乙一\n乙二", "丙一\n丙二"]


def test_a_split_document_keeps_its_newlines_in_the_pieces(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("短\n\n" + "甲" * 50 + "\n" + "乙" * 50 + "\n\n尾\n", encoding="utf-8")
    texts = read([path], document_boundary="blank-line", max_line_chars=40)[0]
    assert [len(t) for t in texts] == [1, 40, 40, 21, 1] and "".join(texts[1:4]) == "甲" * 50 + "\n" + "乙" * 50


def test_traditional_conversion_uses_opencc_s2t_not_a_regional_variant(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("里面为什么\n", encoding="utf-8")
    assert read([path], chinese_script="traditional")[0] == ["裏面爲什麼"]  # s2tw would give 裡面為什麼


def test_a_json_array_is_never_parsed_whole(tmp_path, monkeypatch):
    path = tmp_path / "train.json"
    path.write_text("\n  " + json.dumps(["甲", "乙"] * 1000, ensure_ascii=False), encoding="utf-8")

    def refuse(*args, **kwargs):
        raise AssertionError("the whole array was handed to json")

    monkeypatch.setattr(json, "load", refuse)
    monkeypatch.setattr(json, "loads", refuse)
    texts, reader = read([path])
    assert texts == ["甲", "乙"] * 1000 and reader.blocks[0].layout == "array"  # leading blank space allowed


@pytest.mark.parametrize("suffix, compress", [(".xz", lzma.compress), (".zst", zstandard.compress),
                                               (".bz2", bz2.compress), (".gz", gzip.compress)])
def test_damaged_and_truncated_compressed_files_are_one_line_naming_them(tmp_path, suffix, compress):
    rng = random.Random(10)
    text = "\n".join("".join(rng.choice("中文汉字测试数据") for _ in range(60)) for _ in range(4000)) + "\n"
    packed = compress(text.encode())
    truncated, flipped = tmp_path / f"cut.txt{suffix}", tmp_path / f"flipped.txt{suffix}"
    truncated.write_bytes(packed[: len(packed) // 2])
    middle = len(packed) // 2
    flipped.write_bytes(packed[:middle] + bytes([packed[middle] ^ 0xFF]) + packed[middle + 1:])
    for path in (truncated, flipped):
        with pytest.raises(UserError, match=rf"{path.name}: cannot decompress .* truncated or damaged"):
            read([path])


def test_a_compressed_file_reaches_the_workers_in_bounded_chunks(tmp_path, monkeypatch):
    import gpt2zh.dataset.chunks as chunks

    documents = [f"第{i}篇：" + "内容" * (i % 50 + 1) for i in range(900)]
    path = tmp_path / "train.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(documents, handle, ensure_ascii=False)
    monkeypatch.setattr(chunks, "CHUNK_CHARS", 5000)
    reader = CorpusReader(resolve_sources([str(path)]), DataConfig(), SPECIAL_TOKENS)
    work = chunks.WorkItems(reader.blocks, reader)
    items = list(work)
    assert len(items) > 10 and all(isinstance(item, chunks.TextChunk) for item in items)
    longest = max(map(len, documents))
    assert all(sum(map(len, item.texts)) < 5000 + longest for item in items)
    assert [text for item in items for text in item.texts] == documents
    assert sum(work.sizes) == path.stat().st_size


def test_the_layout_row_says_how_each_kind_of_file_was_read_and_why(tmp_path):
    (tmp_path / "clue.txt").write_text(clue_text(CLUE_DOCUMENTS), encoding="utf-8")
    (tmp_path / "plain.txt").write_text("一\n二\n三\n", encoding="utf-8")
    (tmp_path / "double.txt").write_text("一\n\n二\n\n三\n", encoding="utf-8")
    (tmp_path / "train.json").write_text('["甲", "乙"]', encoding="utf-8")
    with gzip.open(tmp_path / "wiki.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write('{"text": "丙"}\n')
    reader = read([tmp_path])[1]
    assert reader.stats.layout_line() == (
        "blank-line documents in 1 .txt file(s) (blank lines separate groups of lines: 2.7 lines per group on "
        "average in the file); one document per line in 2 .txt file(s) (1: blank lines only space out single "
        "lines, 1: no blank lines between lines); one JSON array in 1 .json file(s); JSON lines in 1 .jsonl.gz "
        "file(s)")


def test_a_json_file_holding_one_object_says_how_json_files_are_read(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text('{\n  "data": ["甲", "乙"]\n}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"obj\.json: line 1: invalid JSON .* read as JSON Lines.* store one array"):
        read([path])


@pytest.mark.parametrize("name", ["deep.txt.gz", "deep.jsonl.gz"])
def test_compressed_line_files_reach_the_workers_as_bytes_that_read_like_the_plain_file(tmp_path, name):
    """The main process only decompresses and cuts at line ends; workers decode the pieces (exactly)."""
    import gpt2zh.dataset.chunks as chunks
    from gpt2zh.corpus.reader import raw_block_texts

    rng = random.Random(11)
    lines = ["".join(rng.choice("中文句子测试，。ab") for _ in range(rng.randint(1, 200))) for _ in range(20000)]
    if name.endswith(".jsonl.gz"):
        lines = [json.dumps({"text": line}, ensure_ascii=False) for line in lines]
    bad = b'{"text": "\xff bad"}\n' if name.endswith(".jsonl.gz") else b"\xff bad\n"
    raw = ("\n".join(lines[:15000]) + "\n").encode() + bad + ("\n".join(lines[15000:]) + "\n").encode()
    if name.endswith(".txt.gz"):
        raw += b"x" * (5 * (1 << 20)) + b"\n" + "尾行".encode()  # longer than any piece, then no final newline
    plain, packed = tmp_path / name.removesuffix(".gz"), tmp_path / name
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    settings = dict(decode_errors="replace", max_line_chars=6 << 20)
    expected = read([plain], **settings)[0]
    reader = CorpusReader(resolve_sources([str(packed)]), DataConfig(**settings), SPECIAL_TOKENS)
    work = chunks.WorkItems(reader.blocks, reader)
    texts, pieces = [], 0
    for item in work:
        if isinstance(item, chunks.TextChunk):
            texts += item.texts
        else:
            pieces += 1
            assert item.data is not None and len(item.data) <= 2 * (1 << 20)
            texts += [reader.cleaner.clean(text) for text in raw_block_texts(item, reader.data, reader.policy,
                                                                               reader.stats.lines)]
    assert pieces > 1  # the file reached the workers as bytes, not as texts the main process decoded
    assert [text for text in texts if text] == expected
    assert sum(work.sizes) == packed.stat().st_size
    assert reader.stats.lines.lines == 20001 + (name.endswith(".txt.gz") * 2)
    strict = CorpusReader(resolve_sources([str(packed)]), DataConfig(), SPECIAL_TOKENS)
    with pytest.raises(UserError, match=rf"{name}: line 15001, byte \d+: cannot decode b'\\xff"):
        for item in chunks.WorkItems(strict.blocks, strict):
            if isinstance(item, Block):
                list(raw_block_texts(item, strict.data, strict.policy, strict.stats.lines))


def test_reading_json_lines_costs_no_line_numbers_unless_there_is_an_error(tmp_path, monkeypatch):
    # A line number is a scan of the file up to it: once per record would make reading quadratic.
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"text": f"第{i}行"}, ensure_ascii=False) + "\n" for i in range(500)),
                    encoding="utf-8")

    def refuse(*args):
        raise AssertionError("a line number was computed for a valid record")

    monkeypatch.setattr(formats, "position_label", refuse)
    assert len(read([path])[0]) == 500


INVALID_JSON_FIX = "fix the JSON (a .json corpus holds one array of strings or objects, or JSON Lines)"


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_invalid_json_far_into_an_array_is_named_at_its_byte_in_the_utf8_text(tmp_path, encoding):
    """The parser says where in characters; the offset counts the UTF-8 bytes before that, across 64 KiB reads that
    cut characters in two (GBK text is re-encoded: CRLF kept, the offset is of the UTF-8 text)."""
    records = [{"text": f"第{i}条：简体中文的文章。"} for i in range(5000)]
    text = json.dumps(records, ensure_ascii=False, indent=1).replace("\n", "\r\n")[:-1]  # without the final ]
    pad = next(n for n in range(300) if all(("\n" * n + text).encode()[cut] & 0xC0 == 0x80 for cut in (65536, 131072)))
    text = "\n" * pad + text  # both read boundaries fall inside a character
    path = tmp_path / "broken.json"
    path.write_bytes((text + ", {oops} ]").encode(encoding))
    offset = len((text + ", {").encode("utf-8"))
    assert offset > 3 * 65536
    with pytest.raises(UserError) as err:
        read([path])
    assert err.value.one_line() == (f"{path.resolve()}: invalid JSON at byte {offset:,} (after 5,000 elements of the "
                                    f"array) — {INVALID_JSON_FIX}")
    path.write_bytes('[{oops}, "甲"]'.encode(encoding))
    with pytest.raises(UserError) as err:
        read([path])
    assert err.value.message == f"{path.resolve()}: invalid JSON at byte 2 (after 0 elements of the array)"


def test_a_byte_that_is_not_utf8_in_a_json_array_is_named_at_its_offset(tmp_path):
    documents = [f"第{i}篇：这是一篇关于中文的文章。" for i in range(100)]
    data = json.dumps(documents, ensure_ascii=False).encode()
    bad = data.index("第60篇".encode())
    path = tmp_path / "corrupt.json"
    path.write_bytes(data[:bad] + b"\xff" + data[bad:])
    with pytest.raises(UserError) as err:
        read([path])
    assert err.value.message == f"{path.resolve()}: invalid JSON at byte {bad:,} (after 60 elements of the array)"


def test_a_gbk_json_array_that_stops_decoding_past_the_detection_sample_is_one_line_naming_it(tmp_path):
    records = [{"text": f"第{i}条：简体中文的文章，用国标码保存。"} for i in range(4000)]
    data = json.dumps(records, ensure_ascii=False, indent=1).encode("gbk")
    bad = data.index("第3900条".encode("gbk"))  # ~230 KB in: the encoding was detected on the first 64 KiB
    path = tmp_path / "gbk.json"
    path.write_bytes(data[:bad] + b"\xff" + data[bad:])
    with pytest.raises(UserError) as err:
        read([path])
    assert err.value.one_line() == (f"{path.resolve()}: cannot decode b'\\xff' as GB18030 — fix the file, or convert "
                                    "it to UTF-8 (iconv -c drops what does not decode)")


def test_a_json_array_after_more_than_4_kib_of_blank_lines_is_still_an_array(tmp_path):
    path = tmp_path / "spaced.json"
    path.write_text("\r\n" * 3000 + json.dumps(["甲", "乙"], ensure_ascii=False), encoding="utf-8")
    texts, reader = read([path])
    assert texts == ["甲", "乙"] and reader.blocks[0].layout == "array"


def test_a_gbk_json_array_is_re_encoded_as_it_is_parsed_not_whole(tmp_path):
    from gpt2zh.corpus.compression import stream_position
    from gpt2zh.corpus.encoding import sniff_encoding
    from gpt2zh.corpus.json_array import array_elements

    documents = [f"第{i}篇：这是一篇用国标码保存的中文文章。" for i in range(20000)]  # 700 KB of GBK
    path = tmp_path / "gbk.json"
    path.write_bytes(json.dumps(documents, ensure_ascii=False).encode("gbk"))
    elements = array_elements(path, sniff_encoding(path))
    assert next(elements) == (0, documents[0])
    assert stream_position(path) < path.stat().st_size / 3  # 64 Ki characters re-encoded at a time
    assert list(elements) == list(enumerate(documents))[1:]


def test_the_stream_position_is_how_far_the_last_stream_on_a_file_has_read_and_0_when_closed(tmp_path):
    from gpt2zh.corpus.compression import open_bytes, stream_position

    path = tmp_path / "small.txt.gz"
    path.write_bytes(gzip.compress("一行文本\n".encode() * 50))
    assert stream_position(tmp_path / "never-opened.txt") == 0
    with open_bytes(path) as handle:
        assert handle.read(4) == "一行".encode()[:4]
        assert stream_position(path) == path.stat().st_size  # the first read took in the whole small file
    assert stream_position(path) == 0


def skippable_zst_frame(size: int) -> bytes:
    """A zstd skippable frame of `size` bytes in all (the seekable format and pzstd write such frames)."""
    return (0x184D2A50).to_bytes(4, "little") + (size - 8).to_bytes(4, "little") + bytes(size - 8)


def test_an_empty_zst_file_is_an_empty_file_not_a_damaged_one(tmp_path):
    from gpt2zh.corpus.compression import open_bytes
    from gpt2zh.corpus.encoding import sniff_encoding

    path = tmp_path / "empty.txt.zst"
    path.write_bytes(b"")
    with open_bytes(path) as handle:
        assert handle.read() == b""
    assert sniff_encoding(path) is None


def test_a_zst_file_is_decompressed_in_bounded_memory_past_a_frame_that_fills_a_whole_read(tmp_path):
    import tracemalloc

    from gpt2zh.corpus.compression import open_bytes

    data = random.Random(3).randbytes(12 << 20)  # incompressible: the .zst file is as large as its content
    path = tmp_path / "big.txt.zst"
    path.write_bytes(skippable_zst_frame(1 << 16) + zstandard.compress(data))  # the first frame is one whole read
    with open_bytes(path) as handle:
        tracemalloc.start()
        first = handle.read(1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rest = handle.read()
    assert first == data[: 1 << 20] and rest == data[1 << 20:]  # an empty read would be taken for the end
    assert peak < 6 << 20  # about a 1 MiB buffer and what fills it, not the 12 MiB file


def test_a_block_that_starts_inside_a_document_skips_it_however_far_back_its_first_line_starts(tmp_path, monkeypatch):
    """The line before a block's first byte is scanned backwards in 4 KiB steps to its start: a character there,
    even at byte 0 or several steps back, makes the block's first lines part of an earlier block's document."""
    short, long = tmp_path / "short.txt", tmp_path / "long.txt"
    short.write_text("a\nb\n\nc\n", encoding="utf-8")  # the block at byte 2 continues the document at byte 0
    filler, spaced = "b" * (4096 - len("甲\n\n".encode()) - 1), " " * 904 + "x" + " " * 5005
    long.write_text(f"甲\n\n{filler}\n{spaced}\n乙\n\n丙\n", encoding="utf-8")  # the x at byte 5000
    data = dict(document_boundary="blank-line", normalization="none")
    monkeypatch.setattr(formats, "BLOCK_BYTES", 2)
    assert read([short], **data)[0] == ["a\nb", "c"]
    monkeypatch.setattr(formats, "BLOCK_BYTES", 10_000)  # the second block starts in the spaces after x
    assert read([long], **data)[0] == ["甲", f"{filler}\n{spaced}\n乙", "丙"]


def test_the_bytes_before_a_json_error_are_counted_in_bounded_reads(tmp_path):
    import tracemalloc

    from gpt2zh.corpus.encoding import FileEncoding
    from gpt2zh.corpus.json_array import _utf8_length  # the error path's second pass, on a file too large to hold

    path = tmp_path / "big.json"
    path.write_bytes(("[" + '"中文",' * 1_000_000).encode())  # 11 MB
    tracemalloc.start()
    length = _utf8_length(path, FileEncoding("utf-8", "UTF-8", False), 3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert length == len('["中'.encode()) and peak < 1 << 20


def test_a_zst_file_cut_inside_a_frame_says_so(tmp_path):
    path = tmp_path / "cut.txt.zst"
    packed = zstandard.compress("\n".join(f"第{i}行：中文文本" for i in range(5000)).encode())
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UserError) as err:
        read([path])
    assert err.value.one_line() == (f"{path.resolve()}: cannot decompress (compressed file ended before the end of a "
                                    "zstd frame) — the file is truncated or damaged: download or compress it again "
                                    "(or remove it from --data-files)")
