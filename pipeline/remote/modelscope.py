"""ModelScope (modelscope.cn, or the endpoint MODELSCOPE_ENDPOINT names), through the official SDK's hub client.

`modelscope_hub.HubApi` is what the `modelscope` package's own hub functions delegate to; it is used directly
because it keeps the SDK's error classes (the `modelscope.hub` wrappers turn a missing repository or a rejected
token into a bare requests.HTTPError) and imports in a fraction of a second. The token is the SDK's own
(MODELSCOPE_API_TOKEN, else what `modelscope login` saved); nothing here prints, logs or writes it, and the
SDK's `login` (which saves the token to disk) is never called.

ModelScope writes a folder in several commits (batches of files, then deletions), so `atomic_folder_commits` is
False and pipeline/remote/checkpoints.py never lets a reader see a half-written checkpoint (PITFALLS.md CN7).
"""

import contextlib
import logging
import os
import re
import sys
import threading
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.remote.contract import Commit, Identity, Kind, MissingOnHub, RemoteFile

COMMIT = re.compile(r"[0-9a-f]{40}")
TOKEN_PAGE = "https://modelscope.cn/my/myaccesstoken"
SDK_LOGGER = "modelscope_hub"


class _NoSuchRevision(Exception):
    pass


class _LastSdkError(logging.Handler):
    """The SDK logs why a file failed to upload (a 403, say) and raises only "N file(s) failed": keep its words
    for our one line instead of letting its own handler print them."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = " ".join(record.getMessage().split())[:300]


class _MutedThreads:
    """sys.stdout, minus what the threads in `muted` print: the SDK prints a 12-line "Upload Report" for every
    commit, into our summaries and, from the checkpoint thread, into training's progress."""

    def __init__(self, real):
        self.real, self.muted = real, set()

    def write(self, text: str) -> int:
        return len(text) if threading.get_ident() in self.muted else self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)


@contextlib.contextmanager
def _sdk_prints_muted():
    if not isinstance(sys.stdout, _MutedThreads):
        sys.stdout = _MutedThreads(sys.stdout)
    stdout, me = sys.stdout, threading.get_ident()
    stdout.muted.add(me)
    try:
        yield
    finally:
        stdout.muted.discard(me)


def _quiet_sdk_logger() -> _LastSdkError:
    logger = logging.getLogger(SDK_LOGGER)
    keeper = next((h for h in logger.handlers if isinstance(h, _LastSdkError)), None)
    if keeper is None:
        for handler in list(logger.handlers):  # its INFO lines on stderr would break our one-line errors
            logger.removeHandler(handler)
        keeper = _LastSdkError()
        logger.addHandler(keeper)
        logger.propagate = False
    return keeper


class ModelScopeHub:
    name = "modelscope"
    label = "ModelScope"
    brand = "ModelScope"
    cache_name = "ModelScope cache"
    scheme = "ms://"
    default_revision = "master"
    token_variable = "MODELSCOPE_API_TOKEN"
    endpoint_variable = "MODELSCOPE_ENDPOINT"
    token_fix = f"create a token at {TOKEN_PAGE}, then set MODELSCOPE_API_TOKEN (or run `modelscope login`)"
    atomic_folder_commits = False

    def __init__(self):
        self._api = self._config = self._errors = None

    @property
    def _settings(self):
        """The SDK's HubConfig: token (MODELSCOPE_API_TOKEN, else the saved login) and cache folder
        (MODELSCOPE_CACHE, else ~/.cache/modelscope)."""
        self.api  # noqa: B018 (made with the client)
        return self._config

    @property
    def api(self):
        if self._api is None:
            from modelscope_hub import HubApi
            from modelscope_hub.config import HubConfig

            self._errors = _quiet_sdk_logger()
            # a fresh config, not the SDK's process-wide one: the endpoint and token in force now, and no probing
            # of the other ModelScope site when MODELSCOPE_ENDPOINT is unset
            self._config = HubConfig(endpoint=self.endpoint)
            self._api = HubApi(config=self._config)
        return self._api

    @property
    def endpoint(self) -> str:
        return (os.environ.get(self.endpoint_variable) or "https://modelscope.cn").rstrip("/")

    def has_token(self) -> bool:
        return bool(self._settings.token)

    def whoami(self) -> Identity:
        user = self.api.whoami()
        # the SDK does not say which organisations the token may write to: create_repo is the check (a 403)
        return Identity(user.username or "?", None)

    def create_repo(self, repo_id: str, private: bool) -> None:
        from modelscope_hub.errors import is_repo_exists_error

        try:
            self.api.create_repo(repo_id, "model", visibility="private" if private else "public")
        except Exception as err:
            if not is_repo_exists_error(err):
                raise

    def upload_folder(self, repo_id: str, folder: Path, message: str, path_in_repo: str = "",
                      replace_folder: bool = False) -> Commit:
        from gpt2zh.console import quiet

        # use_cache=False: the SDK's resumable cache skips files it remembers sending, whatever the hub holds now.
        # No bars from the checkpoint thread: they would cut through training's progress bar.
        background = threading.current_thread() is not threading.main_thread()
        with _sdk_prints_muted():
            result = self.api.upload_folder(repo_id, "model", folder, path_in_repo=path_in_repo,
                                            commit_message=message, use_cache=False, sync_remote_repo=replace_folder,
                                            disable_tqdm=quiet() or background)
        commits = result if isinstance(result, list) else [result] if result else []
        oid = next((c.get("oid") for c in reversed(commits) if isinstance(c, dict) and c.get("oid")), None)
        oid = oid or self.resolve(repo_id, "model", self.default_revision)  # nothing new to commit
        return Commit(oid, f"{self.page(repo_id)}/commit/{oid}")

    def delete_folder(self, repo_id: str, path_in_repo: str, message: str) -> None:
        commit = self.resolve(repo_id, "model", self.default_revision)
        paths = [f.path for f in self.list_files(repo_id, "model", commit, path_in_repo)]
        if paths:
            with _sdk_prints_muted():
                self.api.delete_files(repo_id, "model", paths, commit_message=message)

    def resolve(self, repo_id: str, kind: Kind, revision: str) -> str:
        from modelscope_hub.errors import NotExistError

        try:
            named = {entry.get("Revision"): entry for entry in self.api.list_repo_revisions(repo_id, kind)}
        except NotExistError as err:
            raise MissingOnHub(str(err)) from err
        if COMMIT.fullmatch(revision):
            return revision
        if revision not in named:
            raise _NoSuchRevision(revision)
        if commit := named[revision].get("CommitId"):
            return commit
        # the newest commit of the branch or tag: the endpoint the SDK's earlier releases read commits from
        answer = self.api.legacy._request("GET", f"{kind}s/{repo_id}/commits",
                                          params={"Ref": revision, "PageNumber": 1, "PageSize": 1})
        return answer.json()["Data"]["Commit"][0]["Id"]

    def list_files(self, repo_id: str, kind: Kind, commit: str, root: str = "") -> list[RemoteFile]:
        from modelscope_hub.errors import NotExistError

        try:
            entries = self.api.list_repo_files(repo_id, kind, revision=commit, recursive=True)
        except NotExistError as err:
            raise MissingOnHub(str(err)) from err
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        return sorted((RemoteFile(e.path, e.size, e.sha256 or e.blob_id or "") for e in entries
                       if e.type != "tree" and e.path.startswith(prefix)), key=lambda f: f.path)

    def _snapshot(self, repo_id: str, kind: Kind, commit: str) -> Path:
        owner, name = repo_id.split("/", 1)
        return Path(self._settings.cache_dir) / f"{kind}s" / f"{owner}--{name}" / "snapshots" / commit

    def download(self, repo_id: str, kind: Kind, commit: str, patterns: list[str], into: Path | None = None) -> Path:
        # into=None: the SDK's cache keeps one snapshot folder per revision, and the revision is always a commit
        return Path(self.api.download_repo(repo_id, kind, revision=commit, local_dir=into, allow_patterns=patterns))

    def download_file(self, repo_id: str, kind: Kind, commit: str, path: str, into: Path | None = None) -> Path:
        from modelscope_hub.errors import NotExistError

        try:
            return Path(self.api.download_file(repo_id, kind, path, revision=commit, local_dir=into))
        except NotExistError as err:
            raise MissingOnHub(str(err)) from err

    def cached_snapshot(self, repo_id: str, kind: Kind, commit: str) -> Path | None:
        folder = self._snapshot(repo_id, kind, commit)
        return folder if folder.is_dir() and any(folder.iterdir()) else None

    def is_cached(self, repo_id: str, kind: Kind, commit: str, file: RemoteFile) -> bool:
        path = self._snapshot(repo_id, kind, commit) / file.path
        return path.is_file() and path.stat().st_size == file.size

    def status_of(self, err: Exception) -> int | None:
        return getattr(err, "status_code", None)

    def transient(self, err: Exception) -> bool:
        from modelscope_hub.errors import NetworkError, RateLimitError, ServerError

        return isinstance(err, (NetworkError, RateLimitError, ServerError))

    def page(self, repo_id: str, kind: Kind = "model") -> str:
        return f"{self.endpoint}/{kind}s/{repo_id}"

    def sdk_detail(self) -> str:
        """What the SDK last logged as an error (why a file failed), or ''."""
        return self._errors.last if self._errors is not None else ""

    def explain(self, err: Exception, where: str, kind: Kind, repo_id: str, revision: str) -> UserError | None:
        from modelscope_hub.errors import (
            APIError,
            AuthenticationError,
            HubError,
            NetworkError,
            NotExistError,
            PermissionDeniedError,
            RateLimitError,
        )

        repo, page = f"{kind} {repo_id}", self.page(repo_id, kind)
        if isinstance(err, MissingOnHub) and isinstance(err.__cause__, Exception):
            err = err.__cause__
        if isinstance(err, _NoSuchRevision):
            return UserError(f"{where}: {repo} on ModelScope has no branch, tag or commit {revision!r}",
                             "name an existing revision after '@' (default: master)")
        if isinstance(err, AuthenticationError):
            return UserError(f"{where}: ModelScope rejected your token (HTTP 401)",
                             f"the token in MODELSCOPE_API_TOKEN is invalid or expired: {self.token_fix}")
        if isinstance(err, PermissionDeniedError):
            return UserError(f"{where}: your ModelScope token may not use {repo} (HTTP 403)",
                             "use a token of an account with access to it")
        if isinstance(err, NotExistError):  # the SDK's words add an error code and a request id, nothing more
            return UserError(f"{where}: {repo}@{revision} not found on ModelScope, or private and your token cannot "
                             "read it", f"check the name at {page}; for a private {kind} set MODELSCOPE_API_TOKEN")
        if isinstance(err, RateLimitError):
            return UserError(f"{where}: ModelScope is rate-limiting requests (HTTP 429)",
                             "wait a few minutes and rerun")
        if isinstance(err, NetworkError):
            return UserError(f"{where}: cannot reach ModelScope at {self.endpoint} ({type(err).__name__})",
                             "check the network, the proxy and MODELSCOPE_ENDPOINT, then rerun: finished downloads "
                             "are kept")
        if isinstance(err, APIError):
            return UserError(f"{where}: ModelScope at {self.endpoint} answered HTTP {err.status_code} for {repo}",
                             "retry later; files already downloaded are not downloaded again")
        if isinstance(err, HubError):  # a failed upload or download the SDK gave up on after its own retries
            detail = self.sdk_detail()
            return UserError(f"{where}: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
                             + (f" ({detail})" if detail else ""), "rerun: files already there are kept")
        return None
