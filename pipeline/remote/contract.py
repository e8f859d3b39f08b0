"""What the pipeline asks of a model hub: one small interface, two implementations (huggingface.py,
modelscope.py), chosen once by `--hub-provider` or by a path's scheme (`hf://`, `ms://`).

Corpora, `--model-init-from`, stage 4 and checkpoint pushing/resuming talk only to this interface, so a third
hub is one file. Nothing here imports a hub library: the CLI imports this module before it sets HF_HOME
(PITFALLS.md G13), which Hugging Face libraries read once, at import.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Kind = Literal["model", "dataset"]


@dataclass(frozen=True)
class Identity:
    """Who the token belongs to and where it may write."""

    name: str
    namespaces: frozenset[str] | None  # None: the hub does not say (creating the repository is the check)
    read_only: bool = False


@dataclass(frozen=True)
class Commit:
    oid: str
    url: str


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository
    size: int
    content_id: str  # the hub's identity of the bytes (sha256, or a git blob id): equal ids, equal bytes


class MissingOnHub(Exception):
    """The repository, or a file asked for, is not there (never raised for a network or permission problem)."""


class Hub(Protocol):
    name: str  # "huggingface" | "modelscope": the --hub-provider value
    label: str  # "the Hub" | "ModelScope": where files are ("0 of 9 files are on the Hub")
    brand: str  # "Hugging Face" | "ModelScope": whose token ("no Hugging Face token found")
    cache_name: str  # "HF cache" | "ModelScope cache"
    scheme: str  # "hf://" | "ms://", for corpus paths
    default_revision: str  # "main" | "master"
    token_variable: str  # HF_TOKEN | MODELSCOPE_API_TOKEN
    endpoint_variable: str  # HF_ENDPOINT | MODELSCOPE_ENDPOINT
    token_fix: str  # how to get and set a write token, in one line
    # True when upload_folder lands as one commit, files and deletions together; else a folder is written in
    # several commits and readers must never see it before it is whole (pipeline/remote/checkpoints.py)
    atomic_folder_commits: bool

    @property
    def endpoint(self) -> str: ...

    def has_token(self) -> bool:
        """A token is configured (no request)."""

    def whoami(self) -> Identity:
        """The token's owner; raises the hub's own errors (explain() turns them into one line)."""

    def create_repo(self, repo_id: str, private: bool) -> None:
        """Creates a model repository, or does nothing when it exists."""

    def upload_folder(self, repo_id: str, folder: Path, message: str, path_in_repo: str = "",
                      replace_folder: bool = False) -> Commit:
        """folder's files under path_in_repo; replace_folder: files there that folder lacks are deleted."""

    def delete_folder(self, repo_id: str, path_in_repo: str, message: str) -> None:
        """Deletes every file under path_in_repo (nothing when there is none)."""

    def resolve(self, repo_id: str, kind: Kind, revision: str) -> str:
        """The commit a branch, tag or commit names now; MissingOnHub for a missing repository."""

    def list_files(self, repo_id: str, kind: Kind, commit: str, root: str = "") -> list[RemoteFile]:
        """Every file under root at commit, sorted by path ([] for a root that does not exist)."""

    def download(self, repo_id: str, kind: Kind, commit: str, patterns: list[str], into: Path | None = None) -> Path:
        """The files matching patterns at commit, into a folder (into=None: the hub's cache, reused offline);
        returns the folder that holds them under their paths in the repository."""

    def download_file(self, repo_id: str, kind: Kind, commit: str, path: str, into: Path | None = None) -> Path:
        """One file at commit; MissingOnHub when the repository or the file is not there."""

    def cached_snapshot(self, repo_id: str, kind: Kind, commit: str) -> Path | None:
        """The cached folder of a commit, without a request; None when nothing of it is cached."""

    def is_cached(self, repo_id: str, kind: Kind, commit: str, file: RemoteFile) -> bool:
        """Whether the file's bytes are in the cache already, from this commit or an earlier one (for the
        'downloaded / already cached' summaries)."""

    def status_of(self, err: Exception) -> int | None:
        """The HTTP status of a refusal the hub answered with; None when it never answered."""

    def sdk_detail(self) -> str:
        """Why the last request failed, where the SDK only logged it ('' when it says so in the error)."""

    def transient(self, err: Exception) -> bool:
        """A failure worth retrying: 5xx, 429, a dropped or refused connection."""

    def explain(self, err: Exception, where: str, kind: Kind, repo_id: str, revision: str):
        """A one-line UserError for what the hub or the network said, or None for our own bugs."""

    def page(self, repo_id: str, kind: Kind = "model") -> str:
        """The repository's web page."""
