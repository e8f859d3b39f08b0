"""ModelScope as the second hub (PITFALLS.md CN6–CN9): corpora, pushes, `--model-init-from ms://` and resuming on a
new machine, with the real command line and the official SDK against tests/modelscope_server.py."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpt2zh import faults
from gpt2zh.remote.checkpoints import MARKER, POINTER
from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, assert_same_weights, copy_run, one_error_line, run_cli, wait_for
from tests.modelscope_server import LocalModelScope
from tests.test_model_init import BLOCKS, TRAIN, summary_of, validation_loss

TOKEN, USER = "ms-token-" + "s3cr3t" * 4, "alice"  # grep-able: must never reach a file or a log
MODEL = f"{USER}/gpt2-zh-tiny"


@pytest.fixture
def ms():
    # branches listed without their commit, as the real hub may list them: the head comes from the commits endpoint
    with LocalModelScope({TOKEN: USER}, commit_ids_in_revisions=False) as server:
        yield server


def ms_env(ms: LocalModelScope, home: Path, token: str | None = TOKEN, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELSCOPE_")}
    env.update({"MODELSCOPE_ENDPOINT": ms.url, "MODELSCOPE_HOME": str(home / "home"),
                "MODELSCOPE_CACHE": str(home / "cache"), "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",
                "HF_HOME": str(home / "hf"), **extra})
    if token is not None:
        env["MODELSCOPE_API_TOKEN"] = token
    return env


def seed_corpus(ms: LocalModelScope, corpus: Path, repo_id: str = f"{USER}/zh-corpus") -> str:
    """The small corpus as two .jsonl.gz shards (plus a README that is no corpus file); returns the commit."""
    lines = corpus.read_text(encoding="utf-8").splitlines()
    half = len(lines) // 2
    shards = {f"data/part-{i}.jsonl.gz": gzip.compress("".join(json.dumps({"text": line}, ensure_ascii=False) + "\n"
                                                               for line in part).encode("utf-8"), mtime=0)
              for i, part in enumerate((lines[:half], lines[half:]))}
    return ms.add_dataset(repo_id, {"README.md": b"# a corpus\n", **shards})


def assert_token_nowhere(result: subprocess.CompletedProcess, *folders: Path) -> None:
    assert TOKEN not in result.stdout + result.stderr
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), f"the token is in {path}"


@pytest.mark.slow
def test_a_run_reads_an_ms_corpus_pushes_to_modelscope_and_a_second_run_starts_from_what_it_pushed(
        ms, tmp_path, small_corpus):
    from modelscope.hub.snapshot_download import snapshot_download
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    corpus_commit = seed_corpus(ms, small_corpus)
    env, first = ms_env(ms, tmp_path / "machine"), tmp_path / "first"
    result = run_cli("run", "--run-dir", str(first), "--data-files", f"ms://datasets/{USER}/zh-corpus/data/*.jsonl.gz",
                     *TINY_DATA, *TINY_TRAIN, "--hub-provider", "modelscope", "--hub-repo-id", MODEL, env=env,
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sources = json.loads((first / "tokenizer" / "manifest.json").read_text())["inputs"]["sources"]
    assert [entry[0] for entry in sources] == [
        f"ms://datasets/{USER}/zh-corpus@{corpus_commit}/data/part-{i}.jsonl.gz" for i in (0, 1)]

    download = Path(snapshot_download(MODEL, endpoint=ms.url, token=TOKEN, cache_dir=str(tmp_path / "sdk-cache")))
    assert (download / "model.safetensors").read_bytes() == (first / "model" / "model.safetensors").read_bytes()
    card = (download / "README.md").read_text(encoding="utf-8")
    front = card.split("---")[1]
    assert "frameworks:\n- PyTorch" in front and "tasks:\n- text-generation" in front and "language: zh" in front
    assert f'model=snapshot_download("{MODEL}")' in card and "from modelscope import snapshot_download" in card
    assert f"ms://datasets/{USER}/zh-corpus@{corpus_commit}/data/part-0.jsonl.gz" in card
    assert json.loads((download / "configuration.json").read_text()) == {"framework": "pytorch",
                                                                         "task": "text-generation"}
    AutoTokenizer.from_pretrained(download)
    AutoModelForCausalLM.from_pretrained(download)
    text = pipeline("text-generation", model=str(download))("今天", max_new_tokens=4)[0]["generated_text"]
    assert text.startswith("今天")
    pushed = ms.head(MODEL)
    assert pushed in result.stdout and f"{ms.url}/models/{MODEL}" in result.stdout
    assert_token_nowhere(result, first)

    second = tmp_path / "second"  # another run, on a local corpus, from the pushed model and tokenizer
    again = run_cli("run", "--run-dir", str(second), "--data-files", str(small_corpus), "--model-init-from",
                    f"ms://{MODEL}", *BLOCKS, *TRAIN, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (second / "tokenizer" / "tokenizer.json").read_bytes() == (download / "tokenizer.json").read_bytes()
    summary = summary_of(second)
    assert summary["base_model"]["hub"] == MODEL and summary["base_model"]["commit"] == pushed
    assert summary["base_model"]["provider"] == "modelscope"
    assert summary["initial_eval_loss"] == pytest.approx(validation_loss(first / "model", second), abs=1e-4)


def _pointed_step(ms: LocalModelScope, repo_id: str) -> int | None:
    repo = ms.state.repos.get(("model", repo_id))
    pointer = ms.files_at(repo_id).get(POINTER) if repo else None
    return json.loads(pointer)["step"] if pointer else None


def assert_every_commit_points_at_a_whole_checkpoint(ms: LocalModelScope, repo_id: str) -> int:
    """Whatever commit a new machine reads, the pointer names a folder whose marker is there and whose files are
    the marker's, of the marker's step; returns how many commits named one."""
    pointed = 0
    for commit in ms.commits(repo_id):
        files = ms.files_at(repo_id, commit.id)
        if POINTER not in files:
            continue
        pointed += 1
        folder = json.loads(files[POINTER])["folder"]
        marker = json.loads(files[f"{folder}/{MARKER}"])
        for name, size in marker["files"].items():
            assert len(files[f"{folder}/{name}"]) == size, (commit.message, name)
        state = json.loads(files[f"{folder}/trainer_state.json"])
        assert state["global_step"] == marker["step"] == json.loads(files[POINTER])["step"], commit.message
    return pointed


@pytest.mark.slow
def test_a_killed_run_resumes_on_a_new_machine_from_modelscope_and_ends_bit_identical(ms, tmp_path, small_corpus,
                                                                                      trained):
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    corpus_a = machine_a / "corpus.txt"
    corpus_a.parent.mkdir()
    shutil.copyfile(small_corpus, corpus_a)
    flag = tmp_path / "paused"
    command = [*TINY_DATA, *TINY_TRAIN, "--hub-provider", "modelscope", "--hub-repo-id", f"{USER}/resume-me",
               "--hub-push-checkpoints", "--hub-retry-wait-seconds", "0.01"]
    # two files a commit: every checkpoint lands in several commits, as a large one does on the real hub
    env = {**ms_env(ms, machine_a, MODELSCOPE_UPLOAD_COMMIT_BATCH_MAX_OPERATIONS="2"),
           faults.ENV: json.dumps({"pause_after_step": [10, 120], "pause_flag": str(flag)})}
    process = subprocess.Popen([sys.executable, "-m", "gpt2zh", "run", "--run-dir", str(machine_a / "run"),
                                "--data-files", str(corpus_a), *command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(flag.exists, timeout=300)
    wait_for(lambda: _pointed_step(ms, f"{USER}/resume-me") == 8)  # checkpoint-8's upload has landed
    process.send_signal(signal.SIGKILL)  # the instance is released, and its disk with it
    process.communicate()
    assert not (machine_a / "run" / "model").exists()

    corpus_b = machine_b / "data" / "corpus.txt"
    corpus_b.parent.mkdir(parents=True)
    shutil.copyfile(small_corpus, corpus_b)
    resumed = run_cli("run", "--run-dir", str(machine_b / "run"), "--data-files", str(corpus_b), *command,
                      env=ms_env(ms, machine_b, MODELSCOPE_UPLOAD_COMMIT_BATCH_MAX_OPERATIONS="2"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from ModelScope: {USER}/resume-me/checkpoints/checkpoint-8 at commit" in resumed.stderr
    assert "the tokenizer pushed with" in resumed.stdout
    assert_same_weights(machine_b / "run" / "model", trained[0] / "model")
    assert _pointed_step(ms, f"{USER}/resume-me") == 12
    assert assert_every_commit_points_at_a_whole_checkpoint(ms, f"{USER}/resume-me") >= 3
    folders = {path.split("/")[1] for path in ms.files_at(f"{USER}/resume-me") if path.startswith("checkpoints/")}
    assert folders == {"checkpoint-12"}  # the older folders are deleted once the pointer moved on
    assert_token_nowhere(resumed, machine_b / "run")


def test_a_missing_or_wrong_modelscope_token_or_namespace_is_one_line_and_pushes_nothing(ms, tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path)
    home = tmp_path / "machine"

    def push(repo: str = MODEL, token: str | None = TOKEN, *extra: str, **env) -> subprocess.CompletedProcess:
        return run_cli("push", "--run-dir", str(run_dir), "--hub-provider", "modelscope", "--hub-repo-id", repo,
                       *extra, env=ms_env(ms, home, token, **env))

    for result, expected in ((push(token=None), "no ModelScope token found for --hub-repo-id"),
                             (push(token="ms-wrong"), "the ModelScope token was rejected (401)"),
                             (push(repo="bob/not-yours"), "cannot create or use the repository bob/not-yours (403)")):
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr[-2000:]
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
        if "token" in expected:  # the fix names where the token goes
            assert "MODELSCOPE_API_TOKEN" in result.stderr.splitlines()[-1]
    assert ("model", MODEL) not in ms.state.repos and not (run_dir / "push").exists()

    dry = push(MODEL, None, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "configuration.json" in dry.stdout and "frameworks:" in dry.stdout and "on ModelScope" in dry.stdout
    assert "no ModelScope token found" in dry.stderr

    closed = run_cli("push", "--run-dir", str(run_dir), "--hub-provider", "modelscope", "--hub-repo-id", MODEL,
                     env={**ms_env(ms, home), "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9",
                          "MODELSCOPE_API_MAX_RETRIES": "0"})
    assert closed.returncode == 2 and one_error_line(closed.stderr), closed.stderr[-2000:]
    assert "cannot reach ModelScope at http://127.0.0.1:9" in closed.stderr and "MODELSCOPE_ENDPOINT" in closed.stderr
    assert_token_nowhere(closed, run_dir)  # a command that had the token: not in its output, nor in the run


def test_a_missing_modelscope_dataset_model_or_revision_is_one_line_and_writes_nothing(ms, tmp_path, small_corpus):
    seed_corpus(ms, small_corpus)
    corpus = f"ms://datasets/{USER}/zh-corpus/data/*.jsonl.gz"
    for reference, token, expected in (
            (["--data-files", f"ms://datasets/{USER}/no-such-corpus/*.jsonl.gz"], TOKEN,
             f"dataset {USER}/no-such-corpus@master not found on ModelScope"),
            (["--data-files", f"ms://datasets/{USER}/zh-corpus@v9/data/*.jsonl.gz"], TOKEN,
             f"dataset {USER}/zh-corpus on ModelScope has no branch, tag or commit 'v9'"),
            (["--data-files", f"ms://datasets/{USER}/zh-corpus/data/*.parquet"], TOKEN, "no file matches"),
            (["--data-files", corpus], "ms-wrong", "ModelScope rejected your token (HTTP 401) — the token in "
                                                   "MODELSCOPE_API_TOKEN is invalid or expired"),
            (["--data-files", str(small_corpus), "--model-init-from", f"ms://{USER}/no-such-model"], TOKEN,
             f"model {USER}/no-such-model@master not found on ModelScope")):
        run_dir = tmp_path / "run"
        result = run_cli("train-tokenizer", "--run-dir", str(run_dir), *reference, *TINY_DATA,
                         env=ms_env(ms, tmp_path / "machine", token))
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr[-2000:]
        assert expected in result.stderr, result.stderr
        assert not (run_dir / "tokenizer").exists()


def test_a_modelscope_base_is_linked_on_modelscope_and_kept_out_of_the_hubs_base_model_field(trained):
    from gpt2zh.hub.card import render_model_card

    summary = json.loads((trained[0] / "model" / "training_summary.json").read_text())
    base = {"model": f"ms://{USER}/base@" + "a" * 12, "hub": f"{USER}/base", "commit": "a" * 40,
            "provider": "modelscope", "weights": "safetensors"}
    for provider in ("huggingface", "modelscope"):
        card = render_model_card(trained[0], {**summary, "base_model": base}, f"{USER}/continued", "mit", "",
                                 provider)
        assert "base_model" not in yaml.safe_load(card.split("---")[1])  # the Hub knows no ModelScope id
        assert f"continued from [{USER}/base](https://modelscope.cn/models/{USER}/base)" in card
