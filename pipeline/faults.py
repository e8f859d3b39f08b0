"""Fault injection for the test suite: real NaNs, slow steps, checkpoint writes and stage-2 blocks, through
the real code paths.

Driven by the GPT2ZH_FAULTS environment variable (JSON); without it nothing here has any effect.
  {"nan_loss_steps": [4, 5]}        the loss of those optimizer steps becomes NaN (before backward)
  {"pause_in_checkpoint": [8, 30]}  sleep 30 s inside checkpoint-8 (weights written, optimizer not yet)
  {"pause_after_step": [7, 30]}     sleep 30 s in step 7, before the optimizer applies it (a window to signal)
  {"pause_in_micro_batch": [7, 30]} sleep 30 s in the first micro-batch of step 7 (accumulation > 1)
  {"pause_in_block": [3, 30]}       stage 2: each worker sleeps 30 s on the 3rd block it tokenizes
  {"pause_flag": "/tmp/x"}          with any pause: write the step (or block) into this file when it begins
  {"disk_full_at_checkpoint": 8}    the checkpoint of step 8 fails with ENOSPC after writing part of a file
"""

import errno
import json
import os
import time
from functools import cache
from pathlib import Path

ENV = "GPT2ZH_FAULTS"
_paused_steps: set[int] = set()


@cache
def faults() -> dict:
    raw = os.environ.get(ENV, "")
    return json.loads(raw) if raw else {}


def nan_loss_at(step: int) -> bool:
    return step in faults().get("nan_loss_steps", [])


def _pause(step: int, seconds: float) -> None:
    if flag := faults().get("pause_flag"):
        Path(flag).write_text(str(step))
    time.sleep(seconds)


def pause_in_checkpoint(step: int) -> None:
    pause = faults().get("pause_in_checkpoint")
    if pause and step == pause[0]:
        _pause(step, pause[1])


def pause_after_step(step: int) -> None:
    pause = faults().get("pause_after_step")
    if pause and step == pause[0]:
        _pause(step, pause[1])


def pause_in_micro_batch(step: int) -> None:
    pause = faults().get("pause_in_micro_batch")
    if pause and step == pause[0] and step not in _paused_steps:  # the first micro-batch only
        _paused_steps.add(step)
        _pause(step, pause[1])


_blocks_seen = 0


def pause_in_block() -> None:
    global _blocks_seen
    pause = faults().get("pause_in_block")
    if pause:
        _blocks_seen += 1
        if _blocks_seen == pause[0]:
            _pause(_blocks_seen, pause[1])


def disk_full_at_checkpoint(step: int, folder: Path) -> None:
    """As a full disk does: part of the optimizer state lands on disk, then the write fails."""
    if faults().get("disk_full_at_checkpoint") == step:
        (folder / "optimizer.pt").write_bytes(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "optimizer.pt"))
