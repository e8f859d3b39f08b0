"""hf://datasets/... corpus paths, resolved with the real huggingface_hub against tests/hub_server.py.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import, so every resolution runs in a
fresh interpreter with an isolated HF_HOME: exactly what a user's run sees, minus the internet.
"""

import glob
import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpt2zh.corpus.hub_files import is_hub_path
from tests.conftest import REPO
from tests.hub_server import LocalHub, git_hash

TOKEN = "hf_owner_" + "s3cr3t" * 4  # grep-able: must never appear in any output
OTHER_TOKEN = "hf_other_" + "pr1v4t3" * 4
OWNER, OTHER = "o", "someone"
CORPUS_SUFFIXES = tuple(suffix + codec for suffix in (".txt", ".jsonl", ".json", ".parquet")
                        for codec in ("", ".gz", ".bz2", ".xz", ".zst"))
TEXTS = ["今天天气很好。", "我们去公园散步吧。", "中文预训练语料。"]

RESOLVE = """
import json, logging, sys
from gpt2zh.corpus.hub_files import resolve_hub_files
from gpt2zh.errors import UserError

logging.basicConfig(level=logging.INFO, format="%(message)s")
suffixes = tuple(json.loads(sys.argv[1]))
outcomes = []
for pattern in sys.argv[2:]:
    try:
        found = resolve_hub_files(pattern, lambda path: path.endswith(suffixes))
        outcomes.append([{"local_path": str(f.local_path), "url": f.url, "blob_id": f.blob_id, "size": f.size}
                         for f in found])
    except UserError as err:
        outcomes.append(err.one_line())
print(json.dumps(outcomes))
"""


def parquet_bytes(texts: list[str]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buffer)
    return buffer.getvalue()


def jsonl_gz_bytes(texts: list[str]) -> bytes:
    lines = "".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in texts)
    return gzip.compress(lines.encode(), mtime=0)


REPO_FILES = {
    ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": b"---\nlanguage: zh\n---\n# corpus\n",
    "data/train-00000.parquet": parquet_bytes(TEXTS),
    "data/part-0.jsonl.gz": jsonl_gz_bytes(TEXTS[:2]),
    "data/extra/part-1.jsonl.gz": jsonl_gz_bytes(TEXTS[2:]),
    "data/extra/notes.txt": "一行中文。\n".encode(),
    "data/extra/table.csv": b"text\nx\n",
    "data/.hidden/part-2.jsonl.gz": jsonl_gz_bytes(["隐藏"]),
}


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: OWNER, OTHER_TOKEN: OTHER}) as server:
        yield server


@pytest.fixture
def commit(hub) -> str:
    return hub.add_dataset(f"{OWNER}/n", REPO_FILES)


def resolve(endpoint: str, home: Path, *patterns: str, token: str | None = None,
            offline: bool = False) -> tuple[list, subprocess.CompletedProcess]:
    """resolve_hub_files for each pattern in a fresh interpreter: a list of file dicts or one-line errors."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"})
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(CORPUS_SUFFIXES), *patterns], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result


def paths_in_repo(files: list[dict]) -> list[str]:
    return [entry["url"].split("@", 1)[1].split("/", 1)[1] for entry in files]


def local_glob(root: Path, pattern: str) -> list[str]:
    """What --data-files does with the same tree on disk: glob, walk matched folders, keep corpus files."""
    found = []
    for match in glob.glob(str(root / pattern) if pattern else str(root), recursive=True):
        if os.path.isdir(match):
            for folder, subfolders, names in os.walk(match):
                subfolders[:] = [name for name in subfolders if not name.startswith(".")]
                found += [os.path.join(folder, name) for name in names if not name.startswith(".")]
        else:
            found.append(match)
    return sorted({os.path.relpath(path, root) for path in found if path.endswith(CORPUS_SUFFIXES)})


def test_hub_paths_are_told_apart_from_local_paths():
    assert is_hub_path("hf://datasets/o/n/data/*.parquet")
    assert not is_hub_path("data/hf/train.txt") and not is_hub_path("/abs/hf://x")


def test_importing_the_module_imports_no_hf_library():
    code = ("import sys, gpt2zh.corpus.hub_files; from gpt2zh.hf_env import hf_modules_already_imported; "
            "print(hf_modules_already_imported())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_globs_resolve_to_cached_files_pinned_to_the_commit(hub, commit, tmp_path):
    home = tmp_path / "hf-home"
    (parquet, jsonl), result = resolve(hub.url, home, f"hf://datasets/{OWNER}/n/data/*.parquet",
                                       f"hf://datasets/{OWNER}/n/**/*.jsonl.gz")
    data = REPO_FILES["data/train-00000.parquet"]
    assert parquet == [{"local_path": parquet[0]["local_path"],
                        "url": f"hf://datasets/{OWNER}/n@{commit}/data/train-00000.parquet",
                        "blob_id": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    local = Path(parquet[0]["local_path"])
    assert local.is_relative_to(home / "hub") and local.read_bytes() == data
    assert pq.read_table(local)["text"].to_pylist() == TEXTS

    assert paths_in_repo(jsonl) == ["data/extra/part-1.jsonl.gz", "data/part-0.jsonl.gz"]  # `**` spans folders
    for entry in jsonl:
        path = entry["url"].split(f"@{commit}/", 1)[1]
        assert Path(entry["local_path"]).read_bytes() == REPO_FILES[path]
        assert entry["blob_id"] == hashlib.sha256(REPO_FILES[path]).hexdigest()  # .gz files live in LFS
    assert gzip.decompress(Path(jsonl[1]["local_path"]).read_bytes()).decode().count("\n") == 2
    assert f"hf://datasets/{OWNER}/n@{commit}/data/*.parquet: 1 file(s), " in result.stderr


def test_matching_follows_local_glob_semantics(hub, commit, tmp_path):
    tree = tmp_path / "tree"
    for path, data in REPO_FILES.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    patterns = ["data/*.parquet", "**/*.jsonl.gz", "data", "data/extra/notes.txt", "", "*/*", "data/**", "**",
                "data/extra/*.[tj]*", "data/.hidden/*"]
    outcomes, _ = resolve(hub.url, tmp_path / "hf-home",
                          *(f"hf://datasets/{OWNER}/n/{pattern}".rstrip("/") for pattern in patterns))
    for pattern, files in zip(patterns, outcomes, strict=True):
        assert paths_in_repo(files) == local_glob(tree, pattern), pattern
    notes = outcomes[patterns.index("data/extra/notes.txt")][0]
    assert notes["blob_id"] == git_hash(REPO_FILES["data/extra/notes.txt"])  # a regular file: its git blob oid


def test_a_branch_a_tag_and_a_commit_sha_pin_what_is_read(hub, commit, tmp_path):
    path = "data/part-0.jsonl.gz"
    dev = hub.add_dataset(f"{OWNER}/n", {**REPO_FILES, path: jsonl_gz_bytes(["开发分支"])}, revision="dev")
    hub.state.datasets[f"{OWNER}/n"].refs["v1.0"] = commit
    later = hub.add_dataset(f"{OWNER}/n", {**REPO_FILES, path: jsonl_gz_bytes(["新的提交"])})
    base = f"hf://datasets/{OWNER}/n"
    outcomes, _ = resolve(hub.url, tmp_path / "hf-home", f"{base}/{path}", f"{base}@dev/{path}",
                          f"{base}@v1.0/{path}", f"{base}@{commit}/{path}")
    expected = [(later, "新的提交"), (dev, "开发分支"), (commit, TEXTS[0]), (commit, TEXTS[0])]
    for (found,), (sha, text) in zip(outcomes, expected, strict=True):
        assert found["url"] == f"{base}@{sha}/{path}"
        assert text in gzip.decompress(Path(found["local_path"]).read_bytes()).decode()


def test_a_branch_pushed_to_after_pinning_is_listed_and_read_at_the_pinned_commit(hub, commit, tmp_path):
    """The listing names the commit the downloads are fetched at: listed at the branch, it would show a push that
    landed after pinning (a new file, a changed one, a deleted one) while the files came from the pinned commit."""
    pushed = {path: data for path, data in REPO_FILES.items() if path != "data/extra/part-1.jsonl.gz"}
    pushed.update({"data/part-0.jsonl.gz": jsonl_gz_bytes(["推送之后"]),
                   "data/part-9.jsonl.gz": jsonl_gz_bytes(["新文件"])})
    later = hub.push_after_pinning(f"{OWNER}/n", pushed)
    base, pattern = f"hf://datasets/{OWNER}/n", "**/*.jsonl.gz"
    outcomes, _ = resolve(hub.url, tmp_path / "hf-home", f"{base}/{pattern}", f"{base}@{commit}/{pattern}")
    assert hub.state.datasets[f"{OWNER}/n"].refs["main"] == later  # the push landed after the first pinning
    pinned = ["data/extra/part-1.jsonl.gz", "data/part-0.jsonl.gz"]
    expected = [(f"{base}@{commit}/{path}", hashlib.sha256(REPO_FILES[path]).hexdigest(), len(REPO_FILES[path]),
                 REPO_FILES[path]) for path in pinned]
    for files in outcomes:  # main pinned before the push; the pinned sha after it
        assert isinstance(files, list), files
        assert [(entry["url"], entry["blob_id"], entry["size"], Path(entry["local_path"]).read_bytes())
                for entry in files] == expected
    listings = [path for method, path in hub.state.requests if method == "GET" and "/tree/" in path]
    assert len(listings) == 2 and all(f"/tree/{commit}" in path for path in listings), listings


def test_url_encoded_and_special_ref_revisions_are_parsed_as_hf_file_system_does(hub, commit, tmp_path):
    converted = hub.add_dataset(f"{OWNER}/n", {"default/train/0000.parquet": parquet_bytes(TEXTS)},
                                revision="refs/convert/parquet")
    feature = hub.add_dataset(f"{OWNER}/n", REPO_FILES, revision="feature/x")
    base = f"hf://datasets/{OWNER}/n"
    (encoded,), (plain,), (branch,) = resolve(hub.url, tmp_path / "hf-home", f"{base}@refs%2Fconvert%2Fparquet/**",
                                              f"{base}@refs/convert/parquet/default/*/*.parquet",
                                              f"{base}@feature%2Fx/data/*.parquet")[0]
    assert encoded["url"] == plain["url"] == f"{base}@{converted}/default/train/0000.parquet"
    assert branch["url"] == f"{base}@{feature}/data/train-00000.parquet"


def test_a_second_resolution_downloads_nothing_and_a_new_commit_is_noticed(hub, commit, tmp_path):
    home, pattern = tmp_path / "hf-home", f"hf://datasets/{OWNER}/n/**/*.jsonl.gz"
    (first,), first_run = resolve(hub.url, home, pattern)
    assert "2 downloaded, 0 already in the HF cache" in first_run.stderr
    assert sum(method == "GET" and "/resolve/" in path for method, path in hub.state.requests) == 2

    hub.state.requests.clear()
    (second,), second_run = resolve(hub.url, home, pattern)
    assert second == first and "0 downloaded, 2 already in the HF cache" in second_run.stderr
    assert not [(method, path) for method, path in hub.state.requests if method == "GET" and "/resolve/" in path]

    later = hub.add_dataset(f"{OWNER}/n", {**REPO_FILES, "data/part-0.jsonl.gz": jsonl_gz_bytes(["新的"])})
    hub.state.requests.clear()
    (third,), third_run = resolve(hub.url, home, pattern)
    assert [path for method, path in hub.state.requests if method == "GET" and "/resolve/" in path] == [
        f"/datasets/{OWNER}/n/resolve/{later}/data/part-0.jsonl.gz"]
    assert [entry["url"] for entry in third] == [entry["url"].replace(commit, later) for entry in first]
    assert third[0]["blob_id"] == first[0]["blob_id"] and third[1]["blob_id"] != first[1]["blob_id"]
    assert "1 downloaded, 1 already in the HF cache" in third_run.stderr  # unchanged content is linked, not fetched


def test_bad_paths_are_one_line_errors_that_name_the_repository_and_the_fix(hub, commit, tmp_path):
    outcomes, result = resolve(hub.url, tmp_path / "hf-home", f"hf://datasets/{OWNER}/missing/*.parquet",
                               f"hf://datasets/{OWNER}/n@nope/*.parquet", f"hf://datasets/{OWNER}/n/*.parquet",
                               f"hf://datasets/{OWNER}/n/data/extra/*.csv", f"hf://{OWNER}/n/data/train.txt",
                               f"hf://spaces/{OWNER}/n/app.txt", "hf://datasets/o")
    missing, revision, nothing, not_corpus, model, space, malformed = outcomes
    assert f"dataset {OWNER}/missing not found, or private and your token cannot read it" in missing
    assert "HF_TOKEN" in missing and "hf auth login" in missing
    assert f"dataset {OWNER}/n has no branch, tag or commit 'nope'" in revision and "after '@'" in revision
    assert "no file matches; the repository has 8 file(s), 4 of them corpus files (data/extra/notes.txt, " in nothing
    assert "1 file(s) match but none is a corpus file (data/extra/table.csv)" in not_corpus
    assert "names a model repository, but hf:// corpora come from dataset repositories" in model
    assert "names a space repository" in space and "hf://datasets/<owner>/<name>" in space
    assert "is not a valid hf:// path" in malformed
    assert all(isinstance(outcome, str) and "\n" not in outcome for outcome in outcomes)
    assert not [path for _, path in hub.state.requests if "/models/" in path or "/spaces/" in path]


def test_a_private_or_gated_dataset_needs_a_token_that_may_read_it(hub, tmp_path):
    private = f"hf://datasets/{OWNER}/secret/*.txt"
    gated = f"hf://datasets/{OWNER}/gated/*.txt"
    hub.add_dataset(f"{OWNER}/secret", {"a.txt": "私有语料\n".encode()}, private=True)
    hub.add_dataset(f"{OWNER}/gated", {"a.txt": "门控语料\n".encode()}, gated=True)
    home = tmp_path / "hf-home"

    (anonymous,), _ = resolve(hub.url, home, private)
    assert f"dataset {OWNER}/secret not found, or private and your token cannot read it" in anonymous
    (no_access, gated_refused), other_run = resolve(hub.url, home, private, gated, token=OTHER_TOKEN)
    assert f"dataset {OWNER}/secret not found, or private" in no_access
    assert f"dataset {OWNER}/gated is gated" in gated_refused and f"{hub.url}/datasets/{OWNER}/gated" in gated_refused
    (rejected,), rejected_run = resolve(hub.url, home, private, token="hf_expired_" + "x" * 30)
    assert "the Hub rejected your Hugging Face token (HTTP 401)" in rejected
    (granted,), owner_run = resolve(hub.url, home, private, token=TOKEN)
    assert Path(granted[0]["local_path"]).read_text(encoding="utf-8") == "私有语料\n"  # huggingface_hub sent it

    for token, run in ((OTHER_TOKEN, other_run), ("hf_expired_" + "x" * 30, rejected_run), (TOKEN, owner_run)):
        assert token not in run.stdout + run.stderr
    assert not [path for path in home.rglob("*") if path.is_file() and TOKEN.encode() in path.read_bytes()]


def test_an_unreachable_hub_or_offline_mode_is_a_one_line_error(hub, commit, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (unreachable,), _ = resolve(closed, tmp_path / "hf-home", f"hf://datasets/{OWNER}/n/data/*.parquet")
    assert f"cannot reach the Hub at {closed} (ConnectError)" in unreachable and "HF_ENDPOINT" in unreachable

    (offline,), _ = resolve(hub.url, tmp_path / "hf-home", f"hf://datasets/{OWNER}/n/data/*.parquet", offline=True)
    assert "offline mode is on (HF_HUB_OFFLINE)" in offline and "unset HF_HUB_OFFLINE" in offline
    assert hub.state.requests == []


def test_stages_read_a_hub_dataset_and_fingerprint_it_by_commit_and_blob_not_mtime(hub, tmp_path, small_corpus):
    """Stages 1 and 2 through the real CLI on parquet + .jsonl.gz files of a Hub dataset repository."""
    documents = [line for line in small_corpus.read_text(encoding="utf-8").splitlines() if line][:1200]
    sha = hub.add_dataset(f"{OWNER}/news", {"data/train-00000.parquet": parquet_bytes(documents[:800]),
                                            "data/part-0.jsonl.gz": jsonl_gz_bytes(documents[800:])})
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf-home"))
    run_dir = tmp_path / "run"
    flags = ["--run-dir", str(run_dir), "--data-files", f"hf://datasets/{OWNER}/news/data/*.parquet",
             f"hf://datasets/{OWNER}/news/**/*.jsonl.gz", "--tokenizer-vocab-size", "3000",
             "--tokenizer-character-coverage", "0.995", "--data-block-size", "64", "--model-n-positions", "64"]
    for stage in ("train-tokenizer", "tokenize"):
        result = subprocess.run([sys.executable, "-m", "gpt2zh", stage, *flags], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    stats = json.loads((run_dir / "dataset" / "stats.json").read_text(encoding="utf-8"))
    reading = stats["reading"]
    kept = reading["train"]["documents"] + reading["validation"]["documents"]
    assert kept + reading["cleaning"]["duplicates_dropped"] == len(documents)  # the demo config dedupes
    sources = json.loads((run_dir / "tokenizer" / "manifest.json").read_text(encoding="utf-8"))["inputs"]["sources"]
    assert [source[0] for source in sources] == [f"hf://datasets/{OWNER}/news@{sha}/data/train-00000.parquet",
                                                 f"hf://datasets/{OWNER}/news@{sha}/data/part-0.jsonl.gz"]
    assert all(len(source[1]) == 64 for source in sources)  # LFS sha256 blob ids, no local path or mtime
    cached = list((tmp_path / "hf-home").rglob("*.parquet"))
    assert cached, "the parquet file is not in the HF cache: its mtime would not be changed"
    for path in cached:
        os.utime(path, (1, 1))  # a new mtime in the cache is not a new corpus
    again = subprocess.run([sys.executable, "-m", "gpt2zh", "tokenize", *flags], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "is up to date" in again.stderr, again.stderr


@pytest.mark.parametrize("stage", ["train-tokenizer", "tokenize"])
def test_a_hub_path_that_does_not_exist_is_one_line_and_leaves_finished_stages_untouched(hub, tmp_path,
                                                                                          trainable_run, stage):
    from tests.conftest import TINY_DATA, copy_run, tree_checksums

    run_dir = copy_run(trainable_run, tmp_path)
    before = tree_checksums(run_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run([sys.executable, "-m", "gpt2zh", stage, "--run-dir", str(run_dir), "--force",
                             "--data-files", "hf://datasets/nobody/missing/*.txt", *TINY_DATA],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "hf://datasets/nobody/missing/*.txt" in errors[0] and "not found" in errors[0]
    assert tree_checksums(run_dir) == before
