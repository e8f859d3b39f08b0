"""One normalisation rule for the corpus and for prompts: Chinese punctuation stays full-width."""

import random
import unicodedata

import pytest
from transformers import AutoTokenizer

from gpt2zh.corpus.cleaning import TextCleaner
from gpt2zh.corpus.normalization import (
    is_stable_zh,
    kept_by_zh_rule,
    normalize_zh,
    normalizer_for,
    stability_check_for,
    tokenizers_normalizer,
    zh_kept_characters,
)

BMP = [chr(cp) for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF]
CHINESE_PUNCTUATION = "，。！？：；、（）“”‘’《》【】…—～「」『』〈〉〔〕·￥　"


@pytest.fixture(scope="module")
def saved_normalizer(trained_run):
    """The normalizer of the tokenizer stage 1 saved (default settings: zh)."""
    return AutoTokenizer.from_pretrained(str(trained_run / "tokenizer")).backend_tokenizer.normalizer


def mixed_strings(count: int, seed: int = 0) -> list[str]:
    """Strings mixing what can interact under NFKC: kept punctuation, combining marks, compatibility
    forms, Hangul jamo, full-width letters, CJK, ASCII and noncharacters."""
    pool = (zh_kept_characters() + "\u0300\u0301\u0308\u0327\u0323\u093c\u3099\u309a" + "ﬁ①⑴㈠㎡⼀ｶﾞ｡ＡＺａｚ０９"
            + "\u1100\u1161\u11a8가" + "中文汉字e" + "ab ,.!?" + "\ufdd0\ufdef\ufffe" + "\u2581\u3000" + "㋿ꟲ")
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def test_the_kept_ranges_are_exactly_what_the_zh_rule_selects():
    everything = (chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    assert "".join(c for c in everything if kept_by_zh_rule(c)) == zh_kept_characters()


def test_zh_keeps_chinese_punctuation_and_folds_full_width_letters_and_digits():
    assert normalize_zh("你好，世界！（测试）：；？") == "你好，世界！（测试）：；？"
    assert normalize_zh(CHINESE_PUNCTUATION) == CHINESE_PUNCTUATION
    assert normalize_zh("１９９８年ＡＢＣａｂｃ") == "1998年ABCabc"
    assert normalize_zh("⼀ﬁ｡") == "一fi。"  # compatibility forms that are not punctuation fold as NFKC folds them
    assert normalize_zh("e\u0301，\u0301") == "é，\u0301"  # nothing composes across a kept character
    assert all(normalize_zh(f"文{chr(cp)}字") == "文字" for cp in range(0xFDD0, 0xFDF0))  # never text
    assert unicodedata.normalize("NFKC", "你好，世界！") == "你好,世界!"  # what plain NFKC would have done


def test_nfkc_and_none_modes_do_what_they_say():
    assert normalizer_for("nfkc")("你好，世界！１２３") == "你好,世界!123"
    assert normalizer_for("none")("你好，世界！１２３") == "你好，世界！１２３"


@pytest.mark.parametrize("mode", ["zh", "nfkc", "none"])
def test_the_tokenizer_normalizer_agrees_with_cleaning_on_every_bmp_code_point(mode, saved_normalizer):
    theirs = saved_normalizer if mode == "zh" else tokenizers_normalizer(mode)
    ours = normalizer_for(mode)
    differing = [f"U+{ord(c):04X}" for c in BMP if theirs.normalize_str(c) != ours(c)]
    assert differing == [], f"{len(differing)} code points differ, first {differing[:10]}"


@pytest.mark.parametrize("mode", ["zh", "nfkc"])
def test_the_tokenizer_normalizer_agrees_with_cleaning_on_mixed_strings(mode, saved_normalizer):
    theirs = saved_normalizer if mode == "zh" else tokenizers_normalizer(mode)
    ours = normalizer_for(mode)
    for text in mixed_strings(3000):
        assert theirs.normalize_str(text) == ours(text), repr(text)


def test_cleaned_text_is_a_fixed_point_of_the_rule():
    cleaner = TextCleaner(("<|endoftext|>",))
    removed = ["\x07", "\x00", "<|endoftext|>", "\ufeff"]  # what cleaning takes out between two characters
    rng = random.Random(9)
    pieces = [piece + rng.choice(removed) for piece in mixed_strings(4000, seed=1)]
    texts = ["".join(rng.sample(pieces, 3)) for _ in range(2000)] + ["e<|endoftext|>\u0301", "\u1100\x00\u1161"]
    for text in texts:
        cleaned = cleaner.clean(text)
        assert normalize_zh(cleaned) == cleaned, repr(text)
    assert cleaner.clean("e\x07\u0301") == "\xe9" and cleaner.clean("e<|endoftext|>\u0301") == "\xe9"
    assert cleaner.clean("\u1100\x00\u1161") == "가"


def test_full_width_punctuation_round_trips_through_the_saved_tokenizer(trained_run):
    tok = AutoTokenizer.from_pretrained(str(trained_run / "tokenizer"))
    cleaner = TextCleaner(("<|endoftext|>", "<|pad|>", "<unk>"))
    chinese = ["你好，世界！", "他说：“今天（星期一）下雨吗？”……", "《红楼梦》第一回【注】～",
               CHINESE_PUNCTUATION.strip()]
    for text in [*chinese, *mixed_strings(300, seed=2)]:
        cleaned = cleaner.clean(text)
        if cleaned:
            assert tok.decode(tok(cleaned)["input_ids"]) == cleaned, repr(cleaned)


@pytest.mark.parametrize("mode", ["zh", "nfkc", "none"])
def test_the_batch_stability_check_never_calls_a_text_stable_that_the_rule_changes(mode):
    check, rule = stability_check_for(mode), normalizer_for(mode)
    texts = [*BMP, *mixed_strings(5000, seed=4), "\n".join(mixed_strings(200, seed=5))]
    wrongly_stable = [text for text in texts if check(text) and rule(text) != text]
    assert wrongly_stable == []
    if mode == "zh":  # and the fast scan does say "stable" for ordinary Chinese text
        assert check("你好，世界！（测试）……　“引号”\n第二行。") and not check("１９９８年")


def test_the_fast_scan_flags_every_kind_of_character_that_composes_reorders_or_folds():
    # Each text alone: one flagged character elsewhere would send the whole text to the exact check.
    changing = ["\u1100\u1161", "가\u11a8", "\u1100\u1175", "가\u11c2",  # Hangul jamo compose
                "中\u0317\u0334文",  # combining marks out of order
                "\u09c7\u09be", "\u0cc6\u0cd5",  # second halves of canonical compositions
                "\U0002F800", "\U0001D400"]  # beyond the BMP
    for text in changing:
        assert normalize_zh(text) != text and not is_stable_zh(text), ascii(text)


def test_cleaning_a_batch_equals_cleaning_each_document(demo_documents):
    from gpt2zh.corpus.cleaning import TextCleaner

    rng = random.Random(6)
    every_step = "ＡＢ\x07<|endoftext|>\u2581 x"
    noisy = mixed_strings(3000, seed=7) + ["  ", "短", "\ufdd0"]
    for texts in (demo_documents[:3000], noisy, demo_documents[:50] + noisy[:50]):
        for min_chars in (0, 2):
            for extra in ([], [every_step]):
                batch = rng.sample(texts, min(len(texts), 400)) + extra
                one = TextCleaner(("<|endoftext|>",), min_chars=min_chars)
                many = TextCleaner(("<|endoftext|>",), min_chars=min_chars)
                assert many.clean_batch(batch) == [c for c in map(one.clean, batch) if c]
                assert many.counts == one.counts
    cleaner = TextCleaner()
    assert cleaner.clean_batch(["中文", "  "]) == ["中文"] and cleaner.counts.empty_dropped == 1


def test_sorted_code_points_become_a_character_class_with_runs_written_as_ranges():
    from gpt2zh.corpus.normalization import _as_ranges  # the fast scan's class is built once and cached

    assert _as_ranges([]) == ""
    assert _as_ranges([0x41]) == "A"
    assert _as_ranges([0x2D, 0x41, 0x42, 0x43, 0x45, 0x5D, 0x5E, 0x4E00]) == "\\-A-CE\\]-\\^一"


def test_an_unknown_normalization_mode_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^unknown normalization 'nfd'$"):
        normalizer_for("nfd")


@pytest.mark.parametrize("mode", ["zh", "nfkc"])
def test_the_tokenizer_normalizer_catches_up_beyond_the_bmp_too(mode):
    # Characters newer than the tokenizers library's Unicode tables, outside the BMP the every-code-point test covers.
    theirs, ours = tokenizers_normalizer(mode), normalizer_for(mode)
    for text in ["\U0001fbf0\U0001fbf9", "\U00010781\U000107ba", "\U0001f16c，\u32ff"]:
        assert theirs.normalize_str(text) == ours(text) != text, ascii(text)
