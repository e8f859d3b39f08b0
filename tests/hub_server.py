"""A small local server that speaks the Hugging Face Hub's HTTP API, for upload and download tests offline.

Standard library only. It implements what huggingface_hub 2.x uses for `whoami`, `create_repo`,
`upload_folder` (preupload, LFS batch + PUT, NDJSON commit, README metadata validation), `repo_info`,
`list_repo_tree` and `snapshot_download` (resolve with ETag / X-Linked-* headers), with
HF_HUB_DISABLE_XET=1. Failures can be scheduled to test retries (a 503 on the first commit, say).

Read-only dataset and model repositories can also be seeded directly (`LocalHub.add_dataset`, `LocalHub.add_model`)
and are then read the way `dataset_info` / `model_info`, `list_repo_tree`, `hf_hub_download` and
`snapshot_download` read them: several branches or tags, each commit's tree kept and readable by its sha,
private repositories answering as the Hub does (401 without a token, 404 with a token that cannot read),
gated ones refusing downloads (GatedRepo), unknown revisions answering RevisionNotFound and missing files
EntryNotFound. A seeded model repository is read in preference to an uploaded one of the same id.

`LocalHub(..., xet=True)` answers downloads of LFS files as the Hub does for Xet-stored ones: the resolve answer
carries `X-Xet-Hash` and a token route, whose answer names a CAS server (`/xet-cas` here, which answers 404) that
huggingface_hub then downloads from instead of the endpoint, unless HF_HUB_DISABLE_XET=1.
"""

import base64
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

import yaml

from tests.local_http import JsonHandler, LocalServer

DROP = 0  # a scheduled "status" that closes the connection without answering
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".png", ".gz")
# Weights, binaries and compressed corpus shards: the Hub's default .gitattributes stores these in LFS.
SEEDED_LFS_SUFFIXES = (*LFS_SUFFIXES, ".parquet", ".arrow", ".bz2", ".xz", ".zst")
INVALID_TOKEN = "Invalid credentials in Authorization header"
LICENSES = {"mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "bsd-3-clause", "gpl-3.0",
            "openrail", "other", "unknown"}
PIPELINE_TAGS = {"text-generation", "fill-mask", "text-classification", "translation", "summarization"}


def git_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def new_commit_oid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def download_headers(entry: dict, commit: str) -> dict:
    """What `hf_hub_download` reads from a resolve answer: the commit, and the LFS sha256 as ETag for LFS files."""
    headers = {"X-Repo-Commit": commit, "ETag": f'"{entry["oid"]}"', "Content-Type": "application/octet-stream"}
    if "lfs" in entry:
        headers.update({"X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": entry["size"],
                        "ETag": f'"{entry["lfs"]["oid"]}"'})
    return headers


def file_entry(path: str, data: bytes, lfs: bool) -> dict:
    """One file as the /tree endpoint describes it."""
    item = {"type": "file", "path": path, "size": len(data), "oid": git_hash(data)}
    if lfs:
        item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
    return item


@dataclass
class Repo:
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS
    commits: list[dict] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40

    def entry(self, path: str) -> dict:
        return file_entry(path, self.files[path], path in self.lfs)


@dataclass
class SeededRepo:
    """A dataset or model repository with history: every commit's tree stays readable by its sha."""

    repo_id: str
    kind: str  # "dataset" or "model": the words the Hub's answers use
    private: bool = False
    gated: bool = False  # only the owner may download; everyone may see the info and the file list
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: content}

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    def commit_of(self, revision: str) -> str | None:
        return self.refs.get(revision) or (revision if revision in self.trees else None)

    def entry(self, commit: str, path: str) -> dict:
        return file_entry(path, self.trees[commit][path], path.endswith(SEEDED_LFS_SUFFIXES))


@dataclass
class Failure:
    method: str
    pattern: str
    status: int
    times: int = 1


class HubState:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> user name
        self.repos: dict[str, Repo] = {}
        self.datasets: dict[str, SeededRepo] = {}
        self.models: dict[str, SeededRepo] = {}
        self.objects: dict[str, bytes] = {}  # uploaded LFS objects by sha256
        self.failures: list[Failure] = []
        self.latency: list[tuple[str, str, float]] = []  # (method, path pattern, seconds): a slow network
        self.requests: list[tuple[str, str]] = []
        self.after_pinning: list = []  # pushes due right after the next revision answer (push_after_pinning)
        self.xet = False  # LocalHub(xet=True): LFS downloads advertise Xet storage
        self.lock = threading.Lock()

    def fail(self, method: str, pattern: str, status: int = 503, times: int = 1) -> None:
        """The next `times` requests matching method and path pattern get `status` (DROP: a reset)."""
        self.failures.append(Failure(method, pattern, status, times))

    def scheduled_failure(self, method: str, path: str) -> int | None:
        for failure in self.failures:
            if failure.times > 0 and failure.method == method and re.search(failure.pattern, path):
                failure.times -= 1
                return failure.status
        return None


class Handler(JsonHandler):
    state: HubState  # set by LocalHub

    # -- plumbing ---------------------------------------------------------------------------------
    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code} if code else None)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        return self.state.tokens.get(token) if token else None

    def _repo(self, repo_id: str) -> Repo | None:
        return self.state.repos.get(repo_id)

    def _xet_headers(self, kind: str, repo_id: str, commit: str, entry: dict) -> dict:
        """What the Hub adds to the resolve answer of a Xet-stored file (LocalHub(xet=True) only)."""
        if not self.state.xet or "lfs" not in entry:
            return {}
        return {"X-Xet-Hash": entry["lfs"]["oid"],
                "X-Xet-Refresh-Route": f"{self.state.base_url}/api/{kind}s/{repo_id}/xet-read-token/{commit}"}

    def xet_read_token(self, body, query, kind, repo_id, revision):
        self._send(200, {}, {"X-Xet-Cas-Url": f"{self.state.base_url}/xet-cas", "X-Xet-Access-Token": "xet-token",
                             "X-Xet-Token-Expiration": int(time.time()) + 3600})

    def _dispatch(self) -> None:
        body = self._body()
        url = urlparse(self.path)
        path = unquote(url.path)
        self.state.requests.append((self.command, path))
        for method, pattern, seconds in self.state.latency:
            if method == self.command and re.search(pattern, path):
                time.sleep(seconds)
        status = self.state.scheduled_failure(self.command, path)
        if status == DROP:  # as a proxy resetting the connection: no response at all
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if status is not None:
            return self._error(status, "scheduled failure")
        with self.state.lock:
            for method, pattern, handler in ROUTES:
                # Matched before decoding, so an encoded revision ("refs%2Fconvert%2Fparquet") stays one segment.
                match = re.fullmatch(pattern, url.path)
                if match and method == self.command or (match and method == "GET" and self.command == "HEAD"):
                    groups = (unquote(group) if group is not None else None for group in match.groups())
                    return handler(self, body, parse_qs(url.query), *groups)
        self._error(404, f"no route for {self.command} {path}")

    do_GET = do_POST = do_PUT = do_HEAD = _dispatch

    # -- endpoints --------------------------------------------------------------------------------
    def whoami(self, body, query):
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": user, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def create_repo(self, body, query):
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        request = json.loads(body)
        namespace = request.get("organization") or user
        if namespace != user:
            return self._error(403, f"You don't have the rights to create a model under the namespace {namespace}")
        repo_id = f"{namespace}/{request['name']}"
        url = f"{self.state.base_url}/{repo_id}"
        if repo_id in self.state.repos:
            return self._send(409, {"error": "You already created this model repo", "url": url})
        self.state.repos[repo_id] = Repo(repo_id, bool(request.get("private")))
        self._send(200, {"url": url, "name": repo_id})

    def _writable(self, repo_id: str) -> Repo | None:
        user, repo = self._user(), self._repo(repo_id)
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
        elif repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
        else:
            return repo
        return None

    def preupload(self, body, query, repo_type, repo_id, revision):
        repo = self._writable(repo_id)
        if repo is None:
            return
        files = []
        for item in json.loads(body)["files"]:
            lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] > 10_000_000
            existing = repo.files.get(item["path"])
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing).hexdigest() if lfs else git_hash(existing)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self._send(200, {"files": files, "commitOid": repo.head})

    def lfs_batch(self, body, query, repo_id):
        if self._writable(repo_id) is None:
            return
        objects = []
        for item in json.loads(body)["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.state.objects:
                entry["actions"] = {"upload": {"href": f"{self.state.base_url}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, body, query, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "checksum mismatch")
        self.state.objects[oid] = body
        self._send(200, {})

    def commit(self, body, query, repo_type, repo_id, revision):
        repo = self._writable(repo_id)
        if repo is None:
            return
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
                repo.lfs.discard(value["path"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.state.objects:
                    return self._error(422, f"LFS object {value['oid']} was never uploaded")
                repo.files[value["path"]] = self.state.objects[value["oid"]]
                repo.lfs.add(value["path"])
            elif line["key"] == "deletedFile":
                repo.files.pop(value["path"], None)
        oid = new_commit_oid()
        repo.commits.append({"oid": oid, "title": header.get("summary", "")})
        self._send(200, {"commitUrl": f"{self.state.base_url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None})

    def validate_yaml(self, body, query):
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        metadata = yaml.safe_load(match.group(1)) if match else None
        if not isinstance(metadata, dict):
            return self._send(200, {"warnings": [{"message": "Empty or missing yaml metadata in repo card"}]})
        errors = []
        if "license" in metadata and metadata["license"] not in LICENSES:  # optional, as on the Hub
            errors.append(f"\"license\" must be one of {sorted(LICENSES)}")
        if metadata.get("pipeline_tag") not in PIPELINE_TAGS:
            errors.append("\"pipeline_tag\" must be a valid pipeline tag")
        languages = metadata.get("language")
        if not all(isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}", code)
                   for code in (languages if isinstance(languages, list) else [languages])):
            errors.append("\"language\" must be ISO 639 codes")
        if errors:  # huggingface_hub puts each of "errors" into its ValueError: the user reads why
            return self._send(400, {"error": "; ".join(errors), "errors": [{"message": error} for error in errors]})
        self._send(200, {"warnings": []})

    def repo_info(self, body, query, repo_id, revision=None):
        if repo_id in self.state.models:
            return self._seeded_info(self.state.models, query, repo_id, revision)
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        self._send(200, {"id": repo_id, "modelId": repo_id, "sha": repo.head, "private": repo.private,
                         "siblings": [{"rfilename": path} for path in sorted(repo.files)], "tags": []})

    def tree(self, body, query, repo_id, revision, subpath):
        if repo_id in self.state.models:
            return self._seeded_tree(self.state.models, query, repo_id, revision, subpath)
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        self._send(200, [repo.entry(path) for path in sorted(repo.files)])

    def resolve(self, body, query, repo_id, revision, path):
        if repo_id in self.state.models:
            return self._seeded_resolve(self.state.models, repo_id, revision, path)
        repo = self._repo(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        if path not in repo.files:
            return self._error(404, "Entry not found", "EntryNotFound")
        entry = repo.entry(path)
        self._send(200, raw=repo.files[path], headers={**download_headers(entry, repo.head),
                                                       **self._xet_headers("model", repo_id, repo.head, entry)})

    # -- seeded dataset and model repositories (read only) --------------------------------------------
    def _readable(self, repos: dict[str, SeededRepo], repo_id: str,
                  revision: str | None) -> tuple[SeededRepo, str] | None:
        """The repository and the commit a revision names, or None after answering as the Hub does."""
        if self.headers.get("Authorization") and self._user() is None:
            self._send(401, {"error": INVALID_TOKEN}, {"X-Error-Message": INVALID_TOKEN})
            return None
        user, repo = self._user(), repos.get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            # The Hub does not reveal that a private repository exists: 401 anonymous, 404 authenticated.
            self._error(401 if user is None else 404, "Repository not found", "RepoNotFound")
            return None
        commit = repo.commit_of(revision or "main")
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return None
        return repo, commit

    def _seeded_info(self, repos, query, repo_id, revision):
        found = self._readable(repos, repo_id, revision)
        if found is None:
            return
        repo, commit = found
        info = {"_id": repo_id, "id": repo_id, "sha": commit, "private": repo.private,
                "gated": "manual" if repo.gated else False, "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(repo.trees[commit])]}
        if repo.kind == "model":
            info["modelId"] = repo_id
        expand = query.get("expand")
        # An expanded property this server does not track is left out rather than failing the request.
        self._send(200, {key: info[key] for key in ("_id", "id", *expand) if key in info} if expand else info)
        while self.state.after_pinning:  # the lock is held: the push is in before the reader's next request
            self.state.after_pinning.pop(0)()

    def _seeded_tree(self, repos, query, repo_id, revision, subpath):
        found = self._readable(repos, repo_id, revision)
        if found is None:
            return
        repo, commit = found
        prefix = f"{subpath.strip('/')}/" if subpath and subpath.strip("/") else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        files, folders = [], set()
        for path in sorted(repo.trees[commit]):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            if recursive:
                files.append(repo.entry(commit, path))
                folders.update(prefix + "/".join(parts[:depth]) for depth in range(1, len(parts)))
            elif len(parts) == 1:
                files.append(repo.entry(commit, path))
            else:
                folders.add(prefix + parts[0])
        if prefix and not files and not folders:
            return self._error(404, f"{subpath} does not exist on {revision}", "EntryNotFound")
        listing = [{"type": "directory", "path": folder, "oid": git_hash(folder.encode())} for folder in folders]
        self._send(200, sorted(listing + files, key=lambda item: item["path"]))

    def _seeded_resolve(self, repos, repo_id, revision, path):
        found = self._readable(repos, repo_id, revision)
        if found is None:
            return
        repo, commit = found
        user = self._user()
        if repo.gated and user != repo.owner:
            return self._error(401 if user is None else 403, f"Access to {repo.kind} {repo_id} is restricted",
                               "GatedRepo")
        if path not in repo.trees[commit]:
            return self._error(404, "Entry not found", "EntryNotFound")
        entry = repo.entry(commit, path)
        self._send(200, raw=repo.trees[commit][path], headers={**download_headers(entry, commit),
                                                               **self._xet_headers(repo.kind, repo_id, commit, entry)})

    def dataset_info(self, body, query, repo_id, revision=None):
        self._seeded_info(self.state.datasets, query, repo_id, revision)

    def dataset_tree(self, body, query, repo_id, revision, subpath):
        self._seeded_tree(self.state.datasets, query, repo_id, revision, subpath)

    def dataset_resolve(self, body, query, repo_id, revision, path):
        self._seeded_resolve(self.state.datasets, repo_id, revision, path)


REPO = r"([^/]+/[^/]+)"
ROUTES = [
    ("GET", rf"/api/datasets/{REPO}/revision/([^/]+)", Handler.dataset_info),
    ("GET", rf"/api/datasets/{REPO}", Handler.dataset_info),
    ("GET", rf"/api/datasets/{REPO}/tree/([^/]+)(?:/(.*))?", Handler.dataset_tree),
    ("GET", rf"/datasets/{REPO}/resolve/([^/]+)/(.+)", Handler.dataset_resolve),
    ("GET", r"/api/whoami-v2", Handler.whoami),
    ("POST", r"/api/repos/create", Handler.create_repo),
    ("POST", rf"/api/(model|dataset|space)s/{REPO}/preupload/([^/]+)", Handler.preupload),
    ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", Handler.lfs_batch),
    ("PUT", r"/lfs-upload/([0-9a-f]{64})", Handler.lfs_upload),
    ("POST", rf"/api/(model|dataset|space)s/{REPO}/commit/([^/]+)", Handler.commit),
    ("POST", r"/api/validate-yaml", Handler.validate_yaml),
    ("GET", rf"/api/models/{REPO}/revision/([^/]+)", Handler.repo_info),
    ("GET", rf"/api/models/{REPO}", Handler.repo_info),
    ("GET", rf"/api/models/{REPO}/tree/([^/]+)/?(.*)", Handler.tree),
    ("GET", rf"/api/(model|dataset)s/{REPO}/xet-read-token/([^/]+)", Handler.xet_read_token),
    ("GET", rf"/{REPO}/resolve/([^/]+)/(.+)", Handler.resolve),
]


class LocalHub(LocalServer):
    """`with LocalHub(tokens={"hf_x": "tester"}) as hub:` then HF_ENDPOINT=hub.url."""

    def __init__(self, tokens: dict[str, str], xet: bool = False):
        state = HubState(tokens)
        state.xet = xet
        super().__init__(Handler, state)

    def _seed(self, repos: dict[str, SeededRepo], kind: str, repo_id: str, files: dict[str, bytes], private: bool,
              revision: str, gated: bool) -> str:
        with self.state.lock:
            repo = repos.setdefault(repo_id, SeededRepo(repo_id, kind, private=private, gated=gated))
            commit = new_commit_oid()
            repo.trees[commit] = dict(files)
            repo.refs[revision] = commit
            return commit

    def add_dataset(self, repo_id: str, files: dict[str, bytes], private: bool = False, revision: str = "main",
                    gated: bool = False) -> str:
        """Commit `files` as the whole tree of branch or tag `revision`; returns the new commit sha.

        The first call creates the repository (private and gated are set then); later calls add commits,
        and every earlier commit stays readable by its sha. Weights, compressed and parquet files are LFS.
        """
        return self._seed(self.state.datasets, "dataset", repo_id, files, private, revision, gated)

    def push_after_pinning(self, repo_id: str, files: dict[str, bytes], revision: str = "main",
                           kind: str = "dataset") -> str:
        """Commit `files` as the tree of branch `revision` of a seeded dataset (or `kind="model"`) right after the
        next answer that names a commit (`dataset_info`, `model_info`): a push landing between a reader pinning the
        branch and reading it. Returns its sha."""
        commit = new_commit_oid()
        repos = self.state.models if kind == "model" else self.state.datasets

        def push() -> None:
            repo = repos[repo_id]
            repo.trees[commit] = dict(files)
            repo.refs[revision] = commit

        self.state.after_pinning.append(push)
        return commit

    def add_model(self, repo_id: str, files: dict[str, bytes], private: bool = False, revision: str = "main",
                  gated: bool = False) -> str:
        """As `add_dataset`, for a model repository: what `from_pretrained` and `snapshot_download` read."""
        return self._seed(self.state.models, "model", repo_id, files, private, revision, gated)


def point_huggingface_hub_at(hub: "LocalHub", monkeypatch, token: str, cache=None) -> None:
    """huggingface_hub, in this process, as HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET=1 and HF_TOKEN would have set it
    (its constants are read when it is imported), with an HF cache of the test's own when one is given."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    if cache is not None:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_TOKEN", token)
