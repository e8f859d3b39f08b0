"""pipeline/corpus/hub_files.py in this process, against tests/hub_server.py and tests/modelscope_server.py: the
files a hub path names, at the commit its revision names, and the one-line errors when it names none.

huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE into its constants at import; the `cache` fixture sets those
constants as the variables would have (tests/test_hub.py), and HfApi reads them again at each call. The same
behaviour through a fresh interpreter and the CLI is in tests/test_hub_datasets.py.
"""

import hashlib
import logging

import pytest

from gpt2zh.corpus.hub_files import HubFile, resolve_hub_files
from gpt2zh.errors import UserError
from tests.hub_server import SEEDED_LFS_SUFFIXES, LocalHub, git_hash, point_huggingface_hub_at
from tests.modelscope_server import sdk_pointed_at_a_local_modelscope

TOKEN, OWNER = "hf_owner_" + "t0k3n" * 6, "o"
CORPUS_SUFFIXES = (".txt", ".jsonl.gz", ".parquet")
TREE = {
    ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": b"# corpus\n",
    "data/train-00000.parquet": b"PAR1 parquet bytes",  # LFS: its id is the sha256
    "data/part-0.jsonl.gz": b"jsonl part 0",
    "data/extra/part-1.jsonl.gz": b"jsonl part 1, longer",
    "data/extra/notes.txt": "一行中文。\n".encode(),  # a regular file: its id is the git blob oid
    "data/extra/table.csv": b"text\nx\n",
    "data/.hidden/part-2.jsonl.gz": b"hidden",
}
CORPUS = ["data/extra/notes.txt", "data/extra/part-1.jsonl.gz", "data/part-0.jsonl.gz", "data/train-00000.parquet"]
FIX = "fix the path or glob after the repository name (`**` matches across folders; quote the pattern so the shell " \
      "leaves it alone)"
FORM = "datasets/<owner>/<name>[@<revision>]/<file, folder or glob>"


def is_corpus(path: str) -> bool:
    return path.endswith(CORPUS_SUFFIXES)


def content_id(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if path.endswith(SEEDED_LFS_SUFFIXES) else git_hash(data)


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: OWNER}) as server:
        yield server


@pytest.fixture
def cache(hub, tmp_path, monkeypatch):
    """HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_DISABLE_XET=1 as huggingface_hub's import would have read them."""
    from huggingface_hub import constants

    point_huggingface_hub_at(hub, monkeypatch, TOKEN, tmp_path / "hf-cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hf-cache"


@pytest.fixture
def commit(hub, cache) -> str:
    return hub.add_dataset(f"{OWNER}/n", TREE)


def expected(cache, commit: str, *paths: str, tree: dict = TREE) -> list[HubFile]:
    return [HubFile(cache / f"datasets--{OWNER}--n" / "snapshots" / commit / path,
                    f"hf://datasets/{OWNER}/n@{commit}/{path}", content_id(path, tree[path]), len(tree[path]))
            for path in paths]


def listings(hub) -> list[str]:
    """The tree requests since the last call: which folder was listed, at which revision."""
    found = [path for method, path in hub.state.requests if method == "GET" and "/tree/" in path]
    hub.state.requests.clear()
    return found


def one_line(pattern: str) -> str:
    with pytest.raises(UserError) as raised:
        resolve_hub_files(pattern, is_corpus)
    return raised.value.one_line()


def test_a_glob_resolves_to_the_cached_files_of_the_pinned_commit_and_a_second_run_downloads_none(hub, cache,
                                                                                                   commit, caplog):
    pattern = f"hf://datasets/{OWNER}/n/data/**"
    with caplog.at_level(logging.INFO, logger="gpt2zh"):
        first = resolve_hub_files(pattern, is_corpus)
        second = resolve_hub_files(pattern, is_corpus)
    assert first == second == expected(cache, commit, *CORPUS)
    assert [file.local_path.read_bytes() for file in first] == [TREE[path] for path in CORPUS]
    size = sum(len(TREE[path]) for path in CORPUS)
    summary = f"hf://datasets/{OWNER}/n@{commit}/data/**: 4 file(s), {size} B, "
    assert [record.getMessage() for record in caplog.records if record.name == "gpt2zh"] == [
        summary + "4 downloaded, 0 already in the HF cache", summary + "0 downloaded, 4 already in the HF cache"]


@pytest.mark.parametrize(("glob", "paths", "listed"), [
    ("data/*.parquet", ["data/train-00000.parquet"], "/data"),
    ("**/*.jsonl.gz", ["data/extra/part-1.jsonl.gz", "data/part-0.jsonl.gz"], ""),  # `**` spans folders, not .hidden
    ("data", CORPUS, ""),  # a folder stands for every file in it
    ("", CORPUS, ""),  # the whole repository
    ("**", CORPUS, ""),
    ("data/extra/notes.txt", ["data/extra/notes.txt"], "/data/extra"),
    ("data/*/*", ["data/extra/notes.txt", "data/extra/part-1.jsonl.gz"], "/data"),  # wildcards skip .hidden
    ("data/extra/*.[tj]*", ["data/extra/notes.txt", "data/extra/part-1.jsonl.gz"], "/data/extra"),
    ("data/.hidden/*", ["data/.hidden/part-2.jsonl.gz"], "/data/.hidden"),  # named outright, it is read
    ("data/.hidden", ["data/.hidden/part-2.jsonl.gz"], "/data"),
    ("*/extra/*.gz", ["data/extra/part-1.jsonl.gz"], ""),
])
def test_a_glob_matches_as_a_local_glob_and_only_the_folders_before_its_first_wildcard_are_listed(
        hub, cache, commit, glob, paths, listed):
    pattern = f"hf://datasets/{OWNER}/n/{glob}".rstrip("/")
    assert resolve_hub_files(pattern, is_corpus) == expected(cache, commit, *paths)
    assert listings(hub) == [f"/api/datasets/{OWNER}/n/tree/{commit}{listed}"]


def test_a_branch_a_tag_and_a_commit_sha_each_pin_what_is_listed_and_read(hub, cache, commit):
    dev_tree = {**TREE, "data/part-0.jsonl.gz": b"dev branch"}
    dev = hub.add_dataset(f"{OWNER}/n", dev_tree, revision="dev")
    hub.state.datasets[f"{OWNER}/n"].refs["v1.0"] = commit
    main = hub.add_dataset(f"{OWNER}/n", {**TREE, "data/part-0.jsonl.gz": b"newer main"})
    base, path = f"hf://datasets/{OWNER}/n", "data/part-0.jsonl.gz"
    assert resolve_hub_files(f"{base}@dev/{path}", is_corpus) == expected(cache, dev, path, tree=dev_tree)
    assert resolve_hub_files(f"{base}@v1.0/{path}", is_corpus) == expected(cache, commit, path)
    assert resolve_hub_files(f"{base}@{commit}/{path}", is_corpus) == expected(cache, commit, path)
    assert [file.url for file in resolve_hub_files(f"{base}/{path}", is_corpus)] == [f"{base}@{main}/{path}"]


def test_a_push_after_pinning_changes_nothing_that_is_listed_or_downloaded(hub, cache, commit):
    pushed = {**TREE, "data/part-0.jsonl.gz": b"pushed after pinning", "data/part-9.jsonl.gz": b"new file"}
    later = hub.push_after_pinning(f"{OWNER}/n", pushed)
    found = resolve_hub_files(f"hf://datasets/{OWNER}/n/**/*.jsonl.gz", is_corpus)
    assert hub.state.datasets[f"{OWNER}/n"].refs["main"] == later  # the push landed after the branch was pinned
    assert found == expected(cache, commit, "data/extra/part-1.jsonl.gz", "data/part-0.jsonl.gz")
    assert [file.local_path.read_bytes() for file in found] == [TREE["data/extra/part-1.jsonl.gz"],
                                                                TREE["data/part-0.jsonl.gz"]]


def test_a_file_cached_only_at_another_commit_with_other_bytes_counts_as_downloaded(hub, cache, commit, caplog):
    from huggingface_hub import hf_hub_download

    path = "data/part-0.jsonl.gz"
    main = hub.add_dataset(f"{OWNER}/n", {**TREE, path: b"newer main"})
    hf_hub_download(f"{OWNER}/n", path, repo_type="dataset", revision="main")  # as `hf download` leaves main
    with caplog.at_level(logging.INFO, logger="gpt2zh"):
        found = resolve_hub_files(f"hf://datasets/{OWNER}/n@{commit}/{path}", is_corpus)
    assert main != commit and found == expected(cache, commit, path)
    [summary] = [record.getMessage() for record in caplog.records if record.name == "gpt2zh"]
    assert summary.endswith(", 1 downloaded, 0 already in the HF cache")


def test_a_missing_repository_or_revision_is_one_line_naming_it_and_the_fix(hub, cache, commit):
    missing = f"hf://datasets/{OWNER}/missing/*.parquet"
    assert one_line(missing) == (
        f"--data-files {missing!r}: dataset {OWNER}/missing not found, or private and your token cannot read it — "
        f"check the name at {hub.url}/datasets/{OWNER}/missing; for a private dataset set HF_TOKEN or run "
        "`hf auth login`")
    nope = f"hf://datasets/{OWNER}/n@nope/*.parquet"
    assert one_line(nope) == (
        f"--data-files {nope!r}: dataset {OWNER}/n has no branch, tag or commit 'nope' — name an existing revision "
        "after '@' (default: main); write a '/' in a branch name as %2F")


def test_a_path_that_is_not_an_hf_dataset_path_is_refused_before_any_request(hub, cache):
    assert one_line("hf://o/n/data/train.txt") == (
        "--data-files 'hf://o/n/data/train.txt' names a model repository, but hf:// corpora come from dataset "
        f"repositories — write hf://{FORM}")
    assert one_line("hf://spaces/o/n/app.txt").startswith("--data-files 'hf://spaces/o/n/app.txt' names a space "
                                                          "repository, but hf:// corpora")
    malformed = one_line("hf://datasets/o")
    assert malformed.startswith("--data-files 'hf://datasets/o' is not a valid hf:// path (")
    assert malformed.endswith(f") — write hf://{FORM}")
    # no scheme: read as an hf:// path (the Hub is the default), so refused as one
    assert one_line("data/train.txt").startswith("--data-files 'data/train.txt' is not a valid hf:// path (")
    assert hub.state.requests == []


def test_no_match_in_a_folder_describes_the_whole_repository_listed_at_the_pinned_commit(hub, cache, commit):
    pattern = f"hf://datasets/{OWNER}/n/data/extra/*.parquet"
    assert one_line(pattern) == (
        f"--data-files {pattern!r}: in dataset {OWNER}/n@main, no file matches; the repository has 8 file(s), "
        f"4 of them corpus files (data/extra/notes.txt, data/extra/part-1.jsonl.gz, data/part-0.jsonl.gz, ...) "
        f"— {FIX}")
    tree = f"/api/datasets/{OWNER}/n/tree/{commit}"
    assert listings(hub) == [f"{tree}/data/extra", tree]


def test_matches_that_are_no_corpus_files_are_named_and_an_empty_repository_says_none(hub, cache):
    tables = {"a.csv": b"1", "b.csv": b"2", "c.csv": b"3"}
    hub.add_dataset(f"{OWNER}/tables", tables)
    assert one_line(f"hf://datasets/{OWNER}/tables/*.csv") == (
        f"--data-files 'hf://datasets/{OWNER}/tables/*.csv': in dataset {OWNER}/tables@main, 3 file(s) match but "
        f"none is a corpus file (a.csv, b.csv, c.csv) — {FIX}")
    assert one_line(f"hf://datasets/{OWNER}/tables@main/*.txt") == (
        f"--data-files 'hf://datasets/{OWNER}/tables@main/*.txt': in dataset {OWNER}/tables@main, no file matches; "
        f"the repository has 3 file(s), 0 of them corpus files (none) — {FIX}")


MS_TOKEN, MS_USER = "ms-hub-token", "alice"


@pytest.fixture
def ms(tmp_path, monkeypatch):
    with sdk_pointed_at_a_local_modelscope({MS_TOKEN: MS_USER}, tmp_path, monkeypatch, MS_TOKEN) as server:
        yield server


def test_an_ms_path_names_its_tag_or_master_and_a_glob_or_the_whole_repository(ms):
    first = ms.add_dataset(f"{MS_USER}/corpus", {"a/one.txt": b"v1", "a/sub/two.txt": b"22", "b.txt": b"b"})
    ms.add_tag(f"{MS_USER}/corpus", "v1", kind="dataset")
    second = ms.add_dataset(f"{MS_USER}/corpus", {"a/one.txt": b"v2!", "b.txt": b"b"})
    base = f"ms://datasets/{MS_USER}/corpus"
    tagged = resolve_hub_files(f"{base}@v1/a/*.txt", is_corpus)
    assert [(f.url, f.size, f.local_path.read_bytes()) for f in tagged] == [(f"{base}@{first}/a/one.txt", 2, b"v1")]
    whole = resolve_hub_files(base, is_corpus)
    assert [(f.url, f.size, f.local_path.read_bytes()) for f in whole] == [
        (f"{base}@{second}/a/one.txt", 3, b"v2!"), (f"{base}@{second}/b.txt", 1, b"b")]


def test_a_malformed_or_unmatched_ms_path_is_one_line(ms):
    ms.add_dataset(f"{MS_USER}/corpus", {"a/one.txt": b"v1", "b.txt": b"b"})
    assert one_line(f"ms://datasets/{MS_USER}") == (
        f"--data-files 'ms://datasets/{MS_USER}' is not a valid ms:// path — write ms://{FORM}")
    pattern = f"ms://datasets/{MS_USER}/corpus/a/*.parquet"
    assert one_line(pattern) == (
        f"--data-files {pattern!r}: in dataset {MS_USER}/corpus@master, no file matches; the repository has "
        f"2 file(s), 2 of them corpus files (a/one.txt, b.txt) — {FIX}")
