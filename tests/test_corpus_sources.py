"""--data-files: files, directories and globs; every path problem is a one-line error up front."""

import pytest

from pipeline.corpus.sources import demo_sources, resolve_sources, sources_for
from pipeline.errors import UserError


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
