"""Cleaning one document and a batch: what each step changes, and the counts the stage summaries print."""

from gpt2zh.corpus.cleaning import CleaningCounts, TextCleaner

RESERVED = ("<|endoftext|>",)


def test_every_cleaning_step_is_counted_once_per_change_across_documents():
    documents = ["漢字\x07\x00", "臺灣\x07", "ＡＢ<|endoftext|>x<|endoftext|>", "１２\u2581\u2581",
                 "e，\u0301",  # normalised piece by piece into an equal text: not a change
                 "  ", "\x07", "好", "短"]
    cleaner = TextCleaner(RESERVED, chinese_script="simplified", min_chars=2)
    assert [cleaner.clean(text) for text in documents] == ["汉字", "台湾", "ABx", "12", "e，\u0301", "", "", "", ""]
    expected = CleaningCounts(documents_in=9, normalization_changed=2, script_converted=2, control_chars_removed=4,
                              special_strings_removed=2, space_markers_replaced=2, empty_dropped=2, short_dropped=2)
    assert cleaner.counts == expected
    batch = TextCleaner(RESERVED, chinese_script="simplified", min_chars=2)
    assert batch.clean_batch(documents) == ["汉字", "台湾", "ABx", "12", "e，\u0301"] and batch.counts == expected


def test_a_batch_is_cleaned_like_each_document_when_removing_a_control_character_joins_what_it_separated():
    # The batch scan decides which steps to skip; it must look at the text as it is once control characters are gone.
    for texts, cleaned in ((["e\x07\u0301"], ["\xe9"]), (["<|endof\x07text|>甲"], ["甲"])):
        one, many = TextCleaner(RESERVED), TextCleaner(RESERVED)
        assert [one.clean(text) for text in texts] == many.clean_batch(texts) == cleaned
        assert many.counts == one.counts
