"""One command at a time per run directory, with real concurrent processes (pipeline/runlock.py)."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest
from filelock import FileLock

from gpt2zh import faults
from gpt2zh.errors import UserError
from gpt2zh.runlock import HOLDER, LOCK, is_main_process_by_environment, run_dir_lock
from tests.conftest import (
    GONE_PID,
    REPO,
    TINY_DATA,
    TINY_TRAIN,
    assert_same_weights,
    copy_run,
    pretrain_args,
    run_cli,
    wait_for,
)


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


RECORD = {"command": "pretrain", "started_utc": "2026-01-01T00:00:00+00:00"}


def test_a_lock_recorded_by_another_machine_is_not_taken_over(tmp_path):
    (tmp_path / HOLDER).write_text(json.dumps({**RECORD, "pid": 1, "host": "gpu-node-7"}))
    with pytest.raises(UserError) as refused, run_dir_lock(tmp_path, "pretrain"):
        pass
    assert refused.value.message == (f"{tmp_path} is marked in use by `gpt2zh pretrain` (pid 1 on gpu-node-7, since "
                                     "2026-01-01T00:00:00+00:00), on another machine")
    assert refused.value.fix == f"if that command is no longer running, delete {tmp_path / HOLDER} and rerun"
    assert json.loads((tmp_path / HOLDER).read_text())["host"] == "gpu-node-7"  # left for its owner


def test_a_busy_run_directory_is_refused_naming_the_holder_its_record_names_or_another_process(tmp_path):
    """The OS lock held (here by this test, as by a running command); the record says who holds it, if it can."""
    holder = {**RECORD, "pid": 4321, "host": "gpu-node-7"}
    lock = FileLock(str(tmp_path / LOCK))
    lock.acquire(timeout=0)
    try:
        for record, named in ((json.dumps(holder), "`gpt2zh pretrain` (pid 4321 on gpu-node-7, since "
                                                   "2026-01-01T00:00:00+00:00)"),
                              ('{"command": "pretr', "another process"), (None, "another process")):
            if record is not None:
                (tmp_path / HOLDER).write_text(record, encoding="utf-8")
            else:
                (tmp_path / HOLDER).unlink()
            with pytest.raises(UserError) as refused, run_dir_lock(tmp_path, "tokenize"):
                pass
            assert refused.value.message == f"{tmp_path} is in use by {named}"
    finally:
        lock.release()


def test_the_record_of_a_dead_command_on_this_machine_is_taken_over_with_a_notice(tmp_path, caplog):
    (tmp_path / HOLDER).write_text(json.dumps({**RECORD, "pid": GONE_PID, "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING, logger="gpt2zh"), run_dir_lock(tmp_path, "tokenize"):
        record = json.loads((tmp_path / HOLDER).read_text(encoding="utf-8"))
        assert (record["command"], record["pid"], record["host"]) == ("tokenize", os.getpid(), socket.gethostname())
    assert caplog.messages == [f"{tmp_path} was locked by `gpt2zh pretrain` (pid {GONE_PID} on "
                               f"{socket.gethostname()}, since 2026-01-01T00:00:00+00:00), which is gone (killed?); "
                               "taking the lock over"]
    assert not (tmp_path / HOLDER).exists()


def test_a_record_naming_a_live_process_is_replaced_quietly_because_the_os_lock_was_free(tmp_path, caplog, live_pid):
    """Its pid was reused by an unrelated process (the OS lock is released when the holder dies)."""
    for pid in (live_pid, str(GONE_PID)):  # a pid that is not a number says nothing either
        (tmp_path / HOLDER).write_text(json.dumps({**RECORD, "pid": pid, "host": socket.gethostname()}))
        with caplog.at_level(logging.WARNING, logger="gpt2zh"), run_dir_lock(tmp_path, "tokenize"):
            assert json.loads((tmp_path / HOLDER).read_text(encoding="utf-8"))["pid"] == os.getpid()
    assert caplog.messages == []


def test_rank_0_of_a_launch_and_a_process_without_a_launcher_are_the_main_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process_by_environment() is True
    for rank, main in (("0", True), ("1", False), ("7", False)):
        monkeypatch.setenv("RANK", rank)
        assert is_main_process_by_environment() is main, rank


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
