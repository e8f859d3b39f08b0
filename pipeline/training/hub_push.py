"""Pushing checkpoints to a hub while training (PITFALLS.md HB6, RA4, CN7): complete or not at all.

Each checkpoint is pushed once our completion marker is in it, with the run's tokenizer and history beside it
(pipeline/remote/checkpoints.py says what a new machine reads back). Uploads run in one background thread; a save
made while one is uploading waits for it and only the newest waiting save is uploaded; training's end waits for
the last. The files are hard-linked into a staging folder first, so the Trainer rotating a checkpoint away
cannot tear an upload.
"""

import json
import logging
import os
import shutil
import threading
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.remote import Hub, open_hub
from gpt2zh.remote.checkpoints import (
    HUB_FOLDER,
    LOG_FILES,
    LOGS_FOLDER,
    MARKER,
    POINTER,
    STEP_FOLDERS,
    TOKENIZER_FOLDER,
    folder_words,
)
from gpt2zh.rundir import RunDir

log = logging.getLogger("gpt2zh")
STAGING = ".hub-upload"


def _link_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.endswith(".tmp"):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, destination)
            except OSError:  # another file system, or links not allowed
                shutil.copy2(path, destination)


class CheckpointPusher:
    def __init__(self, hub: Hub, repo_id: str, run: RunDir, retries: int, wait: float):
        """run: its tokenizer and logs go with each checkpoint, staged beside its checkpoints."""
        self.hub, self.repo_id, self.tokenizer_dir, self.logs_dir = hub, repo_id, run.tokenizer, run.logs
        self.staging_root, self.retries, self.wait = run.checkpoints / STAGING, retries, wait
        self.lock, self.waiting, self.worker = threading.Lock(), None, None
        self.pushed_step, self.failure = None, None

    def push(self, folder: Path) -> None:
        """Called on the main process once `folder`'s marker is written; returns at once."""
        stage = self.staging_root / folder.name
        shutil.rmtree(stage, ignore_errors=True)
        _link_tree(folder, stage)
        _link_tree(self.tokenizer_dir, stage / TOKENIZER_FOLDER)
        (stage / LOGS_FOLDER).mkdir()
        for name in LOG_FILES:  # copied, not linked: the history grows in place while the upload reads it
            if (self.logs_dir / name).is_file():
                shutil.copyfile(self.logs_dir / name, stage / LOGS_FOLDER / name)
        with self.lock:
            if self.waiting is not None:  # an older save nobody uploaded yet: the newer one replaces it
                shutil.rmtree(self.waiting, ignore_errors=True)
            self.waiting = stage
            if self.worker is None:  # the worker clears it under this lock when it has nothing left
                self.worker = threading.Thread(target=self._upload_waiting, name="gpt2zh-hub-push", daemon=True)
                self.worker.start()

    def _upload_waiting(self) -> None:
        from gpt2zh.training.checkpoints import checkpoint_step

        while True:
            with self.lock:
                stage, self.waiting = self.waiting, None
                if stage is None:
                    self.worker = None
                    return
            try:
                if self.hub.atomic_folder_commits:
                    self._upload(stage, HUB_FOLDER, replace_folder=True)
                else:
                    self._upload_in_steps(stage)
                self.pushed_step, self.failure = checkpoint_step(stage), None
                log.info("pretrain: %s is on %s (%s)", stage.name, self.hub.label, self.repo_id)
            except Exception as err:  # never ends training: the next checkpoint is pushed again
                self.failure = err if isinstance(err, UserError) else UserError(f"{type(err).__name__}: {err}")
                log.warning("pretrain: pushing %s to %s failed (%s); the next checkpoint is pushed again",
                            stage.name, self.repo_id, self.failure.message)
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    def _upload(self, folder: Path, path_in_repo: str, replace_folder: bool = False) -> None:
        from gpt2zh.remote.upload import upload_with_retries
        from gpt2zh.training.checkpoints import checkpoint_step

        upload_with_retries(self.hub, self.repo_id, folder, f"checkpoint {checkpoint_step(folder)} (gpt2zh)",
                            self.retries, self.wait, path_in_repo=path_in_repo, replace_folder=replace_folder,
                            failure=_checkpoint_push_failure)

    def _upload_in_steps(self, stage: Path) -> None:
        """Files, then the marker, then the pointer, each landing after the one before: the pointer always
        names a folder whose marker, and so every file, is there (RA4 on a hub without atomic commits)."""
        from gpt2zh.training.checkpoints import checkpoint_step

        folder = f"{STEP_FOLDERS}/{stage.name}"
        marker, pointer = (stage.parent / f"{stage.name}.{part}" / stage.name for part in ("marker", "pointer"))
        try:
            marker.mkdir(parents=True, exist_ok=True)
            os.replace(stage / MARKER, marker / MARKER)
            pointer.mkdir(parents=True, exist_ok=True)
            (pointer / POINTER).write_text(json.dumps({"folder": folder, "step": checkpoint_step(stage)}) + "\n",
                                           encoding="utf-8")
            self._upload(stage, folder, replace_folder=True)
            self._upload(marker, folder)
            self._upload(pointer, "")
        finally:
            shutil.rmtree(marker.parent, ignore_errors=True)
            shutil.rmtree(pointer.parent, ignore_errors=True)
        try:  # space only: the pointer no longer names them
            for older in _other_step_folders(self.hub, self.repo_id, folder):
                self.hub.delete_folder(self.repo_id, older, f"remove {older} (gpt2zh: replaced by {folder})")
        except Exception as err:
            log.warning("pretrain: could not remove older checkpoints from %s (%s); the next checkpoint tries again",
                        self.repo_id, type(err).__name__)

    def finish(self) -> None:
        """Training is over (or stopping): wait for the uploads, then say where the last checkpoint is."""
        with self.lock:
            worker = self.worker
        if worker is not None:
            log.info("pretrain: waiting for the checkpoint upload to %s to finish…", self.repo_id)
            worker.join()
        shutil.rmtree(self.staging_root, ignore_errors=True)
        held = f"checkpoint-{self.pushed_step}" if self.pushed_step is not None else "no checkpoint of this run"
        where = f"{self.repo_id}/{folder_words(self.hub)}"
        if self.failure is not None:
            log.warning("pretrain: the last checkpoint upload failed (%s); %s holds %s", self.failure.message, where,
                        held)
        elif self.pushed_step is not None:
            log.info("pretrain: %s holds %s", where, held)


def _other_step_folders(hub: Hub, repo_id: str, keep: str) -> list[str]:
    commit = hub.resolve(repo_id, "model", hub.default_revision)
    folders = {"/".join(entry.path.split("/")[:2]) for entry in hub.list_files(repo_id, "model", commit, STEP_FOLDERS)}
    return sorted(folder for folder in folders if folder != keep)


def _checkpoint_push_failure(hub: Hub, repo_id: str, folder: Path, err: Exception, attempts: int) -> UserError:
    """One commit is all or nothing: the Hub keeps the previous checkpoint, and the next one is pushed again."""
    from gpt2zh.remote.upload import describe

    return UserError(f"push to {repo_id}/{folder_words(hub)} failed after {attempts} attempt(s): {describe(err, hub)}",
                     "the next checkpoint is pushed again")


def checkpoint_pusher(config: Config, run) -> CheckpointPusher:
    return CheckpointPusher(open_hub(config.hub.provider), config.hub.repo_id, run, config.hub.max_retries,
                            config.hub.retry_wait_seconds)
