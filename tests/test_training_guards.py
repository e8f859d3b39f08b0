"""Stopping safely, in the test process: a real signal to this process, the callback driven as the Trainer
drives it (step begin, micro-batch ends, step end), and the one line the user then reads.
tests/test_stop_signals.py stops real training processes the same way."""

import os
import random
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import TrainerControl, TrainerState

from gpt2zh.training.checkpoints import write_marker
from gpt2zh.training.guards import GracefulStop, TrainingInterrupted


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.fixture
def handlers():
    """A recognisable handler in place of SIGTERM's and SIGINT's, put back whatever the test did."""
    def previous(signum, frame):
        raise AssertionError("the handler in place before training was called")

    saved = {signum: signal.getsignal(signum) for signum in GracefulStop.SIGNALS}
    for signum in GracefulStop.SIGNALS:
        signal.signal(signum, previous)
    yield previous
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _training(stop: GracefulStop, step: int, accumulation: int) -> tuple:
    args, state, control = SimpleNamespace(gradient_accumulation_steps=accumulation), TrainerState(), TrainerControl()
    state.global_step = step
    stop.on_train_begin(args, state, control)
    stop.on_step_begin(args, state, control)
    return args, state, control


def test_a_signal_mid_step_drops_the_micro_batches_saves_the_last_step_and_rewinds_the_random_state(
        tmp_path, handlers):
    stop = GracefulStop(tmp_path / "checkpoints")
    args, state, control = _training(stop, step=1, accumulation=2)
    assert all(signal.getsignal(signum) == stop._handle for signum in GracefulStop.SIGNALS)
    at_step_begin = _draws()
    assert stop.on_substep_end(args, state, control) is control and not control.should_training_stop
    os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is handlers  # a second signal acts at once, as before training
    assert stop.on_substep_end(args, state, control) is control
    assert (control.should_training_stop, control.should_save, stop.stopped_at) == (True, True, 1)
    assert _draws() == at_step_begin  # the dropped micro-batches' random numbers are drawn again on resume
    stop.on_train_end(args, state, control)
    assert all(signal.getsignal(signum) is handlers for signum in GracefulStop.SIGNALS)
    interruption = stop.interruption()
    assert interruption.exit_code == 128 + 15
    assert interruption.one_line() == (
        "stopped by SIGTERM at step 1 (the 2 micro-batch(es) of step 2 done so far were dropped); checkpoint saved "
        f"to {tmp_path / 'checkpoints' / 'checkpoint-1'} — rerun the same command to resume from it")


def test_a_signal_after_the_step_was_already_saved_saves_nothing_again(tmp_path, handlers):
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    write_marker(checkpoint, "fingerprint", {})
    stop = GracefulStop(tmp_path)
    args, state, control = _training(stop, step=4, accumulation=3)
    before = _draws()
    os.kill(os.getpid(), signal.SIGINT)
    stop.on_substep_end(args, state, control)
    assert (control.should_training_stop, control.should_save) == (True, False)
    assert _draws() != before  # nothing rewound: no checkpoint is written from this state
    stop.on_train_end(args, state, control)
    assert stop.interruption().one_line().startswith("stopped by SIGINT at step 4 (the 1 micro-batch(es) of step 5 ")


def test_a_signal_during_the_first_step_saves_nothing_and_says_so(tmp_path, handlers):
    stop = GracefulStop(tmp_path)
    args, state, control = _training(stop, step=0, accumulation=2)
    os.kill(os.getpid(), signal.SIGINT)
    stop.on_substep_end(args, state, control)
    assert (control.should_training_stop, control.should_save) == (True, False)
    stop.on_train_end(args, state, control)
    interruption = stop.interruption()
    assert (interruption.exit_code, interruption.one_line()) == (128 + 2, (
        "stopped by SIGINT during step 1; no step was complete, so nothing was saved — rerun the same command to "
        "start again"))


def test_a_signal_at_the_end_of_a_step_saves_that_step(tmp_path, handlers):
    stop = GracefulStop(tmp_path)
    args, state, control = _training(stop, step=7, accumulation=1)
    assert stop.on_step_end(args, state, control) is control and not control.should_save
    os.kill(os.getpid(), signal.SIGTERM)
    state.global_step = 8
    assert stop.on_step_end(args, state, control) is control
    assert (control.should_training_stop, control.should_save) == (True, True)
    stop.on_train_end(args, state, control)
    assert stop.interruption().one_line() == (f"stopped by SIGTERM at step 8; checkpoint saved to "
                                              f"{tmp_path / 'checkpoint-8'} — rerun the same command to resume from it")


def test_without_a_signal_training_runs_on_and_the_callback_serves_a_second_training(tmp_path, handlers):
    stop = GracefulStop(tmp_path)
    for _ in range(2):
        args, state, control = _training(stop, step=3, accumulation=2)
        stop.on_substep_end(args, state, control)
        stop.on_step_end(args, state, control)
        assert (control.should_training_stop, control.should_save) == (False, False)
        stop.on_train_end(args, state, control)
        stop.on_train_end(args, state, control)  # once more changes nothing
        assert all(signal.getsignal(signum) is handlers for signum in GracefulStop.SIGNALS)
    assert stop.interruption() is None


def test_a_signal_another_rank_received_stops_this_one_at_the_same_micro_batch(tmp_path, handlers, monkeypatch):
    import torch.distributed as dist

    def another_rank_was_signalled(value, op):
        value.fill_(1.0)

    # a two-process group as this rank sees it: the MAX all-reduce brings the other rank's flag
    for name, value in {"is_initialized": lambda: True, "get_world_size": lambda: 2, "get_backend": lambda: "gloo",
                        "all_reduce": another_rank_was_signalled}.items():
        monkeypatch.setattr(dist, name, value)
    stop = GracefulStop(tmp_path)
    args, state, control = _training(stop, step=2, accumulation=2)
    stop.on_substep_end(args, state, control)
    assert (control.should_training_stop, control.should_save, stop.received) == (True, True, signal.SIGTERM)
    stop.on_train_end(args, state, control)
    assert stop.interruption().exit_code == 128 + 15


def test_the_cuda_random_state_is_rewound_too_once_cuda_is_in_use(tmp_path, handlers, monkeypatch):
    read, restored = [], []

    def cuda_states():
        read.append(True)
        return ["state of GPU 0"]

    for name, value in {"is_available": lambda: True, "is_initialized": lambda: False,
                        "get_rng_state_all": cuda_states, "set_rng_state_all": restored.append}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    stop = GracefulStop(tmp_path)
    stop.on_train_end(*_training(stop, step=1, accumulation=2))
    assert read == []  # CUDA present but not in use: reading its state would start it
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    args, state, control = _training(stop, step=1, accumulation=2)
    os.kill(os.getpid(), signal.SIGTERM)
    stop.on_substep_end(args, state, control)
    stop.on_train_end(args, state, control)
    assert (read, restored) == ([True], [["state of GPU 0"]])


def test_an_interruption_is_a_user_error_with_the_shells_exit_status():
    interruption = TrainingInterrupted("SIGINT", 2, 3, "run/checkpoints/checkpoint-3", 0)
    assert (interruption.message, interruption.fix, interruption.exit_code) == (
        "stopped by SIGINT at step 3; checkpoint saved to run/checkpoints/checkpoint-3",
        "rerun the same command to resume from it", 130)
