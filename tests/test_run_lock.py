"""One command at a time per run directory, with real concurrent processes (pipeline/runlock.py)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from gpt2zh import faults
from gpt2zh.runlock import HOLDER, run_dir_lock
from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, assert_same_weights, copy_run, pretrain_args, run_cli, wait_for


def _start(args: list[str], fault: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpt2zh", *args], cwd=REPO,
                            env={**os.environ, faults.ENV: json.dumps(fault)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)



@pytest.mark.slow
def test_a_second_command_on_a_busy_run_directory_is_refused_and_the_first_is_unaffected(
        tmp_path, trainable_run, trained, small_corpus):
    run_dir = copy_run(trainable_run, tmp_path)
    flag = tmp_path / "paused"
    first = _start(pretrain_args(run_dir), {"pause_after_step": [5, 15], "pause_flag": str(flag)})
    wait_for(flag.exists)
    corpus = ["--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA]
    # `run --dry-run` is refused too: only its stage 4 is a dry run, stages 1-3 would run
    for second in (pretrain_args(run_dir), ["tokenize", *corpus, "--force"],
                   ["run", *corpus, *TINY_TRAIN, "--hub-repo-id", "someone/model", "--dry-run"]):
        result = run_cli(*second)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"error: {run_dir} is in use by `gpt2zh pretrain` (pid {first.pid} on " in result.stderr
        assert "use another --run-dir" in result.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_same_weights(run_dir / "model", trained[0] / "model")  # exactly the run nobody interfered with
    assert not (run_dir / HOLDER).exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_command_is_taken_over_with_a_notice(tmp_path, trainable_run, trained):
    run_dir = copy_run(trainable_run, tmp_path)
    flag = tmp_path / "paused"
    killed = _start(pretrain_args(run_dir), {"pause_after_step": [5, 120], "pause_flag": str(flag)})
    wait_for(flag.exists)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert json.loads((run_dir / HOLDER).read_text())["pid"] == killed.pid  # left behind by the dead holder
    result = run_cli(*pretrain_args(run_dir))
    assert result.returncode == 0, result.stderr
    assert f"was locked by `gpt2zh pretrain` (pid {killed.pid} on " in result.stderr
    assert "which is gone (killed?); taking the lock over" in result.stderr
    assert_same_weights(run_dir / "model", trained[0] / "model")


def test_a_lock_recorded_by_another_machine_is_not_taken_over(tmp_path):
    (tmp_path / HOLDER).write_text(json.dumps({"command": "pretrain", "pid": 1, "host": "gpu-node-7",
                                               "started_utc": "2026-01-01T00:00:00+00:00"}))
    from gpt2zh.errors import UserError

    refused = "marked in use by `gpt2zh pretrain` \\(pid 1 on gpu-node-7.*on another machine"
    with pytest.raises(UserError, match=refused), run_dir_lock(tmp_path, "pretrain"):
        pass
    assert json.loads((tmp_path / HOLDER).read_text())["host"] == "gpu-node-7"  # left for its owner


def test_under_a_launcher_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    """Ranks 1..N of the launch that holds the lock run inside it; a second launch's rank 0 is refused."""
    with run_dir_lock(tmp_path, "pretrain"):
        monkeypatch.setenv("RANK", "1")
        with run_dir_lock(tmp_path, "pretrain"):  # rank 1 of the same launch: not refused
            pass
        monkeypatch.setenv("RANK", "0")
        script = ("from pathlib import Path\nfrom gpt2zh.runlock import run_dir_lock\n"
                  f"with run_dir_lock(Path({str(tmp_path)!r}), 'pretrain'):\n    pass\n")
        other = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
        assert other.returncode != 0 and "is in use by `gpt2zh pretrain`" in other.stderr
    assert not (tmp_path / HOLDER).exists()
