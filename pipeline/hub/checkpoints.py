"""Checkpoints on the Hub: pushed complete or not at all, and brought back on a new machine (PITFALLS.md RA4).

A notebook runtime ends and takes its disk: with `--hub-push-checkpoints` each checkpoint goes to the
repository's `last-checkpoint/` once our completion marker is in it, in one commit (a runtime killed
mid-upload leaves the previous commit's checkpoint whole), with the run's tokenizer beside it in
`last-checkpoint/gpt2zh-tokenizer/`, so that a new machine adopts it instead of training another one
(RA5), and the run's history and samples in `last-checkpoint/gpt2zh-logs/`, so that the finished model's
history starts at step 0 wherever the run ended. Uploads run in one background thread; a save made while
one is uploading waits for it and only the newest waiting save is uploaded; training's end waits for the
last. The files are hard-linked into a staging folder first, so the Trainer rotating a checkpoint away
cannot tear an upload.

A hub that writes a folder in several commits (ModelScope, `atomic_folder_commits` False) gets each checkpoint
in its own folder, `checkpoints/checkpoint-N/`, the marker uploaded after every other file of it, then
`last-checkpoint.json` naming that folder, then the older folders deleted: a reader follows the pointer at one
commit and finds a whole checkpoint there, whenever the pushing machine died.
"""

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.config.schema import Config
from pipeline.errors import UserError
from pipeline.remote import Hub, MissingOnHub, open_hub

# pipeline.training.checkpoints imports transformers: imported where used, so that stage 1 and the CLI's
# import of this module stay free of Hugging Face libraries (G13)

log = logging.getLogger("gpt2zh")
HUB_FOLDER = "last-checkpoint"
MARKER = "gpt2zh-complete.json"  # pipeline/training/checkpoints.py:MARKER
TOKENIZER_FOLDER = "gpt2zh-tokenizer"
LOGS_FOLDER = "gpt2zh-logs"
LOG_FILES = ("training_history.csv", "samples.md")
STAGING = ".hub-upload"
POINTER = "last-checkpoint.json"  # on a hub without atomic folder commits: {"folder": ..., "step": N}
STEP_FOLDERS = "checkpoints"


def wants_hub_checkpoint(config: Config) -> bool:
    """`--resume hub`, or `--resume auto` with checkpoints pushed to a repository."""
    resume = config.checkpoint.resume
    return bool(config.hub.repo_id) and (resume == "hub" or (resume == "auto" and config.hub.push_checkpoints))


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
    def __init__(self, hub: Hub, repo_id: str, tokenizer_dir: Path, logs_dir: Path, checkpoints: Path,
                 retries: int, wait: float):
        self.hub, self.repo_id, self.tokenizer_dir, self.logs_dir = hub, repo_id, tokenizer_dir, logs_dir
        self.staging_root, self.retries, self.wait = checkpoints / STAGING, retries, wait
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
        from pipeline.training.checkpoints import checkpoint_step

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
            except Exception as err:  # never ends training: the next checkpoint is pushed again
                self.failure = err if isinstance(err, UserError) else UserError(f"{type(err).__name__}: {err}")
                log.warning("pretrain: pushing %s to %s failed (%s); the next checkpoint is pushed again",
                            stage.name, self.repo_id, self.failure.message)
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    def _upload(self, folder: Path, path_in_repo: str, replace_folder: bool = False) -> None:
        from pipeline.hub.upload import upload_with_retries
        from pipeline.training.checkpoints import checkpoint_step

        upload_with_retries(self.hub, self.repo_id, folder, f"checkpoint {checkpoint_step(folder)} (gpt2zh)",
                            self.retries, self.wait, path_in_repo=path_in_repo, replace_folder=replace_folder,
                            failure=_checkpoint_push_failure)

    def _upload_in_steps(self, stage: Path) -> None:
        """Files, then the marker, then the pointer, each landing after the one before: the pointer always
        names a folder whose marker, and so every file, is there (RA4 on a hub without atomic commits)."""
        from pipeline.training.checkpoints import checkpoint_step

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
        where = f"{self.repo_id}/{_folder_words(self.hub)}"
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
    from pipeline.hub.upload import describe

    return UserError(f"push to {repo_id}/{_folder_words(hub)} failed after {attempts} attempt(s): {describe(err, hub)}",
                     "the next checkpoint is pushed again")


def _folder_words(hub: Hub) -> str:
    return f"{HUB_FOLDER}/" if hub.atomic_folder_commits else f"{STEP_FOLDERS}/ ({POINTER})"


def checkpoint_pusher(config: Config, run) -> CheckpointPusher:
    return CheckpointPusher(open_hub(config.hub.provider), config.hub.repo_id, run.stage("tokenizer"), run.logs,
                            run.stage("checkpoints"), config.hub.max_retries, config.hub.retry_wait_seconds)


def _explained(hub: Hub, err: Exception, repo_id: str) -> UserError:
    explained = hub.explain(err, f"--resume (the checkpoint pushed to --hub-repo-id {repo_id})", "model",
                            repo_id, hub.default_revision)
    if explained is None:
        raise err
    return UserError(explained.message, f"{explained.fix}; or pass --resume never to start over without it")


@dataclass(frozen=True)
class Pushed:
    """The checkpoint a repository holds, as read at one commit."""

    marker: dict
    commit: str
    folder: str  # in the repository: last-checkpoint, or the folder the pointer names


def _pushed_checkpoint(hub: Hub, repo_id: str, insist: bool, into: Path) -> Pushed | None:
    """The repository's pushed checkpoint, or None; a missing one is refused when the user insists
    (`--resume hub`)."""
    from pipeline.training.checkpoints import read_marker

    try:
        commit = hub.resolve(repo_id, "model", hub.default_revision)
        folder = HUB_FOLDER
        if not hub.atomic_folder_commits:
            pointer = hub.download_file(repo_id, "model", commit, POINTER, into)
            folder = str(json.loads(pointer.read_text(encoding="utf-8")).get("folder", ""))
        path = hub.download_file(repo_id, "model", commit, f"{folder}/{MARKER}", into)
    except (MissingOnHub, ValueError):  # no repository, pointer or marker; an unreadable pointer
        if insist:
            raise _no_checkpoint(hub, repo_id) from None
        return None
    except Exception as err:  # the network or the hub: one line, never a fresh start over pushed work
        raise _explained(hub, err, repo_id) from None
    marker = read_marker(path.parent)
    if marker is None:  # there, but unreadable
        if insist:
            raise _no_checkpoint(hub, repo_id)
        return None
    return Pushed(marker, commit, folder)


def _fetch(hub: Hub, repo_id: str, commit: str, pattern: str, into: Path) -> None:
    """The files of `pattern` at exactly the commit the marker was read at (all from one push)."""
    try:
        hub.download(repo_id, "model", commit, [pattern], into)
    except Exception as err:
        raise _explained(hub, err, repo_id) from None


def resume_from_hub(config: Config, run, fingerprint: str, weights: dict, main: bool) -> None:
    """No usable local checkpoint: the Hub's, downloaded into checkpoints/checkpoint-N by the main process
    (which replaces a torn local one of the same step); every rank then selects again."""
    from pipeline.training.ranks import barrier

    if main:
        _download_checkpoint(config, run.stage("checkpoints"), fingerprint, weights, run.logs)
    barrier()


def _other_run(repo_id: str, folder: str, changes: list[str]) -> UserError:
    return UserError(f"{repo_id}/{folder} was made by a different run; changed: {', '.join(changes[:6])}",
                     "restore those settings to resume, or pass --resume never to start over (its next checkpoint "
                     "then replaces it on the hub)")


def _no_checkpoint(hub: Hub, repo_id: str) -> UserError:
    return UserError(f"--resume hub: {repo_id} has no complete {_folder_words(hub)} (no {MARKER} in it)",
                     "check --hub-repo-id (the repository a run pushed its checkpoints to), or pass --resume auto "
                     "to start fresh when it has none")


def refuse_other_settings(config: Config, current: dict, view) -> None:
    """Before stage 1 (preflight): a pushed checkpoint made with other model, training or optimisation settings
    is refused now, not after stages 1-2 (an hour on a large corpus). `view` narrows both sides to settings."""
    import tempfile

    from pipeline.input_changes import setting_changes

    with tempfile.TemporaryDirectory(prefix="gpt2zh-marker-") as scratch:
        pushed = _pushed_checkpoint(open_hub(config.hub.provider), config.hub.repo_id,
                                    config.checkpoint.resume == "hub", Path(scratch))
    if pushed is None:
        return
    if changes := setting_changes(view(pushed.marker.get("inputs", {})), view(current)):
        raise _other_run(config.hub.repo_id, pushed.folder, changes)


def _restore_logs(pushed: Path, logs_dir: Path) -> None:
    """The history and samples up to the checkpoint, where this machine has none (HistoryCallback keeps the
    rows up to the resumed step)."""
    for name in LOG_FILES:
        if (pushed / name).is_file() and not (logs_dir / name).exists():
            logs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pushed / name, logs_dir / name)


def _download_checkpoint(config: Config, checkpoints: Path, fingerprint: str, weights: dict, logs_dir: Path) -> None:
    from pipeline.input_changes import changed_inputs
    from pipeline.training.checkpoints import problem_with

    repo_id, insist, hub = config.hub.repo_id, config.checkpoint.resume == "hub", open_hub(config.hub.provider)
    staging = checkpoints / f".hub-download-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        pushed = _pushed_checkpoint(hub, repo_id, insist, staging)
        if pushed is None:
            log.info("pretrain: %s has no pushed checkpoint to resume from", repo_id)
            return
        marker, downloaded = pushed.marker, staging / pushed.folder
        if marker.get("fingerprint") != fingerprint:
            raise _other_run(repo_id, pushed.folder,
                             changed_inputs(marker.get("inputs", {}), weights) or ["the dataset or tokenizer"])
        _fetch(hub, repo_id, pushed.commit, f"{pushed.folder}/*", staging)
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


MANIFEST_OWN_KEYS = ("stage", "fingerprint", "created_utc", "gpt2zh_version", "inputs", "files")


def adopt_pushed_tokenizer(config: Config, output) -> dict | None:
    """Stage 1 on a new machine (RA5): the tokenizer pushed beside this run's last checkpoint, when it was
    made from the same corpus and settings (a retrained SentencePiece model need not be identical), else None."""
    from pipeline.input_changes import setting_changes
    from pipeline.rundir import read_manifest

    repo_id, insist, hub = config.hub.repo_id, config.checkpoint.resume == "hub", open_hub(config.hub.provider)
    download = output.final.parent / f".hub-tokenizer-{os.getpid()}"
    shutil.rmtree(download, ignore_errors=True)
    try:
        checkpoint = _pushed_checkpoint(hub, repo_id, insist, download)
        if checkpoint is None:
            return None
        marker, commit = checkpoint.marker, checkpoint.commit
        _fetch(hub, repo_id, commit, f"{checkpoint.folder}/{TOKENIZER_FOLDER}/*", download)
        pushed = download / checkpoint.folder / TOKENIZER_FOLDER
        manifest = read_manifest(pushed)
        if manifest is None and not insist:  # torn by hand, or an earlier format: stage 3 decides on the checkpoint
            log.info("train-tokenizer: the tokenizer pushed with %s's checkpoint is incomplete; training one", repo_id)
            return None
        if manifest is None or manifest.get("fingerprint") != output.fingerprint:
            # that checkpoint cannot be this run's: refused now, not after stage 2 (as stage 3 would)
            changes = setting_changes((manifest or {}).get("inputs", {}), output.fingerprint_parts)
            raise _other_run(repo_id, checkpoint.folder, changes or ["the tokenizer pushed with it is incomplete"])
        with output.build() as staging:
            for path in sorted(pushed.rglob("*")):
                if path.is_file() and path.name != "manifest.json":
                    (staging / path.relative_to(pushed)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, staging / path.relative_to(pushed))
            output.manifest_extra.update({k: v for k, v in manifest.items() if k not in MANIFEST_OWN_KEYS})
            output.manifest_extra["pushed_with_checkpoint"] = {"repo_id": repo_id, "commit": commit,
                                                               "step": marker.get("step")}
        return read_manifest(output.final)
    finally:
        shutil.rmtree(download, ignore_errors=True)
