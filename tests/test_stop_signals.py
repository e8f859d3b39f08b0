"""Stop signals as launchers send them: to the whole process group (SLURM's scancel and time limit,
systemd's control group, `timeout`, `kill -- -PGID`), workers included, with real processes.

- stage 3 with DataLoader workers, stopped mid-step with gradient accumulation: the checkpoint is the
  last completed step, saved within one micro-batch, and the resumed run is bit-identical;
- stage 2 with its tokenizing workers: no output that passes as complete, one line, a clean rerun;
- no child process outlives a command.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2zh import faults
from gpt2zh.manifests import DatasetManifest
from gpt2zh.training.checkpoints import read_marker
from tests.conftest import (
    REPO,
    TINY_DATA,
    assert_same_weights,
    copy_run,
    pretrain_args,
    run_cli,
    wait_for,
)

# per-device batch 1 with global batch 4: every optimizer step is 4 micro-batches
ACCUMULATE = ["--training-per-device-batch-size", "1", "--training-dataloader-workers", "2"]


def _default_interrupt() -> None:
    # as from a terminal: a test run started in the background by a script (`cmd &`) inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_in_own_group(args: list[str], fault: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **({faults.ENV: json.dumps(fault)} if fault else {})}
    return subprocess.Popen([sys.executable, "-m", "gpt2zh", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_interrupt)



def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def accumulated_reference(tmp_path_factory, trainable_run) -> Path:
    """The uninterrupted run with 4 micro-batches per step and 2 loader workers."""
    run_dir = copy_run(trainable_run, tmp_path_factory.mktemp("accumulated"))
    result = run_cli(*pretrain_args(run_dir, *ACCUMULATE))
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_group_signal_mid_step_saves_the_last_complete_step_and_resumes_bit_identically(
        tmp_path, trainable_run, accumulated_reference, signum):
    run_dir = copy_run(trainable_run, tmp_path)
    flag = tmp_path / "paused"
    # step 6's first micro-batch sleeps 3 s; the signal lands in it, 3 micro-batches before the step ends
    process = _start_in_own_group(pretrain_args(run_dir, *ACCUMULATE),
                                  {"pause_in_micro_batch": [6, 3], "pause_flag": str(flag)})
    wait_for(flag.exists)
    os.killpg(process.pid, signum)  # every process of the job: main and its 4 DataLoader workers
    _, err = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, err
    assert f"error: stopped by {name} at step 5 (the 1 micro-batch(es) of step 6 done so far were dropped)" in err
    assert "Traceback" not in err and "killed by signal" not in err
    assert read_marker(run_dir / "checkpoints" / "checkpoint-5") is not None
    assert not (run_dir / "checkpoints" / "checkpoint-6").exists()  # step 6 was never finished, so never saved
    wait_for(lambda: not _group_alive(process.pid), timeout=30)  # no worker outlives the command

    result = run_cli(*pretrain_args(run_dir, *ACCUMULATE))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stderr and "(step 5)" in result.stderr
    assert_same_weights(run_dir / "model", accumulated_reference / "model")


@pytest.mark.slow
def test_a_group_signal_at_a_step_boundary_with_loader_workers_still_checkpoints(tmp_path, trainable_run, trained):
    run_dir = copy_run(trainable_run, tmp_path)
    flag = tmp_path / "paused"
    process = _start_in_own_group(pretrain_args(run_dir, "--training-dataloader-workers", "2"),
                                  {"pause_after_step": [5, 3], "pause_flag": str(flag)})
    wait_for(flag.exists)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "error: stopped by SIGTERM at step 5; checkpoint saved to" in err and "Traceback" not in err
    result = run_cli(*pretrain_args(run_dir, "--training-dataloader-workers", "2"))
    assert result.returncode == 0, result.stderr
    assert_same_weights(run_dir / "model", trained[0] / "model")


@pytest.fixture(scope="module")
def large_corpus(tmp_path_factory, small_corpus) -> Path:
    """~8 MB: enough 1 MiB blocks for both workers to be busy for a few seconds."""
    lines = small_corpus.read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("large") / "large.txt"
    path.write_text("".join(f"{line}（{copy}）\n" for copy in range(12) for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def large_tokenized(tmp_path_factory, large_corpus) -> Path:
    run_dir = tmp_path_factory.mktemp("large-run") / "run"
    for stage in ("train-tokenizer", "tokenize"):
        result = run_cli(stage, "--data-files", str(large_corpus), "--run-dir", str(run_dir), *TINY_DATA,
                         "--data-num-proc", "2")
        assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_group_signal_during_stage_2_leaves_the_previous_dataset_and_no_process(
        tmp_path, large_corpus, large_tokenized, signum):
    run_dir = copy_run(large_tokenized, tmp_path)
    before = DatasetManifest.read(run_dir / "dataset")
    args = ["tokenize", "--data-files", str(large_corpus), "--run-dir", str(run_dir), *TINY_DATA,
            "--data-num-proc", "2", "--force"]
    flag = tmp_path / "paused"
    process = _start_in_own_group(args, {"pause_in_block": [3, 10], "pause_flag": str(flag)})
    wait_for(flag.exists, timeout=300)  # a worker sleeps in its 3rd block: the signal lands inside the rebuild
    assert any(run_dir.glob(".dataset.partial-*"))
    os.killpg(process.pid, signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert lines[-1].startswith(f"stopped by {'SIGTERM' if signum == signal.SIGTERM else 'Ctrl-C'}: ")
    assert "Traceback" not in err
    wait_for(lambda: not _group_alive(process.pid), timeout=30)
    assert DatasetManifest.read(run_dir / "dataset") == before  # the previous complete dataset, untouched
    assert not any(run_dir.glob(".dataset.*"))  # the interrupted build was removed
    result = run_cli(*args[:-1])
    assert result.returncode == 0 and "up to date" in result.stderr, result.stderr


def test_stage_2_leaves_no_child_process_behind(tmp_path, large_corpus, large_tokenized):
    """The spawned workers and multiprocessing's resource tracker are joined before the command returns."""
    script = (
        "import os, sys\n"
        "from gpt2zh.cli import main\n"
        "if __name__ == '__main__':\n"
        "    code = main(sys.argv[1:])\n"
        "    children = [c for t in os.listdir(f'/proc/{os.getpid()}/task')\n"
        "                for c in open(f'/proc/{os.getpid()}/task/{t}/children').read().split()]\n"
        "    print('children:', children)\n"
        "    sys.exit(code)\n")
    (tmp_path / "probe.py").write_text(script, encoding="utf-8")
    run_dir = copy_run(large_tokenized, tmp_path)
    result = run_cli("tokenize", "--data-files", str(large_corpus), "--run-dir", str(run_dir), *TINY_DATA,
                     "--data-num-proc", "2", "--force", executable=[sys.executable, str(tmp_path / "probe.py")])
    assert result.returncode == 0, result.stderr
    assert "(2 workers)" in result.stderr or "2 worker(s)" in result.stdout + result.stderr
    assert "children: []" in result.stdout


def _kill_from_another_process(pid: int, signum: signal.Signals) -> None:
    subprocess.run(["kill", f"-{signum.name.removeprefix('SIG')}", str(pid)], check=True)  # as a launcher does


def test_a_child_ignores_stop_signals_from_others_and_obeys_its_parent(tmp_path):
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, sys, time\n"
        "from gpt2zh.stop_signals import obey_only_the_parent\n"
        "obey_only_the_parent()\n"
        "import numpy, torch  # their thread pools start now, with the signals blocked\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(120)\n")], cwd=REPO)
    wait_for(ready.exists)
    for signum in (signal.SIGTERM, signal.SIGINT):
        _kill_from_another_process(child.pid, signum)
    time.sleep(1.0)
    assert child.poll() is None  # alive
    child.terminate()  # the parent's SIGTERM, as torch and multiprocessing stop their workers
    assert child.wait(timeout=10) == 0


def _worker_pid(item: int) -> int:
    time.sleep(0.2)
    return os.getpid()


def _pool_workers() -> list[int]:
    me = os.getpid()
    children = [int(c) for t in os.listdir(f"/proc/{me}/task")
                for c in Path(f"/proc/{me}/task/{t}/children").read_text().split()]
    return [c for c in children if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()]


def test_stage_2_workers_survive_a_group_signal_that_their_parent_handles(large_tokenized):
    """ordered_map's spawned workers ignore a stop signal from anyone but their parent and keep working."""
    from gpt2zh.config.schema import DataConfig
    from gpt2zh.dataset.parallel import ordered_map
    from gpt2zh.dataset.worker import WorkerSetup, init_worker

    setup = WorkerSetup(spm_model=str(large_tokenized / "tokenizer" / "tokenizer.model"), data=DataConfig(),
                        reserved_strings=(), end_of_text_id=1, dtype="uint16", keep_digests=False)
    results = ordered_map(_worker_pid, iter(range(12)), 2, init_worker, (setup,))
    first = next(results)
    workers = _pool_workers()
    assert len(workers) == 2 and first in workers
    for pid in workers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            _kill_from_another_process(pid, signum)
    time.sleep(0.5)
    rest = list(results)
    assert len(rest) == 11 and set(rest) <= set(workers)  # every item, from the same two live workers


def test_without_sigwaitinfo_a_worker_keeps_the_default_signal_handling(monkeypatch):
    """macOS has no sigwaitinfo: the protection is skipped, never a crash of every DataLoader worker."""
    import threading

    from gpt2zh.stop_signals import obey_only_the_parent

    monkeypatch.delattr(signal, "sigwaitinfo")
    threads = threading.active_count()
    obey_only_the_parent()  # in this (test) process: nothing may be blocked here
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()
    assert threading.active_count() == threads
