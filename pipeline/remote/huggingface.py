"""The Hugging Face Hub (or a mirror named by HF_ENDPOINT), through huggingface_hub.

The token is huggingface_hub's own (HF_TOKEN or `hf auth login`): nothing here reads, passes or prints it.
huggingface_hub is imported inside the methods: it reads HF_ENDPOINT and HF_HOME once, at import (G13).
"""

import contextlib
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.remote.contract import Commit, Identity, Kind, MissingOnHub, RemoteFile

LOGIN = "set HF_TOKEN or run `hf auth login`"
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class HuggingFaceHub:
    name = "huggingface"
    label = "the Hub"
    brand = "Hugging Face"
    cache_name = "HF cache"
    scheme = "hf://"
    default_revision = "main"
    token_variable = "HF_TOKEN"
    endpoint_variable = "HF_ENDPOINT"
    token_fix = "create a write token at https://huggingface.co/settings/tokens, then set HF_TOKEN or run " \
                "`hf auth login`"
    atomic_folder_commits = True  # one commit: additions and delete_patterns together

    def __init__(self):
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi()
        return self._api

    @property
    def endpoint(self) -> str:
        from huggingface_hub import constants

        return constants.ENDPOINT

    def has_token(self) -> bool:
        from huggingface_hub import get_token

        return bool(get_token())

    def whoami(self) -> Identity:
        identity = self.api.whoami()
        role = identity.get("auth", {}).get("accessToken", {}).get("role")
        namespaces = {identity.get("name")} | {org.get("name") for org in identity.get("orgs", [])}
        return Identity(identity.get("name", "?"), frozenset(n for n in namespaces if n), read_only=role == "read")

    def create_repo(self, repo_id: str, private: bool) -> None:
        self.api.create_repo(repo_id, private=private, exist_ok=True)

    def upload_folder(self, repo_id: str, folder: Path, message: str, path_in_repo: str = "",
                      replace_folder: bool = False) -> Commit:
        commit = self.api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message,
                                        path_in_repo=path_in_repo or None,
                                        delete_patterns="*" if replace_folder else None)
        return Commit(commit.oid, commit.commit_url)

    def delete_folder(self, repo_id: str, path_in_repo: str, message: str) -> None:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        with contextlib.suppress(RemoteEntryNotFoundError):  # nothing there to delete
            self.api.delete_folder(path_in_repo, repo_id=repo_id, commit_message=message)

    def resolve(self, repo_id: str, kind: Kind, revision: str) -> str:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            return self.api.repo_info(repo_id, repo_type=kind, revision=revision, expand=["sha"]).sha
        except RepositoryNotFoundError as err:
            raise MissingOnHub(str(err)) from err

    def list_files(self, repo_id: str, kind: Kind, commit: str, root: str = "") -> list[RemoteFile]:
        from huggingface_hub import RepoFile
        from huggingface_hub.errors import RemoteEntryNotFoundError

        try:
            entries = list(self.api.list_repo_tree(repo_id, root or None, recursive=True, revision=commit,
                                                   repo_type=kind))
        except RemoteEntryNotFoundError:  # no such folder: nothing in it
            return []
        return sorted((RemoteFile(e.path, e.size, e.lfs.sha256 if e.lfs else e.blob_id)
                       for e in entries if isinstance(e, RepoFile)), key=lambda f: f.path)

    def download(self, repo_id: str, kind: Kind, commit: str, patterns: list[str], into: Path | None = None) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, repo_type=kind, revision=commit, allow_patterns=patterns,
                                      local_dir=into))

    def download_file(self, repo_id: str, kind: Kind, commit: str, path: str, into: Path | None = None) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

        try:
            return Path(hf_hub_download(repo_id, path, repo_type=kind, revision=commit, local_dir=into))
        except (RepositoryNotFoundError, RemoteEntryNotFoundError) as err:
            raise MissingOnHub(str(err)) from err

    def cached_snapshot(self, repo_id: str, kind: Kind, commit: str) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo_id, repo_type=kind, revision=commit, local_files_only=True))
        except LocalEntryNotFoundError:
            return None

    def is_cached(self, repo_id: str, kind: Kind, commit: str, file: RemoteFile) -> bool:
        from huggingface_hub import constants, try_to_load_from_cache
        from huggingface_hub.file_download import repo_folder_name

        # The cache keeps each content once, as blobs/<content id>: a later commit's unchanged file is linked.
        blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=kind) / "blobs"
        return (blobs / file.content_id).is_file() or isinstance(
            try_to_load_from_cache(repo_id, file.path, revision=commit, repo_type=kind), str)

    def status_of(self, err: Exception) -> int | None:
        response = getattr(err, "response", None)
        return getattr(response, "status_code", None)

    def sdk_detail(self) -> str:
        return ""  # huggingface_hub puts the Hub's reason into the error itself

    def transient(self, err: Exception) -> bool:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(err, HfHubHTTPError):
            return err.response is not None and err.response.status_code in TRANSIENT_STATUS
        return isinstance(err, httpx2.TransportError)  # connection reset, refused, timed out

    def page(self, repo_id: str, kind: Kind = "model") -> str:
        return f"{self.endpoint}/{'datasets/' if kind == 'dataset' else ''}{repo_id}"

    def explain(self, err: Exception, where: str, kind: Kind, repo_id: str, revision: str) -> UserError | None:
        import httpx2
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

        repo, page = f"{kind} {repo_id}", self.page(repo_id, kind)
        if isinstance(err, MissingOnHub) and isinstance(err.__cause__, Exception):
            err = err.__cause__
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
                             "name an existing revision after '@' (default: main); write a '/' in a branch name as "
                             "%2F")
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
            return UserError(f"{where}: the Hub at {self.endpoint} answered HTTP {status} for {repo}",
                             "retry later; files already downloaded are not downloaded again")
        if isinstance(err, OfflineModeIsEnabled):
            return UserError(f"{where}: offline mode is on (HF_HUB_OFFLINE), but {repo} is not complete in the "
                             "HF cache", "unset HF_HUB_OFFLINE; files already in the HF cache are not downloaded again")
        if isinstance(err, (httpx2.TransportError, LocalEntryNotFoundError)):
            return UserError(f"{where}: cannot reach the Hub at {self.endpoint} ({type(err).__name__})",
                             "check the network, the proxy and HF_ENDPOINT (a mirror such as https://hf-mirror.com "
                             "serves downloads), then rerun: finished downloads are kept and an interrupted one "
                             "resumes")
        return None
