"""Fault injection for the test suite: real NaNs and slow checkpoint writes, through the real code paths.

Driven by the GPT2ZH_FAULTS environment variable (JSON); without it nothing here has any effect.
  {"nan_loss_steps": [4, 5]}        the loss of those optimizer steps becomes NaN (before backward)
  {"pause_in_checkpoint": 30}       sleep mid-checkpoint (model written, optimizer not yet)
  {"pause_after_step": [7, 30]}     sleep 30 s after step 7 (a window to send a signal)
"""

import json
import os
import time
from functools import cache

ENV = "GPT2ZH_FAULTS"


@cache
def faults() -> dict:
    raw = os.environ.get(ENV, "")
    return json.loads(raw) if raw else {}


def nan_loss_at(step: int) -> bool:
    return step in faults().get("nan_loss_steps", [])


def pause_in_checkpoint() -> None:
    if seconds := faults().get("pause_in_checkpoint"):
        time.sleep(seconds)


def pause_after_step(step: int) -> None:
    pause = faults().get("pause_after_step")
    if pause and step == pause[0]:
        time.sleep(pause[1])
