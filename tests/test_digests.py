"""A corpus file's content digest (pipeline/corpus/digests.py, PITFALLS.md RA1): read in chunks under one
progress bar when there is much to hash, and kept in a cache table that survives Chinese paths, other
locales and torn writes."""

import hashlib

import pytest

from gpt2zh import console
from gpt2zh.corpus import digests

VALID = "sha256:" + "a" * 64


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A new process (no memo) on a machine whose digest cache is in tmp_path, the clock standing still so
    that progress lines are exact."""
    monkeypatch.setattr(digests, "_memo", {})
    monkeypatch.setenv("GPT2ZH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(console, "monotonic", lambda: 1000.0)
    return tmp_path


def _sha(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_cache_of_chinese_paths_is_utf_8_and_read_back_whatever_the_locale(fresh, ascii_locale):
    corpus = fresh / "语料" / "新闻.txt"
    corpus.parent.mkdir()
    corpus.write_bytes("今天天气很好。\n".encode())
    key = digests._key(corpus)
    assert digests.content_digests([corpus]) == [_sha(corpus)]
    assert digests.cache_file().read_bytes() == f"{key}\t{_sha(corpus)}\n".encode()
    assert digests._read_cache() == {key: _sha(corpus)}  # the next process hashes nothing again


def test_a_cache_line_splits_at_its_last_tab_and_torn_lines_are_dropped(fresh):
    """A path may hold a tab; a write torn just after the tab or inside the digest loses only that line."""
    table = digests.cache_file()
    table.parent.mkdir(parents=True)
    table.write_text(f"/corpus/a\tb.txt|3|1|2|4\t{VALID}\n/corpus/c.txt|3|1|2|5\t\n/corpus/d.txt|3|1|2|6\t"
                     f"{VALID[:20]}", encoding="utf-8")
    assert digests._read_cache() == {"/corpus/a\tb.txt|3|1|2|4": VALID}


def test_hashing_much_shows_one_bar_over_the_files_not_yet_hashed_from_show_progress_bytes_on(
        fresh, monkeypatch, capsys):
    cached, first, second = (fresh / name for name in ("cached.txt", "first.txt", "second.txt"))
    cached.write_bytes("已经算过的语料\n".encode())  # 22 bytes
    first.write_bytes("第一份\n".encode())  # 10 bytes
    second.write_bytes("第二份语料\n".encode())  # 16 bytes
    monkeypatch.setattr(digests, "SHOW_PROGRESS_BYTES", 26)  # 256 MB in a real run
    assert digests.content_digests([cached]) == [_sha(cached)]
    assert capsys.readouterr().err == ""  # 22 bytes: below the threshold, no bar
    paths = [cached, first, second]
    assert digests.content_digests(paths) == [_sha(path) for path in paths]
    # 10 + 16 bytes, exactly the threshold; the file hashed before counts neither in the bytes nor the files.
    assert capsys.readouterr().err == "hashing 2 corpus file(s): 100 % (26.0 of 26.0B), 00:00 elapsed, 0.00B/s\n"


def test_a_large_file_is_read_chunk_by_chunk_each_moving_the_bar(fresh, monkeypatch, capsys):
    """A 14 GB corpus file is never read whole into memory, and its bar moves while it is hashed."""
    monkeypatch.setattr(digests, "CHUNK", 16)
    monkeypatch.setattr(digests, "SHOW_PROGRESS_BYTES", 1)
    monkeypatch.setattr(console, "LINE_EVERY_SECONDS", 0.0)  # a progress line at every update
    corpus = fresh / "big.txt"
    corpus.write_bytes(b"x" * 39 + b"\n")
    assert digests.content_digests([corpus]) == [_sha(corpus)]
    assert capsys.readouterr().err.splitlines() == [
        f"hashing 1 corpus file(s): {done}, 00:00 elapsed, 0.00B/s"
        for done in ("40 % (16.0 of 40.0B)", "80 % (32.0 of 40.0B)", "100 % (40.0 of 40.0B)")]
