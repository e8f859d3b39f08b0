"""--data-files: files, directories and globs; every path problem is a one-line error up front."""

import pytest

from gpt2zh.corpus.sources import demo_sources, resolve_sources, sources_for
from gpt2zh.errors import UserError


def make(tmp_path, relative: str, text: str = "一行文本\n") -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_directory_is_walked_recursively_in_sorted_order_skipping_hidden_and_other_types(tmp_path):
    for name in ["b.txt", "a.jsonl", "sub/c.txt", ".hidden.txt", ".git/d.txt", "notes.md", "img.png"]:
        make(tmp_path, name)
    names = [s.path.relative_to(tmp_path).as_posix() for s in resolve_sources([str(tmp_path)])]
    assert names == ["a.jsonl", "b.txt", "sub/c.txt"]


def test_glob_file_and_duplicates_resolve_once(tmp_path):
    for name in ["x1.txt", "x2.txt", "y.jsonl"]:
        make(tmp_path, name)
    sources = resolve_sources([str(tmp_path / "x*.txt"), str(tmp_path / "x1.txt"), str(tmp_path / "y.jsonl")])
    assert [(s.path.name, s.format) for s in sources] == [("x1.txt", "txt"), ("x2.txt", "txt"), ("y.jsonl", "jsonl")]


def test_missing_path_names_it(tmp_path):
    with pytest.raises(UserError, match=r"--data-files: .*missing\.txt does not exist"):
        resolve_sources([str(tmp_path / "missing.txt")])


def test_glob_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no file matches"):
        resolve_sources([str(tmp_path / "*.txt")])


def test_directory_without_text_files_is_an_error(tmp_path):
    make(tmp_path, "only/readme.md")
    with pytest.raises(UserError, match=r"has no \.txt, \.jsonl, \.json, \.parquet files"):
        resolve_sources([str(tmp_path / "only")])


def test_unsupported_file_type_names_the_supported_ones(tmp_path):
    make(tmp_path, "corpus.csv")
    supported = r"supported: \.txt, \.jsonl, \.json, \.parquet; .* compressed"
    with pytest.raises(UserError, match=rf"unsupported file type \.csv.*{supported}"):
        resolve_sources([str(tmp_path / "corpus.csv")])


def test_no_data_files_means_the_embedded_demo_corpus():
    sources, description = sources_for([])
    assert [s.path.name for s in sources] == ["199801.txt", "pos.txt", "neg.txt"]
    assert sources == demo_sources() and "demo" in description
    assert sum(s.size for s in sources) > 15_000_000


def test_the_same_corpus_in_another_folder_is_the_same_data_and_an_edit_in_place_is_not(tmp_path, monkeypatch):
    """PITFALLS.md RA1: names below the corpus folder and contents, never paths or modification times."""
    import os

    monkeypatch.setenv("GPT2ZH_CACHE", str(tmp_path / "cache"))
    for machine in ("a", "b"):
        make(tmp_path / machine / "corpus", "news/part-1.txt", "今天天气很好。\n")
        make(tmp_path / machine / "corpus", "web/part-1.txt", "我们去公园。\n")
    os.utime(tmp_path / "b" / "corpus" / "news" / "part-1.txt", (1_000_000_000, 1_000_000_000))
    a, b = ([s.fingerprint() for s in resolve_sources([str(tmp_path / m / "corpus")])] for m in ("a", "b"))
    assert a == b and [entry[0] for entry in a] == ["news/part-1.txt", "web/part-1.txt"]
    edited = tmp_path / "b" / "corpus" / "web" / "part-1.txt"
    stat = edited.stat()
    edited.write_text("我们去商店。\n", encoding="utf-8")  # the same size, its mtime put back
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = [s.fingerprint() for s in resolve_sources([str(tmp_path / "b" / "corpus")])]
    assert changed[0] == a[0] and changed[1][:3] == a[1][:3] and changed[1][3] != a[1][3]


def test_every_byte_of_a_file_counts_in_its_digest_not_only_the_first_chunk(tmp_path, monkeypatch):
    from gpt2zh.corpus import digests

    monkeypatch.setenv("GPT2ZH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(digests, "CHUNK", 16)  # a 14 GB corpus is read in chunks: the last ones count too
    path = tmp_path / "corpus.txt"
    path.write_text("一" * 100 + "\n", encoding="utf-8")
    before = resolve_sources([str(path)])[0].fingerprint()[3]
    path.write_text("一" * 99 + "二\n", encoding="utf-8")  # the same size, a change near the end
    assert resolve_sources([str(path)])[0].fingerprint()[3] != before


def test_digests_are_cached_one_line_per_file_state_in_folders_made_as_needed(tmp_path, monkeypatch):
    import hashlib

    from gpt2zh.corpus import digests

    monkeypatch.setattr(digests, "_memo", {})
    cache = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("GPT2ZH_CACHE", str(cache))
    paths = [tmp_path / f"{name}.txt" for name in "abc"]
    for path in paths:
        path.write_text(f"{path.stem}：一行文本\n", encoding="utf-8")
    sha = {path: "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}
    a, b, c = paths
    assert digests.content_digests([a, b]) == [sha[a], sha[b]]
    table = cache / "file-digests.tsv"
    assert table.read_text(encoding="utf-8") == f"{digests._key(a)}\t{sha[a]}\n{digests._key(b)}\t{sha[b]}\n"
    # A new process (no memo) trusts the table for unchanged files and skips lines that are not digests.
    planted = "sha256:" + "0" * 64
    table.write_text(f"{digests._key(a)}\t{planted}\nno tab here\n{digests._key(b)}\tmd5:0\n", encoding="utf-8")
    monkeypatch.setattr(digests, "_memo", {})
    monkeypatch.setattr(digests, "CACHE_LIMIT", 2)  # the oldest entries go first
    assert digests.content_digests([a, b, c]) == [planted, sha[b], sha[c]]
    assert table.read_text(encoding="utf-8") == f"{digests._key(b)}\t{sha[b]}\n{digests._key(c)}\t{sha[c]}\n"


def test_the_digest_cache_lives_where_the_environment_says(tmp_path, monkeypatch):
    from gpt2zh.corpus.digests import cache_file

    monkeypatch.delenv("GPT2ZH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_file() == tmp_path / "home" / ".cache" / "gpt2zh" / "file-digests.tsv"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file() == tmp_path / "xdg" / "gpt2zh" / "file-digests.tsv"
    monkeypatch.setenv("GPT2ZH_CACHE", str(tmp_path / "own"))
    assert cache_file() == tmp_path / "own" / "file-digests.tsv"
