"""Resuming on a new machine from the checkpoints pushed to the Hub (PITFALLS.md RA4, RA5, RA1), against the
local server that speaks the Hub's HTTP API, with the real client and the real command line."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2zh import faults
from gpt2zh.training.checkpoints import MARKER
from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, assert_same_weights, copy_run, one_error_line, run_cli, wait_for
from tests.hub_server import LocalHub, Repo, point_huggingface_hub_at
from tests.test_hub import TOKEN, USER, hub_env
from tests.test_stage_pretrain import read_history

REPO_ID = f"{USER}/resume-me"


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: USER}) as server:
        yield server


def _run_command(run_dir: Path, corpus: Path, *extra: str) -> list[str]:
    return ["run", "--run-dir", str(run_dir), "--data-files", str(corpus), *TINY_DATA, *TINY_TRAIN,
            "--hub-repo-id", REPO_ID, "--hub-push-checkpoints", "--hub-retry-wait-seconds", "0.01", *extra]


def _pushed_step(hub) -> int | None:
    repo = hub.state.repos.get(REPO_ID)
    marker = repo.files.get(f"last-checkpoint/{MARKER}") if repo else None
    return json.loads(marker)["step"] if marker else None


@pytest.mark.slow
def test_a_killed_run_resumes_on_a_new_machine_from_the_hub_and_ends_bit_identical(hub, tmp_path, small_corpus,
                                                                                   trained):
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    corpus_a = machine_a / "corpus.txt"
    corpus_a.parent.mkdir()
    shutil.copyfile(small_corpus, corpus_a)
    flag = tmp_path / "paused"
    # a file an earlier push left in last-checkpoint/: each checkpoint's commit replaces the whole folder
    hub.state.repos[REPO_ID] = Repo(REPO_ID, private=False, files={"last-checkpoint/stale.bin": b"old"})
    env = {**os.environ, **hub_env(hub, machine_a / "hf-home"),
           faults.ENV: json.dumps({"pause_after_step": [10, 120], "pause_flag": str(flag)})}
    process = subprocess.Popen([sys.executable, "-m", "gpt2zh", *_run_command(machine_a / "run", corpus_a)],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(flag.exists, timeout=300)
    wait_for(lambda: _pushed_step(hub) == 8)  # checkpoint-8's upload (in the background) has landed
    process.send_signal(signal.SIGKILL)  # the runtime ends, and its disk with it
    process.communicate()
    assert not (machine_a / "run" / "model").exists()

    corpus_b = machine_b / "data" / "corpus.txt"  # another folder, a new modification time
    corpus_b.parent.mkdir(parents=True)
    shutil.copyfile(small_corpus, corpus_b)
    os.utime(corpus_b, (1_000_000_000, 1_000_000_000))
    resumed = run_cli(*_run_command(machine_b / "run", corpus_b), env=hub_env(hub, machine_b / "hf-home"),
                      timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    err = resumed.stderr
    assert f"resuming from the Hub: {REPO_ID}/last-checkpoint at commit" in err and "(step 8)" in err
    assert "adopted" in resumed.stdout and "the tokenizer pushed with" in resumed.stdout
    run_b = machine_b / "run"
    tokenizer = json.loads((run_b / "tokenizer" / "manifest.json").read_text())
    assert tokenizer["pushed_with_checkpoint"]["step"] == 8
    assert tokenizer["fingerprint"] == json.loads((machine_a / "run" / "tokenizer" / "manifest.json").read_text())[
        "fingerprint"]
    summary = json.loads((run_b / "model" / "training_summary.json").read_text())
    assert (summary["steps"], summary["resumed_from_step"]) == (12, 8)
    # the history up to step 8 came with the checkpoint: the model's history starts at step 0, as one run's
    history, original = (read_history(run / "model" / "training_history.csv") for run in (run_b, trained[0]))
    assert [row["step"] for row in history] == [row["step"] for row in original]
    assert history[0]["eval_loss"] == original[0]["eval_loss"]
    # the same corpus and settings as the `trained` fixture, uninterrupted on one machine: the same bits
    assert (run_b / "tokenizer" / "tokenizer.json").read_bytes() == \
        (trained[0] / "tokenizer" / "tokenizer.json").read_bytes()
    assert_same_weights(run_b / "model", trained[0] / "model")
    assert _pushed_step(hub) == 12
    assert "last-checkpoint/stale.bin" not in hub.state.repos[REPO_ID].files


def _pushed_files(run_dir: Path, step: int = 12) -> dict[str, bytes]:
    """The files of checkpoint-`step` as a push lays them out in last-checkpoint/, with the run's tokenizer."""
    folder = run_dir / "checkpoints" / f"checkpoint-{step}"
    files = {f"last-checkpoint/{p.relative_to(folder)}": p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    tokenizer = run_dir / "tokenizer"
    return files | {f"last-checkpoint/gpt2zh-tokenizer/{p.relative_to(tokenizer)}": p.read_bytes()
                    for p in tokenizer.rglob("*") if p.is_file()}


def _seed_checkpoint(hub, repo_id: str, run_dir: Path, change=None) -> None:
    files = _pushed_files(run_dir)
    if change is not None:
        change(files)
    hub.add_model(repo_id, files)


def test_a_pushed_checkpoint_is_fetched_at_the_commit_its_marker_was_read_at(hub, tmp_path, monkeypatch, trained):
    """The training machine pushes checkpoint-12 right after this one read the branch's commit (checkpoint-8's
    marker): every file must come from that commit, never checkpoint-12's files under checkpoint-8's name."""
    from gpt2zh.config.schema import Config
    from gpt2zh.rundir import RunDir
    from gpt2zh.training.checkpoints import read_marker
    from gpt2zh.training.hub_resume import resume_from_hub
    from tests.conftest import tree_checksums

    point_huggingface_hub_at(hub, monkeypatch, TOKEN)
    eight = trained[0] / "checkpoints" / "checkpoint-8"
    hub.add_model(REPO_ID, _pushed_files(trained[0], 8))
    later = hub.push_after_pinning(REPO_ID, _pushed_files(trained[0], 12), kind="model")
    config = Config()
    config.hub.repo_id, config.checkpoint.resume = REPO_ID, "hub"
    run = RunDir(tmp_path / "run")
    resume_from_hub(config, run, read_marker(eight)["fingerprint"], {}, main=True)
    assert hub.state.models[REPO_ID].refs["main"] == later  # the push landed between reading and fetching
    assert tree_checksums(run.checkpoints / "checkpoint-8") == tree_checksums(eight)


def _pretrain_from_hub(hub, run_dir: Path, home: Path, repo_id: str) -> subprocess.CompletedProcess:
    return run_cli("pretrain", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN, "--hub-repo-id", repo_id,
                   "--resume", "hub", env=hub_env(hub, home))


def test_a_pushed_checkpoint_whose_files_are_incomplete_or_of_another_run_is_refused_in_one_line(
        hub, tmp_path, trained):
    def truncate(files):
        files["last-checkpoint/optimizer.pt"] = files["last-checkpoint/optimizer.pt"][:1000]

    def other_data(files):  # the same settings, other data: found by stage 3, once the dataset is known
        marker = json.loads(files[f"last-checkpoint/{MARKER}"])
        marker["fingerprint"], marker["inputs"]["dataset"] = "0" * 64, ["f" * 64]
        files[f"last-checkpoint/{MARKER}"] = json.dumps(marker).encode()

    _seed_checkpoint(hub, f"{USER}/torn", trained[0], truncate)
    _seed_checkpoint(hub, f"{USER}/other", trained[0], other_data)
    for repo_id, expected in ((f"{USER}/torn", "cannot be resumed from: optimizer.pt has 1000 bytes"),
                              (f"{USER}/other", "tester/other/last-checkpoint was made by a different run; changed: "
                                                "dataset"),
                              (f"{USER}/missing", "--resume hub: tester/missing has no complete last-checkpoint/")):
        run_dir = copy_run(trained[0], tmp_path / repo_id.split("/")[1])
        shutil.rmtree(run_dir / "checkpoints")
        shutil.rmtree(run_dir / "model")
        result = _pretrain_from_hub(hub, run_dir, tmp_path / "hf-home", repo_id)
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr[-2000:]
        assert expected in result.stderr.splitlines()[-1], result.stderr.splitlines()[-1]
        leftovers = list((run_dir / "checkpoints").iterdir()) if (run_dir / "checkpoints").exists() else []
        assert leftovers == []  # no checkpoint-N, and no half-downloaded staging folder either


def test_a_checkpoint_is_refused_with_a_tokenizer_trained_again_into_other_ids(tmp_path, capsys, trained):
    """Stage 1 run again from the same inputs (a new machine without the pushed tokenizer) may give other pieces;
    the checkpoint's marker holds the tokenizer's own hash, so it never trains on with other token ids."""
    from gpt2zh.cli import main
    from gpt2zh.rundir import file_sha256

    run_dir = copy_run(trained[0], tmp_path)
    tokenizer = run_dir / "tokenizer"
    (tokenizer / "tokenizer.json").write_text((tokenizer / "tokenizer.json").read_text() + "\n")
    manifest = json.loads((tokenizer / "manifest.json").read_text())
    manifest["files"]["tokenizer.json"] = (tokenizer / "tokenizer.json").stat().st_size
    manifest["tokenizer_sha256"] = file_sha256(tokenizer / "tokenizer.json")
    (tokenizer / "manifest.json").write_text(json.dumps(manifest))
    dataset = json.loads((run_dir / "dataset" / "manifest.json").read_text())  # and the dataset made again with it
    dataset["inputs"]["tokenizer_sha256"] = manifest["tokenizer_sha256"]
    (run_dir / "dataset" / "manifest.json").write_text(json.dumps(dataset))
    shutil.rmtree(run_dir / "model")
    assert main(["pretrain", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "checkpoint-12 was made by a different run; changed: tokenizer_sha256" in err, err


def test_a_pushed_checkpoint_with_other_settings_is_refused_before_stage_1(hub, tmp_path, small_corpus, trained):
    """A new machine's `gpt2zh run`: other optimisation settings are found from the pushed marker before stage 1,
    another tokenizer setting by stage 1 from the pushed tokenizer, never after an hour of stage 2."""
    def other_learning_rate(files):
        marker = json.loads(files[f"last-checkpoint/{MARKER}"])
        marker["inputs"]["config"]["optimization"]["learning_rate"] = 0.5
        files[f"last-checkpoint/{MARKER}"] = json.dumps(marker).encode()

    _seed_checkpoint(hub, f"{USER}/other-lr", trained[0], other_learning_rate)
    _seed_checkpoint(hub, f"{USER}/same", trained[0])
    for repo_id, extra, expected in (
            (f"{USER}/other-lr", [], "changed: optimization.learning_rate (0.5 -> 0.001)"),
            (f"{USER}/same", ["--tokenizer-vocab-size", "3000"], "changed: tokenizer.vocab_size (4000 -> 3000)")):
        run_dir = tmp_path / repo_id.split("/")[1]
        result = run_cli("run", "--run-dir", str(run_dir), "--data-files", str(small_corpus), *TINY_DATA, *TINY_TRAIN,
                         *extra, "--hub-repo-id", repo_id, "--resume", "hub", env=hub_env(hub, tmp_path / "hf-home"))
        assert result.returncode == 2 and one_error_line(result.stderr), result.stderr[-2000:]
        assert f"{repo_id}/last-checkpoint was made by a different run; {expected}" in result.stderr
        assert not (run_dir / "dataset").exists()
    assert not (tmp_path / "other-lr" / "tokenizer").exists()  # found before stage 1
