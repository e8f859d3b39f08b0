"""One commit with everything, retried on transient failures, and a precise report when it fails."""

import logging
import time
from pathlib import Path

from pipeline.errors import UserError

log = logging.getLogger("gpt2zh")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


def _transient(err: Exception) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        return err.response is not None and err.response.status_code in TRANSIENT_STATUS
    return isinstance(err, httpx2.TransportError)  # connection reset, refused, timed out


def describe(err: Exception) -> str:
    response = getattr(err, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    text = " ".join(str(err).split())  # the Hub's own words, e.g. why it refused the card's metadata
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _fix(err: Exception) -> str:
    if "metadata in README.md" in str(err):
        return "the Hub refused the model card's metadata: set --hub-license to a license id the Hub knows " \
               "(mit, apache-2.0, cc-by-4.0, ...), then rerun `gpt2zh push`"
    return "rerun `gpt2zh push` with the same --run-dir; files already there are skipped"


def remote_state(api, repo_id: str, folder: Path) -> tuple[list[str], list[str]]:
    """(files already on the Hub with the same content, files not there) — after a failed push."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    try:
        remote = {entry.path: entry for entry in api.list_repo_tree(repo_id, recursive=True)}
    except Exception:  # the Hub is unreachable: nothing is confirmed
        remote = {}
    uploaded, missing = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        entry = remote.get(name)
        lfs = getattr(entry, "lfs", None)
        with open(path, "rb") as handle:
            same = entry is not None and (sha_fileobj(handle).hex() == lfs.sha256 if lfs else
                                          git_hash(path.read_bytes()) == entry.blob_id)
        (uploaded if same else missing).append(name)
    return uploaded, missing


def push_failure(api, repo_id: str, folder: Path, err: Exception, attempts: int) -> UserError:
    """Stage 4's report: which files are on the Hub and which are not, and how to retry."""
    uploaded, missing = remote_state(api, repo_id, folder)
    done = f"{len(uploaded)} of {len(uploaded) + len(missing)} files are on the Hub"
    not_done = f" (not uploaded: {', '.join(missing)})" if missing else ""
    return UserError(f"push to {repo_id} failed after {attempts} attempt(s): {describe(err)}; {done}{not_done}",
                     _fix(err))


def upload_with_retries(api, repo_id: str, folder: Path, message: str, retries: int, wait: float,
                        path_in_repo: str | None = None, replace_folder: bool = False, failure=push_failure):
    """api.upload_folder with exponential backoff on 5xx / 429 / dropped connections; `failure(api, repo_id,
    folder, err, attempts)` makes the error when it still fails. replace_folder: files under path_in_repo
    that the folder lacks are deleted in the same commit (a checkpoint replaces the previous one)."""
    attempt = 0
    while True:
        try:
            return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message,
                                     path_in_repo=path_in_repo, delete_patterns="*" if replace_folder else None)
        except Exception as err:
            if not _transient(err) or attempt >= retries:
                raise failure(api, repo_id, folder, err, attempt + 1) from None
            delay = wait * 2**attempt
            attempt += 1
            log.warning("push: %s from the Hub; retry %d of %d in %.1f s", describe(err), attempt, retries, delay)
            time.sleep(delay)
