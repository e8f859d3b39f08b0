"""Checkpoints on a hub: where they are and how a reader finds a whole one (PITFALLS.md RA4, RA5, CN7). Pushing
them while training is pipeline/training/hub_push.py, resuming from one pipeline/training/hub_resume.py, stage 1
adopting the tokenizer pushed with one tokenizer/pushed.py.

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
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.remote import Hub, MissingOnHub, open_hub

log = logging.getLogger("gpt2zh")
HUB_FOLDER = "last-checkpoint"
MARKER = "gpt2zh-complete.json"  # a checkpoint is complete when this file, written last, is in it
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


def explained(hub: Hub, err: Exception, repo_id: str) -> UserError:
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


def pushed_checkpoint(hub: Hub, repo_id: str, insist: bool, into: Path) -> Pushed | None:
    """The repository's pushed checkpoint, or None; a missing one is refused when the user insists
    (`--resume hub`)."""
    try:
        commit = hub.resolve(repo_id, "model", hub.default_revision)
        folder = HUB_FOLDER
        if not hub.atomic_folder_commits:
            pointer = hub.download_file(repo_id, "model", commit, POINTER, into)
            named = json.loads(pointer.read_text(encoding="utf-8"))
            if not isinstance(named, dict) or not named.get("folder"):
                raise ValueError  # hand-edited, or another program's: no checkpoint (never a marker at the root)
            folder = str(named["folder"])
        path = hub.download_file(repo_id, "model", commit, f"{folder}/{MARKER}", into)
    except (MissingOnHub, ValueError):  # no repository, pointer or marker; an unreadable pointer
        if insist:
            raise _no_checkpoint(hub, repo_id) from None
        return None
    except Exception as err:  # the network or the hub: one line, never a fresh start over pushed work
        raise explained(hub, err, repo_id) from None
    marker = read_marker(path.parent)
    if marker is None:  # there, but unreadable
        if insist:
            raise _no_checkpoint(hub, repo_id)
        return None
    return Pushed(marker, commit, folder)


def fetch_pushed(hub: Hub, repo_id: str, commit: str, pattern: str, into: Path) -> None:
    """The files of `pattern` at exactly the commit the marker was read at (all from one push)."""
    try:
        hub.download(repo_id, "model", commit, [pattern], into)
    except Exception as err:
        raise explained(hub, err, repo_id) from None


def other_run(repo_id: str, folder: str, changes: list[str]) -> UserError:
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
        pushed = pushed_checkpoint(open_hub(config.hub.provider), config.hub.repo_id,
                                    config.checkpoint.resume == "hub", Path(scratch))
    if pushed is None:
        return
    if changes := setting_changes(view(pushed.marker.get("inputs", {})), view(current)):
        raise other_run(config.hub.repo_id, pushed.folder, changes)


def read_marker(folder: Path) -> dict | None:
    """A checkpoint's completion marker, or None when it is missing or unreadable."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
