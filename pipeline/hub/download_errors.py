"""What the Hub or the network said when a download failed, as one line naming the flag and the fix.

Shared by corpora (`--data-files hf://datasets/...`) and models (`--model-init-from`, `--model`):
huggingface_hub raises the same errors for both, and a user reads the same advice for both.
"""

from pipeline.errors import UserError

LOGIN = "set HF_TOKEN or run `hf auth login`"


def explain_hub_error(err: Exception, where: str, kind: str, repo_id: str, revision: str) -> UserError | None:
    """A one-line UserError for what the Hub or the network said, or None for our own bugs.
    where: the flag and value as typed; kind: 'dataset' or 'model'."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = f"{kind} {repo_id}"
    page = f"{constants.ENDPOINT}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
    # hf_hub_download reports a failed connection as "not in the local cache"; the cause says why.
    if isinstance(err, LocalEntryNotFoundError) and err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, GatedRepoError):  # before its parent class, RepositoryNotFoundError
        return UserError(f"{where}: {repo} is gated: downloads need the token of an account that accepted its "
                         "conditions", f"accept them at {page}, then {LOGIN} with that account")
    if isinstance(err, RepositoryNotFoundError):  # the Hub answers the same for private repositories
        return UserError(f"{where}: {repo} not found, or private and your token cannot read it",
                         f"check the name at {page}; for a private {kind} {LOGIN}")
    if isinstance(err, RevisionNotFoundError):
        return UserError(f"{where}: {repo} has no branch, tag or commit {revision!r}",
                         "name an existing revision after '@' (default: main); write a '/' in a branch name as %2F")
    if isinstance(err, RemoteEntryNotFoundError):
        return UserError(f"{where}: {repo}@{revision} lacks a file it needs ({str(err).splitlines()[0]})",
                         "check that the revision holds the complete model (config.json, weights, tokenizer)")
    if isinstance(err, DisabledRepoError):
        return UserError(f"{where}: {repo} has been disabled on the Hub", f"use another {kind}")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code
        if status == 401:
            return UserError(f"{where}: the Hub rejected your Hugging Face token (HTTP 401)",
                             f"the token is invalid or expired: {LOGIN} with a valid one")
        if status == 403:
            return UserError(f"{where}: your token may not read {repo} (HTTP 403)",
                             "use a token with read access to it (a fine-grained token must list the repository)")
        if status == 429:
            return UserError(f"{where}: the Hub is rate-limiting requests (HTTP 429)",
                             f"wait a few minutes and rerun; logged-in users get higher limits ({LOGIN})")
        return UserError(f"{where}: the Hub at {constants.ENDPOINT} answered HTTP {status} for {repo}",
                         "retry later; files already downloaded are not downloaded again")
    if isinstance(err, OfflineModeIsEnabled):
        return UserError(f"{where}: offline mode is on (HF_HUB_OFFLINE), but {repo} is not complete in the "
                         "HF cache", "unset HF_HUB_OFFLINE; files already in the HF cache are not downloaded again")
    if isinstance(err, (httpx2.TransportError, LocalEntryNotFoundError)):
        return UserError(f"{where}: cannot reach the Hub at {constants.ENDPOINT} ({type(err).__name__})",
                         "check the network, the proxy and HF_ENDPOINT, then rerun: finished downloads are kept "
                         "and an interrupted one resumes")
    return None
