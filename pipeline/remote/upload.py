"""One commit with everything, retried on transient failures, and a precise report when it fails."""

import hashlib
import logging
import time
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.remote import Hub

log = logging.getLogger("gpt2zh")


def describe(err: Exception, hub: Hub | None = None) -> str:
    if (status := hub.status_of(err) if hub else getattr(getattr(err, "response", None), "status_code", None)):
        return f"HTTP {status}"
    text = " ".join(str(err).split())  # the Hub's own words, e.g. why it refused the card's metadata
    said = f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__
    detail = hub.sdk_detail() if hub else ""  # the file's own failure, which ModelScope's SDK only logs
    return f"{said} ({detail})" if detail else said


def _fix(err: Exception) -> str:
    if "metadata in README.md" in str(err):
        return "the Hub refused the model card's metadata: set --hub-license to a license id the Hub knows " \
               "(mit, apache-2.0, cc-by-4.0, ...), then rerun `gpt2zh push`"
    return "rerun `gpt2zh push` with the same --run-dir; files already there are skipped"


def _content_ids(path: Path) -> set[str]:
    """The ids a hub may give these bytes: their sha256 (LFS, ModelScope) or their git blob id."""
    sha256, blob = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            sha256.update(chunk)
            blob.update(chunk)
    return {sha256.hexdigest(), blob.hexdigest()}


def remote_state(hub: Hub, repo_id: str, folder: Path) -> tuple[list[str], list[str]]:
    """(files already on the hub with the same content, files not there) — after a failed push."""
    try:
        commit = hub.resolve(repo_id, "model", hub.default_revision)
        remote = {entry.path: entry for entry in hub.list_files(repo_id, "model", commit)}
    except Exception:  # the hub is unreachable: nothing is confirmed
        remote = {}
    uploaded, missing = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        entry = remote.get(name)
        same = entry is not None and entry.size == path.stat().st_size and entry.content_id in _content_ids(path)
        (uploaded if same else missing).append(name)
    return uploaded, missing


def push_failure(hub: Hub, repo_id: str, folder: Path, err: Exception, attempts: int) -> UserError:
    """Stage 4's report: which files are on the hub and which are not, and how to retry."""
    uploaded, missing = remote_state(hub, repo_id, folder)
    done = f"{len(uploaded)} of {len(uploaded) + len(missing)} files are on {hub.label}"
    not_done = f" (not uploaded: {', '.join(missing)})" if missing else ""
    return UserError(f"push to {repo_id} failed after {attempts} attempt(s): {describe(err, hub)}; {done}{not_done}",
                     _fix(err))


def upload_with_retries(hub: Hub, repo_id: str, folder: Path, message: str, retries: int, wait: float,
                        path_in_repo: str = "", replace_folder: bool = False, failure=push_failure):
    """hub.upload_folder with exponential backoff on 5xx / 429 / dropped connections; `failure(hub, repo_id,
    folder, err, attempts)` makes the error when it still fails. replace_folder: files under path_in_repo
    that the folder lacks are deleted (a checkpoint replaces the previous one)."""
    attempt = 0
    while True:
        try:
            return hub.upload_folder(repo_id, folder, message, path_in_repo=path_in_repo,
                                     replace_folder=replace_folder)
        except Exception as err:
            if not hub.transient(err) or attempt >= retries:
                raise failure(hub, repo_id, folder, err, attempt + 1) from None
            delay = wait * 2**attempt
            attempt += 1
            log.warning("push: %s from %s; retry %d of %d in %.1f s", describe(err, hub), hub.label, attempt, retries,
                        delay)
            time.sleep(delay)
