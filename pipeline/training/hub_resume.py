"""Stage 3 resuming from the checkpoint pushed to a hub (PITFALLS.md RA4, CN7): the main process downloads it at
one commit, refuses another run's, verifies every file, and restores the run's history up to it."""

import logging
import os
import shutil
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.input_changes import changed_inputs
from gpt2zh.remote import open_hub
from gpt2zh.remote.checkpoints import (
    LOG_FILES,
    LOGS_FOLDER,
    TOKENIZER_FOLDER,
    fetch_pushed,
    other_run,
    pushed_checkpoint,
)
from gpt2zh.training.checkpoints import problem_with
from gpt2zh.training.ranks import barrier

log = logging.getLogger("gpt2zh")


def resume_from_hub(config: Config, run, fingerprint: str, weights: dict, main: bool) -> None:
    """No usable local checkpoint: the Hub's, downloaded into checkpoints/checkpoint-N by the main process
    (which replaces a torn local one of the same step); every rank then selects again."""
    if main:
        _download_checkpoint(config, run.checkpoints, fingerprint, weights, run.logs)
    barrier()


def _restore_logs(pushed: Path, logs_dir: Path) -> None:
    """The history and samples up to the checkpoint, where this machine has none (HistoryCallback keeps the
    rows up to the resumed step)."""
    for name in LOG_FILES:
        if (pushed / name).is_file() and not (logs_dir / name).exists():
            logs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pushed / name, logs_dir / name)


def _download_checkpoint(config: Config, checkpoints: Path, fingerprint: str, weights: dict, logs_dir: Path) -> None:
    repo_id, insist, hub = config.hub.repo_id, config.checkpoint.resume == "hub", open_hub(config.hub.provider)
    staging = checkpoints / f".hub-download-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        pushed = pushed_checkpoint(hub, repo_id, insist, staging)
        if pushed is None:
            log.info("pretrain: %s has no pushed checkpoint to resume from", repo_id)
            return
        marker, downloaded = pushed.marker, staging / pushed.folder
        if marker.get("fingerprint") != fingerprint:
            raise other_run(repo_id, pushed.folder,
                             changed_inputs(marker.get("inputs", {}), weights) or ["the dataset or tokenizer"])
        fetch_pushed(hub, repo_id, pushed.commit, f"{pushed.folder}/*", staging)
        folder = checkpoints / f"checkpoint-{marker['step']}"
        shutil.rmtree(downloaded / TOKENIZER_FOLDER, ignore_errors=True)
        _restore_logs(downloaded / LOGS_FOLDER, logs_dir)
        shutil.rmtree(downloaded / LOGS_FOLDER, ignore_errors=True)
        shutil.rmtree(downloaded / ".cache", ignore_errors=True)
        if (problem := problem_with(downloaded)) is not None:
            raise UserError(f"{repo_id}/{pushed.folder} (step {marker['step']}) cannot be resumed from: {problem}",
                            "pass --resume never to start over")
        checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        downloaded.rename(folder)
        log.info("pretrain: resuming from %s: %s/%s at commit %s (step %d), downloaded to %s", hub.label, repo_id,
                 pushed.folder, pushed.commit[:12], marker["step"], folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
