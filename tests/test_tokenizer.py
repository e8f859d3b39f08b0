"""Stage 1 on real Chinese text: a SentencePiece model that plain AutoTokenizer loads and agrees with."""

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from gpt2zh.config.schema import TokenizerConfig
from gpt2zh.errors import UserError
from gpt2zh.tokenizer import hf_convert
from gpt2zh.tokenizer.hf_convert import convert, verify
from gpt2zh.tokenizer.sampling import SentenceReservoir, split_sentences
from gpt2zh.tokenizer.specials import END_OF_TEXT_ID, PAD_ID, UNK_ID
from gpt2zh.tokenizer.spm_train import train_sentencepiece


@pytest.fixture(scope="module")
def tokenizer_dir(trained_run) -> Path:
    return trained_run / "tokenizer"


@pytest.fixture(scope="module")
def held_out_lines(demo_documents) -> list[str]:
    return demo_documents[-1500:]  # the small corpus is a seeded sample; these are mostly unseen


def test_autotokenizer_loads_it_with_our_special_tokens(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert len(tok) == 4000
    ids = (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert ids == (UNK_ID, END_OF_TEXT_ID, END_OF_TEXT_ID, PAD_ID)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    expected = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "stats.json", "config.yaml",
                "manifest.json"}
    assert expected <= {p.name for p in tokenizer_dir.iterdir()}


def test_ids_match_sentencepiece_and_decode_round_trips_on_real_lines(tokenizer_dir, held_out_lines):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model"))
    hf_ids = tok(held_out_lines)["input_ids"]
    assert hf_ids == processor.encode(held_out_lines)  # no bos/eos added behind the user's back
    assert [tok.decode(ids) for ids in hf_ids] == held_out_lines


def test_unseen_characters_become_bytes_not_unk(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    text = "生僻字𠀀𪚥 and emoji 😀 plus  two spaces"
    ids = tok(text)["input_ids"]
    assert UNK_ID not in ids and tok.decode(ids) == text
    assert any(tok.convert_ids_to_tokens(i).startswith("<0x") for i in ids)


def test_stats_and_manifest_record_the_key_figures(tokenizer_dir):
    stats = json.loads((tokenizer_dir / "stats.json").read_text())
    quality = stats["quality"]
    assert quality["held_out"] is True and quality["unk_tokens"] == 0
    assert 1.0 < quality["chars_per_token"] < 3.0 and 0 <= quality["byte_fallback_rate"] < 0.05
    assert stats["sample"]["sentences_used"] > 5000 and stats["verified_lines"] >= 400
    manifest = json.loads((tokenizer_dir / "manifest.json").read_text())
    assert manifest["special_token_ids"] == {"unk": 0, "bos": 1, "eos": 1, "pad": 2}
    assert len(manifest["tokenizer_sha256"]) == 64


def test_over_long_sentences_are_split_not_dropped():
    text = "短句。" + "长" * 5000 + "!结尾"
    sentences, cut = split_sentences(text, max_bytes=4192)
    assert cut == 1 and all(len(s.encode("utf-8")) <= 4192 for s in sentences)
    assert "".join(sentences) == text


def test_reservoir_is_bounded_seeded_and_uniform():
    def sample(seed):
        reservoir = SentenceReservoir(capacity=1000, seed=seed)
        for i in range(20000):
            reservoir.add(str(i))
        return reservoir

    first = sample(1)
    assert len(first.items) == 1000 and first.seen == 20000 and first.items == sample(1).items
    late = sum(int(x) >= 10000 for x in first.items)
    assert 400 < late < 600  # the second half of the stream is not starved


def test_vocab_too_small_for_the_characters_is_a_clear_error(tmp_path, small_corpus):
    lines = small_corpus.read_text(encoding="utf-8").splitlines()
    with pytest.raises(UserError, match=r"--tokenizer-vocab-size 1000 is too small.*raise --tokenizer-vocab-size"):
        train_sentencepiece(lines, tmp_path / "t.model", TokenizerConfig(vocab_size=1000))


def test_vocab_too_large_for_the_corpus_is_a_clear_error(tmp_path):
    lines = ["今天天气很好", "我们去公园散步", "明天也许会下雨"] * 10
    with pytest.raises(UserError, match=r"too large for this corpus.*at most \d+ pieces"):
        train_sentencepiece(lines, tmp_path / "t.model", TokenizerConfig(vocab_size=400, character_coverage=1.0))


def test_missing_protobuf_is_named_before_conversion(tmp_path, monkeypatch):
    real_find_spec = hf_convert.importlib.util.find_spec
    monkeypatch.setattr(hf_convert.importlib.util, "find_spec",
                        lambda name, *a: None if name == "google.protobuf" else real_find_spec(name, *a))
    with pytest.raises(UserError, match="needs protobuf"):
        convert(tmp_path / "any.model", tmp_path, "zh")


def test_verification_catches_a_conversion_that_loses_spaces(tmp_path, tokenizer_dir, held_out_lines):
    broken = tmp_path / "broken"
    shutil.copytree(tokenizer_dir, broken)
    spec = json.loads((broken / "tokenizer.json").read_text(encoding="utf-8"))
    spec["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]}  # no ▁ -> " "
    (broken / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match=r"decode\(encode\(x\)\) != x"):
        verify(broken, broken / "tokenizer.model", held_out_lines[:50], "zh")
    assert verify(tokenizer_dir, tokenizer_dir / "tokenizer.model", held_out_lines[:50], "zh").vocab_size == 4000


def test_conversion_and_loading_emit_no_warnings(tmp_path, tokenizer_dir, capfd):
    # transformers 5 renamed arguments; a deprecation warning from one of our calls is a bug.
    import warnings

    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(tokenizer_dir / "tokenizer.model", tmp_path, "zh")
        verify(tmp_path, tmp_path / "tokenizer.model", ["中文测试 mixed text 123"], "zh")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_prompts_get_the_normalisation_the_training_text_got(tokenizer_dir):
    # Cleaning folded full-width digits and kept Chinese punctuation; a prompt must get the same tokens.
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert tok("你好，世界！１２３")["input_ids"] == tok("你好，世界！123")["input_ids"]
    assert tok("你好，世界！")["input_ids"] != tok("你好,世界!")["input_ids"]
    ids = tok("你好，世界！")["input_ids"]
    assert tok.decode(ids) == "你好，世界！"
    assert not any(t.startswith("<0x") for t in tok.convert_ids_to_tokens(ids)), "，！ learned as pieces"


def test_verification_probes_cover_full_width_punctuation_digits_and_the_ideographic_space():
    probes = "".join(hf_convert.PROBES)
    assert all(char in probes for char in "，！（）：；？…“”《》【】\u3000１Ａ")


def test_a_tokenizer_normalizer_that_disagrees_with_cleaning_is_refused_by_character(tmp_path, tokenizer_dir,
                                                                                      monkeypatch):
    from tokenizers import normalizers

    monkeypatch.setattr(hf_convert, "tokenizers_normalizer", lambda mode: normalizers.NFKC())  # plain NFKC
    convert(tokenizer_dir / "tokenizer.model", tmp_path, "zh")
    with pytest.raises(UserError, match=r"the tokenizer normalises '.' \(U\+[0-9A-F]{4}\) to '.+', cleaning to"):
        verify(tmp_path, tmp_path / "tokenizer.model", ["你好，世界！"], "zh")


def test_a_corpus_without_any_space_still_learns_the_space_piece_and_round_trips_spaces(tmp_path, small_corpus):
    # required_chars='▁': a corpus with no spaces would leave '▁' to byte fallback, and a space typed in a
    # prompt would decode as a literal '▁'
    lines = ["".join(line.split()) for line in small_corpus.read_text(encoding="utf-8").splitlines()]
    assert lines and not any(char.isspace() for line in lines for char in line)
    model = tmp_path / "nospace.model"
    train_sentencepiece([line for line in lines if line], model, TokenizerConfig(vocab_size=4000,
                                                                                character_coverage=0.995))
    processor = spm.SentencePieceProcessor(model_file=str(model))
    space = processor.piece_to_id("\u2581")
    assert space != processor.unk_id() and processor.id_to_piece(space) == "\u2581"
    assert not processor.is_byte(space)
    text = "今天 天气很好, 我们 去公园"
    ids = processor.encode(text)
    assert space in ids and processor.decode(ids) == text


def test_line_breaks_and_tabs_absent_from_a_sample_of_lines_are_still_pieces_that_round_trip_through_the_tokenizer(
        tokenizer_dir, held_out_lines):
    # (NU1) trained on one document per line, so no '\n' in its sample: required as a piece all the same
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / "tokenizer.model"))
    documents = ["\n".join(held_out_lines[i: i + 3]) for i in range(0, 300, 3)]
    documents += ["标题\n\n　　第一段。\n\t第二段！\n", "第一段\n第二段"]
    hf_ids = tok(documents)["input_ids"]
    assert hf_ids == processor.encode(documents)
    assert [tok.decode(ids) for ids in hf_ids] == documents
    pieces = {piece for ids in hf_ids for piece in tok.convert_ids_to_tokens(ids)}
    assert {"\n", "\t"} <= pieces and not {"<0x0A>", "<0x09>"} & pieces
    assert json.loads((tokenizer_dir / "manifest.json").read_text())["text_format"] == 2
