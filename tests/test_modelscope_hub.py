"""pipeline/remote/modelscope.py:ModelScopeHub against tests/modelscope_server.py, in process and in seconds: the
commit a revision names, downloads at a pinned commit, the commit a several-batch upload ends on, and the SDK's
own habits kept out (its upload cache, its log handlers) (PITFALLS.md CN7–CN9)."""

import logging

import pytest

from gpt2zh.remote.modelscope import SDK_LOGGER, ModelScopeHub, _LastSdkError
from tests.modelscope_server import sdk_pointed_at_a_local_modelscope

TOKEN, USER = "ms-hub-token", "alice"


@pytest.fixture(params=[True, False], ids=["branches-with-commits", "branches-by-name"])
def ms(request, tmp_path, monkeypatch):
    with sdk_pointed_at_a_local_modelscope({TOKEN: USER}, tmp_path, monkeypatch, TOKEN,
                                           commit_ids_in_revisions=request.param) as server:
        yield server


def test_a_branch_or_tag_resolves_to_its_commit_and_files_come_from_that_commit_after_the_branch_moves(ms, tmp_path):
    first = ms.add_dataset(f"{USER}/corpus", {"a/one.txt": b"v1", "a/sub/two.txt": b"2", "b.txt": b"b"})
    ms.add_tag(f"{USER}/corpus", "v1", kind="dataset")
    hub = ModelScopeHub()
    assert hub.resolve(f"{USER}/corpus", "dataset", "master") == first
    second = ms.add_dataset(f"{USER}/corpus", {"a/one.txt": b"v2", "b.txt": b"b"})
    assert hub.resolve(f"{USER}/corpus", "dataset", "master") == second
    assert hub.resolve(f"{USER}/corpus", "dataset", "v1") == first

    listed = hub.list_files(f"{USER}/corpus", "dataset", first, "a")
    assert [(f.path, f.size) for f in listed] == [("a/one.txt", 2), ("a/sub/two.txt", 1)]  # files only, under a/
    assert (hub.download_file(f"{USER}/corpus", "dataset", first, "a/one.txt")).read_bytes() == b"v1"
    folder = hub.download(f"{USER}/corpus", "dataset", first, ["a/*"], tmp_path / "at-first")
    assert (folder / "a" / "one.txt").read_bytes() == b"v1" and (folder / "a" / "sub" / "two.txt").is_file()
    assert hub.is_cached(f"{USER}/corpus", "dataset", first, listed[0])
    assert not hub.is_cached(f"{USER}/corpus", "dataset", second, listed[0])


def test_a_folder_uploaded_in_several_commits_reports_the_last_and_needs_no_upload_cache(ms, tmp_path, monkeypatch):
    import modelscope_hub._upload as sdk_upload

    monkeypatch.setattr(sdk_upload, "UPLOAD_COMMIT_BATCH_MAX_OPERATIONS", 2)  # 5 files: 3 commits
    hub = ModelScopeHub()
    hub.create_repo(f"{USER}/model", private=True)
    folder = tmp_path / "upload"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.txt").write_text(str(i))
    commit = hub.upload_folder(f"{USER}/model", folder, "five files")
    assert commit.oid == ms.head(f"{USER}/model") and len(ms.commits(f"{USER}/model")) >= 4  # + the repo's first
    hub.delete_folder(f"{USER}/model", "", "empty it")
    assert not any(name.startswith("f") for name in ms.files_at(f"{USER}/model"))
    again = hub.upload_folder(f"{USER}/model", folder, "the same files again")  # the SDK's cache would skip them
    assert again.oid == ms.head(f"{USER}/model")
    assert {f"f{i}.txt" for i in range(5)} <= set(ms.files_at(f"{USER}/model"))
    assert not (folder / ".ms_upload_cache").exists()


def test_the_sdks_log_lines_are_kept_for_our_one_line_errors_not_printed(ms):
    hub = ModelScopeHub()
    hub.api  # noqa: B018 (the client is made on first use)
    logger = logging.getLogger(SDK_LOGGER)
    own = [h for h in logger.handlers if "pytest" not in type(h).__module__]  # pytest's capture may sit there too
    assert [type(h) for h in own] == [_LastSdkError] and logger.propagate is False  # the SDK's StreamHandler is gone
    logger.error("1 file(s) failed: HTTP 403 for %s", "model.safetensors")
    assert hub.sdk_detail() == "1 file(s) failed: HTTP 403 for model.safetensors"  # for the one-line error


def test_a_modelscope_push_refused_for_one_file_names_it_why_and_the_files_already_there(ms, tmp_path):
    """The SDK says which file failed and why only in its log: the report carries it, and finds the files already
    on ModelScope at the branch's head by their sha256 or blob id."""
    from gpt2zh.errors import UserError
    from gpt2zh.remote.upload import upload_with_retries

    hub = ModelScopeHub()
    hub.create_repo(f"{USER}/model", private=True)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 100)  # LFS
    upload_with_retries(hub, f"{USER}/model", folder, "first", retries=0, wait=0)
    (folder / "optimizer.safetensors").write_bytes(b"o" * 100)
    ms.fail("PUT", r".", 403, times=100)
    with pytest.raises(UserError) as raised:
        upload_with_retries(hub, f"{USER}/model", folder, "second", retries=2, wait=0)
    message = raised.value.message
    assert f"push to {USER}/model failed after 1 attempt(s): StorageError: " in message  # not worth retrying
    assert "(- optimizer.safetensors: PermissionDeniedError: [E3002] [403]" in message  # which file, and why
    assert message.endswith("; 2 of 3 files are on ModelScope (not uploaded: optimizer.safetensors)")


def test_a_modelscope_refusal_is_described_by_its_http_status():
    """ModelScope's errors carry the status themselves, not in a response as huggingface_hub's do."""
    from modelscope_hub.errors import RateLimitError

    from gpt2zh.remote.upload import describe

    assert describe(RateLimitError("Too many requests", status_code=429), ModelScopeHub()) == "HTTP 429"
