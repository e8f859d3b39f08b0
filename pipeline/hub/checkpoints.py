"""Checkpoints on a hub, as a new machine reads them back (PITFALLS.md RA4, RA5, CN7); pushing them while
training is pipeline/hub/checkpoint_push.py.

A notebook runtime or a rented instance ends and takes its disk: with `--hub-push-checkpoints` each complete
checkpoint is on the hub, with the run's tokenizer beside it in `gpt2zh-tokenizer/`, so that a new machine
adopts it instead of training another one (RA5), and the run's history and samples in `gpt2zh-logs/`, so that
the finished model's history starts at step 0 wherever the run ended. On the Hugging Face Hub the checkpoint
is `last-checkpoint/`, replaced in one commit. A hub that writes a folder in several commits (ModelScope,
`atomic_folder_commits` False) gets each checkpoint in its own folder, `checkpoints/checkpoint-N/`, and
`last-checkpoint.json` naming the newest complete one: a reader follows the pointer at one commit and finds a
whole checkpoint there, whenever the pushing machine died.
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.remote import Hub, MissingOnHub, open_hub

# gpt2zh.training.checkpoints imports transformers: imported where used, so that stage 1 and the CLI's
# import of this module stay free of Hugging Face libraries (G13)

log = logging.getLogger("gpt2zh")
HUB_FOLDER = "last-checkpoint"
MARKER = "gpt2zh-complete.json"  # pipeline/training/checkpoints.py:MARKER
TOKENIZER_FOLDER = "gpt2zh-tokenizer"
LOGS_FOLDER = "gpt2zh-logs"
LOG_FILES = ("training_history.csv", "samples.md")
POINTER = "last-checkpoint.json"  # on a hub without atomic folder commits: {"folder": ..., "step": N}
STEP_FOLDERS = "checkpoints"


def wants_hub_checkpoint(config: Config) -> bool:
    """`--resume hub`, or `--resume auto` with checkpoints pushed to a repository."""
    resume = config.checkpoint.resume
    return bool(config.hub.repo_id) and (resume == "hub" or (resume == "auto" and config.hub.push_checkpoints))


def folder_words(hub: Hub) -> str:
    """Where a hub keeps the pushed checkpoint, for messages."""
    return f"{HUB_FOLDER}/" if hub.atomic_folder_commits else f"{STEP_FOLDERS}/ ({POINTER})"


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
    from gpt2zh.training.checkpoints import read_marker

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
    from gpt2zh.training.ranks import barrier

    if main:
        _download_checkpoint(config, run.stage("checkpoints"), fingerprint, weights, run.logs)
    barrier()


def _other_run(repo_id: str, folder: str, changes: list[str]) -> UserError:
    return UserError(f"{repo_id}/{folder} was made by a different run; changed: {', '.join(changes[:6])}",
                     "restore those settings to resume, or pass --resume never to start over (its next checkpoint "
                     "then replaces it on the hub)")


def _no_checkpoint(hub: Hub, repo_id: str) -> UserError:
    return UserError(f"--resume hub: {repo_id} has no complete {folder_words(hub)} (no {MARKER} in it)",
                     "check --hub-repo-id (the repository a run pushed its checkpoints to), or pass --resume auto "
                     "to start fresh when it has none")


def refuse_other_settings(config: Config, current: dict, view) -> None:
    """Before stage 1 (preflight): a pushed checkpoint made with other model, training or optimisation settings
    is refused now, not after stages 1-2 (an hour on a large corpus). `view` narrows both sides to settings."""
    import tempfile

    from gpt2zh.input_changes import setting_changes

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
    from gpt2zh.input_changes import changed_inputs
    from gpt2zh.training.checkpoints import problem_with

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
    from gpt2zh.input_changes import setting_changes
    from gpt2zh.rundir import read_manifest

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
