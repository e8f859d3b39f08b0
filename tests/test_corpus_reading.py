"""The corpus reader on real Chinese text: encodings, bad bytes, long lines, formats, cleaning, split."""

import json
import logging
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpt2zh.corpus.formats as formats
from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.normalization import normalize_zh
from gpt2zh.corpus.sources import resolve_sources
from gpt2zh.errors import UserError
from gpt2zh.tokenizer.specials import SPECIAL_TOKENS

SIMPLIFIED = ["中共中央总书记、国家主席江泽民发表1998年新年讲话。", "这本书写得很好，推荐大家阅读！",
              "同胞们、朋友们、女士们、先生们："]
TRADITIONAL = ["這是一本關於臺灣歷史的書。", "我們今天在香港開會，討論經濟問題。", "請大家準時參加，謝謝。"]


def normalized(texts: list[str]) -> list[str]:
    return [normalize_zh(t) for t in texts]


def read(paths, **data) -> tuple[list[str], CorpusReader]:
    reader = CorpusReader(resolve_sources([str(p) for p in paths]), DataConfig(**data), SPECIAL_TOKENS)
    return [doc.text for doc in reader.documents()], reader


def test_txt_is_one_document_per_line_and_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(SIMPLIFIED[0] + "\n\n   \n" + SIMPLIFIED[1] + "\r\n" + SIMPLIFIED[2], encoding="utf-8")
    texts, reader = read([path])
    assert texts == normalized(SIMPLIFIED)
    assert reader.stats.cleaning.empty_dropped == 2


def test_utf8_bom_is_not_part_of_the_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "第一行\n第二行\n".encode())
    assert read([path])[0] == ["第一行", "第二行"]


@pytest.mark.parametrize("encoding, lines, label", [("gbk", SIMPLIFIED, "GB18030"), ("gb18030", SIMPLIFIED, "GB18030"),
                                                    ("big5", TRADITIONAL, "BIG5HKSCS")])
def test_chinese_legacy_encodings_are_detected_decoded_and_announced(tmp_path, caplog, encoding, lines, label):
    path = tmp_path / f"{encoding}.txt"
    path.write_bytes(("\n".join(lines * 3) + "\n").encode(encoding))
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        texts, reader = read([path])
    assert texts[:3] == normalized(lines)
    assert reader.stats.detected_encodings == {str(path.resolve()): label}
    assert any(str(path.resolve()) in r.message and label in r.message for r in caplog.records)


@pytest.mark.parametrize("line", ["你好，世界", "中文文本", "今天天气很好。"])
def test_a_short_gbk_file_is_read_as_chinese_not_as_another_encoding(tmp_path, line):
    """A few GBK bytes are valid Big5 and cp949 too; unrestricted detection picks those (mojibake)."""
    path = tmp_path / "short.txt"
    path.write_bytes((line + "\n").encode("gbk"))
    texts, reader = read([path])
    assert texts == normalized([line])
    assert reader.stats.detected_encodings == {str(path.resolve()): "GB18030"}


def test_utf16_with_bom_is_read_as_text(tmp_path):
    path = tmp_path / "notepad.txt"
    path.write_bytes("记事本保存的文本\r\n第二行\r\n".encode("utf-16"))
    assert read([path])[0] == ["记事本保存的文本", "第二行"]


def test_invalid_utf8_names_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    good = ("正常的一行文本，" * 30 + "\n").encode("utf-8")
    path.write_bytes(good * 5 + b"broken \xff\xfe here\n" + good)
    with pytest.raises(UserError) as err:
        read([path])
    offset = len(good) * 5 + len(b"broken ")
    assert f"bad.txt: line 6, byte {offset}: cannot decode b'\\xff'" in err.value.one_line()
    assert "--data-decode-errors" in err.value.one_line()


def test_decode_error_policies_replace_and_skip_are_counted(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(("好" * 200 + "\n").encode() + b"bad \xff line\n" + ("好" * 200 + "\n").encode())
    replaced, reader = read([path], decode_errors="replace")
    assert "bad \ufffd line" in replaced and reader.stats.lines.replaced_chars == 1
    skipped, reader = read([path], decode_errors="skip")
    assert len(skipped) == 2 and reader.stats.lines.undecodable_lines_skipped == 1


def test_binary_file_is_refused_by_name(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    with pytest.raises(UserError, match=r"image\.txt: looks binary"):
        read([path])


def test_empty_file_is_skipped_counted_and_announced(tmp_path, caplog):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "text.txt").write_text("有内容\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        texts, reader = read([tmp_path])
    assert texts == ["有内容"] and len(reader.stats.empty_files) == 1
    assert any("empty.txt: empty file, skipped" in r.message for r in caplog.records)


def test_stray_nul_bytes_are_removed_and_counted(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(("前\x00后" + "文" * 500 + "\n").encode("utf-8"))
    texts, reader = read([path])
    assert texts == ["前后" + "文" * 500] and reader.stats.cleaning.control_chars_removed == 1


@pytest.mark.parametrize("policy", ["split", "skip", "error"])
def test_long_line_policies(tmp_path, policy):
    path = tmp_path / "long.txt"
    path.write_text("短行\n" + "长" * 250 + "\n尾行\n", encoding="utf-8")
    if policy == "error":
        with pytest.raises(UserError, match=r"long\.txt: line 2 is longer than 100 characters"):
            read([path], max_line_chars=100, long_lines=policy)
        return
    texts, reader = read([path], max_line_chars=100, long_lines=policy)
    if policy == "split":
        assert texts == ["短行", "长" * 100, "长" * 100, "长" * 50, "尾行"]
        assert reader.stats.lines.long_lines_split == 1 and reader.stats.lines.long_line_pieces == 3
    else:
        assert texts == ["短行", "尾行"] and reader.stats.lines.long_lines_skipped == 1


def test_a_line_larger_than_the_read_chunk_is_streamed_in_pieces(tmp_path):
    path = tmp_path / "huge.txt"
    huge = "龘" * 1_200_000  # 3.6 MB of UTF-8 on one line: read 1 MiB at a time, multi-byte chars cut mid-way
    path.write_text("前\n" + huge + "\n后\n", encoding="utf-8")
    texts, reader = read([path], max_line_chars=500_000)
    assert texts[0] == "前" and texts[-1] == "后"
    assert [len(t) for t in texts[1:-1]] == [500_000, 500_000, 200_000]
    assert "".join(texts[1:-1]) == huge and reader.stats.lines.long_lines_split == 1


def test_jsonl_reads_the_configured_field_and_reports_bad_records(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [{"content": text, "id": i} for i, text in enumerate(SIMPLIFIED)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    assert len(read([path], text_field="content")[0]) == 3
    with pytest.raises(UserError, match=r"a\.jsonl: line 1: no field 'text' \(found: content, id\)"):
        read([path])
    path.write_text(json.dumps(records[0], ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"a\.jsonl: line 2: invalid JSON"):
        read([path], text_field="content")


def test_parquet_is_read_by_row_group_from_the_text_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": SIMPLIFIED * 4, "n": list(range(12))}), path, row_group_size=5)
    texts, reader = read([path])
    assert len(texts) == 12 and reader.stats.blocks_total == 3
    with pytest.raises(UserError, match=r"no column 'body' \(columns: text, n\)"):
        read([path], text_field="body")


def test_cleaning_folds_full_width_letters_keeps_chinese_punctuation_and_removes_what_breaks_tokenization(tmp_path):
    path = tmp_path / "dirty.txt"
    path.write_text("ＡＢＣ１２３\u3000全角，\x07铃<|endoftext|>注入\u2581标记！\n", encoding="utf-8")
    texts, reader = read([path])
    assert texts == ["ABC123\u3000全角，铃注入 标记！"]
    counts = reader.stats.cleaning
    assert (counts.normalization_changed, counts.control_chars_removed, counts.special_strings_removed,
            counts.space_markers_replaced) == (1, 1, 1, 1)
    assert read([path], normalization="nfkc")[0] == ["ABC123 全角,铃注入 标记!"]
    assert read([path], normalization="none")[0] == ["ＡＢＣ１２３\u3000全角，铃注入 标记！"]


def test_dedupe_drops_exact_duplicates_only_when_asked(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("\n".join([SIMPLIFIED[0], SIMPLIFIED[1], SIMPLIFIED[0]]) + "\n", encoding="utf-8")
    assert len(read([path])[0]) == 3
    texts, reader = read([path], dedupe=True)
    assert len(texts) == 2 and reader.stats.cleaning.duplicates_dropped == 1


def test_held_out_split_is_deterministic_order_independent_and_sized(demo_documents, tmp_path):
    forward, backward = tmp_path / "f.txt", tmp_path / "b.txt"
    docs = demo_documents[:20000]
    forward.write_text("\n".join(docs) + "\n", encoding="utf-8")
    backward.write_text("\n".join(reversed(docs)) + "\n", encoding="utf-8")

    def held_out(path):
        reader = CorpusReader(resolve_sources([str(path)]), DataConfig(validation_fraction=0.05))
        return {doc.text for doc in reader.documents() if doc.validation}

    first = held_out(forward)
    assert first == held_out(forward) == held_out(backward)
    assert 0.04 < len(first) / len(set(docs)) < 0.06


def test_blocks_partition_lines_exactly_in_any_order(tmp_path, monkeypatch, demo_documents):
    # Tiny blocks put boundaries inside lines, on newlines and inside multi-byte characters.
    monkeypatch.setattr(formats, "BLOCK_BYTES", 97)
    path = tmp_path / "blocks.txt"
    docs = demo_documents[:300]
    path.write_bytes(("\r\n".join(docs) + "\n").encode("utf-8"))
    reader = CorpusReader(resolve_sources([str(path)]), DataConfig())
    assert reader.stats.blocks_total > 100
    in_order = [doc.text for doc in reader.documents()]
    shuffled = [doc.text for doc in CorpusReader(resolve_sources([str(path)]), DataConfig()).sampled_documents(seed=7)]
    assert in_order == docs
    assert Counter(shuffled) == Counter(docs) and shuffled != docs


def test_demo_corpus_has_pos_tags_stripped(demo_documents):
    assert demo_documents[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片1张）"  # full-width kept
    assert not any("/n " in doc or "/v " in doc for doc in demo_documents[:5000])
    assert sum(map(len, demo_documents)) > 4_000_000


def test_the_vectorised_held_out_split_is_the_per_document_one():
    import hashlib

    from gpt2zh.corpus.cleaning import held_out_mask, is_validation

    digests = [hashlib.blake2b(str(i).encode(), digest_size=16).digest() for i in range(20000)]
    for fraction in (0.0, 0.01, 0.137, 0.5):
        mask = held_out_mask(b"".join(digests), fraction)
        assert mask.tolist() == [is_validation(d, fraction) for d in digests]
    edges = [((2**63).to_bytes(8, "big") + bytes(8), 0.5), (bytes(16), 0.0),
             ((18).to_bytes(8, "big") + bytes(8), 1e-18)]
    for digest, fraction in edges:  # the threshold itself, zero, and a fraction whose threshold is not an integer
        assert held_out_mask(digest, fraction).tolist() == [is_validation(digest, fraction)]


def test_the_one_read_fast_path_gives_the_line_readers_result(tmp_path, monkeypatch):
    path = tmp_path / "mixed.txt"
    path.write_bytes(("短行\n" + "x" * 3_000_000 + "\n尾行\r\n").encode())  # a line longer than a read chunk
    monkeypatch.setattr(formats, "BLOCK_BYTES", 1 << 16)
    texts, reader = read([path], max_line_chars=5_000_000)
    assert [len(t) for t in texts] == [2, 3_000_000, 2] and texts[-1] == "尾行"
    assert reader.stats.cleaning.control_chars_removed == 0  # the \r of CRLF went with the line end
