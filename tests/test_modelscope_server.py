"""The real ModelScope SDK (modelscope 1.40 / modelscope_hub 0.5) driven against tests/modelscope_server.py."""

import hashlib
import os
import re

import pytest
import requests
from modelscope_hub import HubApi, set_default_config
from modelscope_hub.errors import (
    AlreadyExistsError,
    AuthenticationError,
    NotExistError,
    PermissionDeniedError,
)

from tests.modelscope_server import DROP, LocalModelScope

TOKENS = {"ms-alice": "alice", "ms-alice-read": {"user": "alice", "read_only": True}, "ms-bob": "bob"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with LocalModelScope(TOKENS) as server:
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
        monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))  # login, session id: never ~/.modelscope
        monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
        monkeypatch.setenv("MODELSCOPE_DOWNLOAD_INTRA_CLOUD", "false")
        monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
        set_default_config(None)  # the SDK keeps the first config (endpoint, token, dirs) for the whole process
        try:
            yield server
        finally:
            set_default_config(None)


def api(token="ms-alice") -> HubApi:
    return HubApi(token=token)


def write_tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_whoami_names_the_token_owner_and_a_wrong_token_is_an_authentication_error(hub, tmp_path, monkeypatch):
    assert api().whoami().username == "alice"
    with pytest.raises(AuthenticationError):
        api("ms-wrong").whoami()
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-bob")
    set_default_config(None)
    assert HubApi().whoami().username == "bob"

    with pytest.raises(AuthenticationError):
        HubApi().login("ms-wrong")
    assert not (tmp_path / "ms-home" / "credentials" / "cookies").exists()  # a refused login stores nothing
    assert HubApi().login("ms-alice-read").username == "alice"  # a read token logs in with reduced rights
    assert (tmp_path / "ms-home" / "credentials" / "cookies").exists()  # login() persists the token


def test_create_repo_refuses_what_the_token_may_not_write(hub):
    info = api().create_repo("alice/tiny", "model", visibility="private")
    assert info.repo_id == "alice/tiny"
    with pytest.raises(AlreadyExistsError):
        api().create_repo("alice/tiny", "model")
    with pytest.raises(PermissionDeniedError):
        api().create_repo("bob/not-yours", "model")
    with pytest.raises(PermissionDeniedError):
        api("ms-alice-read").create_repo("alice/read-only", "model")
    with pytest.raises(AuthenticationError):
        api("ms-wrong").create_repo("alice/wrong-token", "dataset")
    assert api().create_repo("alice/data", "dataset").repo_id == "alice/data"  # the multipart form endpoint


def test_uploaded_folder_downloads_byte_identical_at_its_commit(hub, tmp_path, monkeypatch):
    from modelscope.hub.snapshot_download import snapshot_download

    files = {"config.json": b'{"n_layer": 2}', "tokenizer/vocab.txt": "你好\n世界\n".encode(),
             "model.safetensors": os.urandom(3000), "notes.txt": os.urandom(70 * 1024)}  # LFS by suffix, by size
    api().create_repo("alice/tiny", "model", visibility="private")
    result = api().upload_folder("alice/tiny", "model", write_tree(tmp_path / "out", files),
                                 commit_message="step 1", use_cache=False, disable_tqdm=True)

    commit = result["oid"]  # one batch: one dict, Data.oid of the commit answer
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit == hub.head("alice/tiny")
    branches = {b["Revision"]: b for b in api().list_repo_revisions("alice/tiny", "model")}
    assert branches["master"]["CommitId"] == commit
    uploads = [path for method, path, _ in hub.requests if method == "PUT"]
    assert sorted(uploads) == sorted(f"/lfs-upload/{hashlib.sha256(files[p]).hexdigest()}"
                                     for p in ("model.safetensors", "notes.txt"))
    listed = {f.path: f for f in api().list_repo_files("alice/tiny", "model", revision=commit) if f.type != "tree"}
    assert listed["model.safetensors"].sha256 == hashlib.sha256(files["model.safetensors"]).hexdigest()

    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-alice")  # snapshot_download takes the token from the env
    set_default_config(None)
    local = snapshot_download("alice/tiny", revision=commit, local_dir=str(tmp_path / "got"),
                              allow_patterns=list(files))
    one = api().download_file("alice/tiny", "model", "tokenizer/vocab.txt", revision=commit,
                              cache_dir=tmp_path / "one")
    assert read_tree(tmp_path / "got") == files and local == str(tmp_path / "got")
    assert one.read_bytes() == files["tokenizer/vocab.txt"] and commit in str(one)  # cache keyed by the revision


def test_an_old_commit_still_downloads_old_bytes_after_a_sync_upload(hub, tmp_path):
    first = {"config.json": b"{}", "model.safetensors": b"old weights", "stale.txt": b"goes away"}
    second = {"config.json": b"{}", "model.safetensors": b"new weights"}
    api().create_repo("alice/tiny", "model")
    old = api().upload_folder("alice/tiny", "model", write_tree(tmp_path / "a", first), use_cache=False,
                              disable_tqdm=True)["oid"]
    commits = api().upload_folder("alice/tiny", "model", write_tree(tmp_path / "b", second), use_cache=False,
                                  disable_tqdm=True, sync_remote_repo=True)
    # the upload commit, then a second commit deleting what is not local (here also the repo's .gitattributes)
    assert isinstance(commits, list) and len(commits) == 2 and commits[-1]["oid"] == hub.head("alice/tiny")
    assert hub.files_at("alice/tiny") == second

    api().download_repo("alice/tiny", "model", revision=old, local_dir=tmp_path / "old")
    assert read_tree(tmp_path / "old")["model.safetensors"] == b"old weights"
    assert read_tree(tmp_path / "old")["stale.txt"] == b"goes away"
    api().delete_files("alice/tiny", "model", ["config.json"], commit_message="drop config")
    assert hub.files_at("alice/tiny") == {"model.safetensors": b"new weights"}
    assert len(hub.commits("alice/tiny")) == 5  # initial, upload, sync delete, delete_files and the first upload


def test_dataset_snapshot_download_pins_a_commit_and_filters_by_pattern(hub, tmp_path):
    from modelscope.hub.snapshot_download import dataset_snapshot_download

    pinned = hub.add_dataset("corpora/zh-wiki", {"README.md": b"# wiki", "data/train-0.jsonl": b'{"t": "old"}\n',
                                                 "data/train-1.jsonl": b'{"t": "x"}\n', "extra/skip.bin": b"\0"})
    hub.add_dataset("corpora/zh-wiki", {"README.md": b"# wiki", "data/train-0.jsonl": b'{"t": "new"}\n'})
    path = dataset_snapshot_download("corpora/zh-wiki", revision=pinned, allow_patterns=["data/*.jsonl"],
                                     cache_dir=str(tmp_path / "cache"))
    assert path.endswith(f"datasets/corpora--zh-wiki/snapshots/{pinned}")
    assert read_tree(tmp_path / "cache" / "datasets" / "corpora--zh-wiki" / "snapshots" / pinned) == {
        "data/train-0.jsonl": b'{"t": "old"}\n', "data/train-1.jsonl": b'{"t": "x"}\n'}
    latest = api(None).download_file("corpora/zh-wiki", "dataset", "data/train-0.jsonl", local_dir=tmp_path / "l")
    assert latest.read_bytes() == b'{"t": "new"}\n'


def test_missing_repo_revision_file_and_bad_tokens_raise_the_sdk_exceptions(hub, tmp_path):
    from modelscope.hub.snapshot_download import snapshot_download

    hub.add_model("alice/secret", {"config.json": b"{}"}, private=True)
    hub.add_model("alice/open", {"config.json": b"{}"})
    with pytest.raises(NotExistError):
        api().download_repo("alice/nothing-here", "model", local_dir=tmp_path / "a")
    with pytest.raises(NotExistError):
        api().download_repo("alice/open", "model", revision="no-such-branch", local_dir=tmp_path / "b")
    with pytest.raises(NotExistError):
        api().download_file("alice/open", "model", "missing.bin", local_dir=tmp_path / "c")
    with pytest.raises(AuthenticationError):
        api("ms-wrong").list_repo_files("alice/secret", "model")
    with pytest.raises(AuthenticationError):
        api("").download_repo("alice/secret", "model", local_dir=tmp_path / "d")  # no token at all
    with pytest.raises(PermissionDeniedError):
        api("ms-bob").download_file("alice/secret", "model", "config.json", local_dir=tmp_path / "e")
    with pytest.raises(requests.HTTPError):  # the legacy wrapper turns them into requests' HTTPError
        snapshot_download("alice/nothing-here", local_dir=str(tmp_path / "f"))


def test_a_failed_commit_answer_is_retried_and_a_lost_answer_can_double_commit(hub, tmp_path):
    api().create_repo("alice/tiny", "model")
    hub.fail("POST", r"/commit/master$", 503)
    api().upload_file("alice/tiny", "model", b"one", "a.txt")
    assert len([p for m, p, _ in hub.requests if m == "POST" and p.endswith("/commit/master")]) == 2
    assert hub.files_at("alice/tiny")["a.txt"] == b"one"

    hub.fail("POST", r"/commit/master$", DROP, after=True)  # the commit lands, its answer is lost
    api().upload_file("alice/tiny", "model", b"two", "b.txt")
    assert len(hub.commits("alice/tiny")) == 4  # initial, a.txt, b.txt twice: the SDK retried a landed commit
