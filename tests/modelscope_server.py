"""A small local server that speaks the ModelScope Hub's HTTP API, for upload and download tests offline.

Standard library only. It implements what the ModelScope SDK (`modelscope` 1.40 delegating to `modelscope_hub`
0.5) sends when pointed at it with MODELSCOPE_ENDPOINT=<url>, read from modelscope_hub/_legacy_api.py,
_openapi.py, _upload.py and _download.py:

- `HubApi.whoami`: GET /openapi/v1/users/me (Bearer token); `HubApi.login`: POST /api/v1/login.
- `create_repo`: POST /api/v1/models (JSON) and POST /api/v1/datasets (multipart form); an existing name
  answers the business code the SDK maps to AlreadyExistsError.
- `upload_folder` / `upload_file` / `delete_files`: POST /api/v1/repos/{type}s/{id}/commit/{branch} with
  create / delete actions (inline base64 for small files, LFS pointers for big ones and weight suffixes), the
  LFS batch endpoint /api/v1/repos/{type}s/{id}/info/lfs/objects/batch and the PUT of the blob to the URL it
  hands out. Every commit gets a 40-hex id, answered as Data.oid, and every commit's tree stays readable.
- Reading: GET /openapi/v1/{models,datasets}/{id} (`get_repo`, `repo_exists`), /api/v1/{type}s/{id}
  (legacy repo info), /api/v1/{type}s/{id}/revisions (`list_repo_revisions`: branches and tags, with the
  commit each points at), /api/v1/{type}s/{id}/commits (the history, newest first, as the old SDK's
  `list_repo_commits` read it), /api/v1/models/{id}/repo/files (`list_repo_files`, snapshot listing),
  /api/v1/datasets/{id}/repo/tree (paged dataset listing) and /api/v1/{type}s/{id}/repo?Revision&FilePath
  (the file bytes; Range honoured). A revision is a branch, a tag or a commit id (or a unique prefix of 7+).

Errors answer as the SDK expects them: an unknown token 401 (AuthenticationError), a token that may not read
a private repository or write a namespace 403 (PermissionDeniedError), an unknown repository, revision or file
404 (NotExistError). Failures can be scheduled (`LocalModelScope.fail`): a status, or DROP to reset the
connection, before or (after=True) after the request took effect. Model and dataset repositories can be seeded
directly (`add_model`, `add_dataset`), each call one commit on a branch.

What the real Hub does that this server cannot know and chose: a new repository gets one initial commit
holding `initial_files` (default: a `.gitattributes`); a delete of a path not in the tree answers 404; a commit
that changes nothing still makes a commit; the LFS upload URL is on this server, not on object storage.
"""

import base64
import contextlib
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

from tests.local_http import JsonHandler, LocalServer

DROP = 0  # a scheduled "status" that closes the connection without answering
PRIVATE, INTERNAL, PUBLIC = 1, 3, 5  # the Hub's visibility codes
INVALID_LOGIN_CODE = 10010103009  # POST /api/v1/login with a bad token: HTTP 400 with this code
MODEL_EXISTS_CODE = 10010101001
DATASET_EXISTS_CODE = 10020101001
DEFAULT_INITIAL_FILES = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                                           b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
                                           b"*.pt filter=lfs diff=lfs merge=lfs -text\n"}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def new_commit_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@dataclass
class TokenInfo:
    user: str
    read_only: bool = False
    namespaces: tuple[str, ...] = ()  # organisations it may write besides its own name

    def may_write(self, namespace: str) -> bool:
        return not self.read_only and (namespace == self.user or namespace in self.namespaces)

    def may_read(self, namespace: str) -> bool:
        return namespace == self.user or namespace in self.namespaces


@dataclass
class Commit:
    id: str
    parent: str | None
    tree: dict[str, bytes]
    lfs: set[str]
    message: str
    author: str
    created: int


@dataclass
class MsRepo:
    repo_id: str
    kind: str  # "model" or "dataset"
    visibility: int = PUBLIC
    number: int = 0
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def private(self) -> bool:
        return self.visibility != PUBLIC

    def resolve(self, revision: str) -> str | None:
        """The commit id of a branch, a tag, a commit id or a unique commit-id prefix of 7+ characters."""
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        if len(revision) >= 7 and re.fullmatch(r"[0-9a-f]+", revision):
            found = [c for c in self.commits if c.startswith(revision)]
            return found[0] if len(found) == 1 else None
        return None

    def history(self, commit_id: str) -> list[Commit]:
        out = []
        while commit_id:
            commit = self.commits[commit_id]
            out.append(commit)
            commit_id = commit.parent
        return out

    def last_change(self, commit_id: str, path: str) -> Commit:
        """The newest commit at or before `commit_id` that set `path` to its present content."""
        history = self.history(commit_id)
        data = history[0].tree[path]
        last = history[0]
        for commit in history[1:]:
            if commit.tree.get(path) != data:
                break
            last = commit
        return last

    def add_commit(self, branch: str, tree: dict[str, bytes], lfs: set[str], message: str, author: str) -> Commit:
        commit = Commit(new_commit_id(), self.branches.get(branch), dict(tree), set(lfs) & set(tree), message, author,
                        int(time.time()))
        self.commits[commit.id] = commit
        self.branches[branch] = commit.id
        return commit


@dataclass
class Failure:
    method: str
    pattern: str
    status: int
    times: int = 1
    after: bool = False  # let the request take effect, then fail the answer


class MsState:
    def __init__(self, tokens: dict[str, "str | TokenInfo | dict"], initial_files: dict[str, bytes] | None):
        self.tokens: dict[str, TokenInfo] = {}
        for token, info in tokens.items():
            if isinstance(info, str):
                info = TokenInfo(info)
            elif isinstance(info, dict):
                info = TokenInfo(**info)
            self.tokens[token] = info
        self.initial_files = DEFAULT_INITIAL_FILES if initial_files is None else dict(initial_files)
        self.commit_ids_in_revisions = True
        self.repos: dict[tuple[str, str], MsRepo] = {}  # (kind, repo_id) -> repo
        self.objects: dict[str, bytes] = {}  # LFS objects by sha256, shared by every repository
        self.failures: list[Failure] = []
        self.latency: list[tuple[str, str, float]] = []
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self.after_pinning: list = []  # pushes due right after the next answer naming a commit (push_after_pinning)
        self.lock = threading.RLock()
        self.base_url = ""

    def scheduled_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.times > 0 and failure.method == method and re.search(failure.pattern, path):
                    failure.times -= 1
                    return failure
        return None

    def new_repo(self, kind: str, repo_id: str, visibility: int, author: str) -> MsRepo:
        repo = MsRepo(repo_id, kind, visibility, number=len(self.repos) + 1000)
        self.repos[(kind, repo_id)] = repo
        return repo


class _Answered(Exception):
    """Raised after an error answer to unwind the handler."""


class Handler(JsonHandler):
    state: MsState  # set by LocalModelScope

    # -- plumbing ---------------------------------------------------------------------------------

    def _send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        late = getattr(self, "_late_failure", None)
        if late is not None:  # the request took effect; its answer is lost or replaced
            self._late_failure = None
            if late.status == DROP:
                return self._drop()
            status, payload, headers, raw = late.status, _legacy_error(late.status, "scheduled failure"), None, None
        super()._send(status, payload, headers, raw)

    def _ok(self, data) -> None:
        self._send(200, {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex,
                         "Success": True})

    def _fail(self, status: int, message: str, code: int | None = None) -> None:
        self._send(status, _legacy_error(code or status, message))
        raise _Answered

    def _open_fail(self, status: int, code: str, message: str) -> None:
        self._send(status, {"success": False, "code": code, "message": message, "request_id": uuid.uuid4().hex})
        raise _Answered

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:].strip():
            return auth[7:].strip()
        cookies = self.headers.get("Cookie", "")
        match = re.search(r"(?:^|;\s*)m_session_id=([^;]+)", cookies)
        return match.group(1) if match else None

    def _caller(self, openapi: bool = False) -> TokenInfo | None:
        """The token's owner; None without a token; an unknown token is answered 401 here."""
        token = self._token()
        if token is None:
            return None
        info = self.state.tokens.get(token)
        if info is None:
            if openapi:
                self._open_fail(401, "InvalidAuthentication", "Invalid or expired access token")
            self._fail(401, "Invalid or expired access token")
        return info

    def _repo(self, kind: str, repo_id: str, write: bool = False, openapi: bool = False) -> MsRepo:
        caller = self._caller(openapi)
        repo = self.state.repos.get((kind, repo_id))
        if repo is None:
            if openapi:
                self._open_fail(404, "ResourceNotFound", f"{kind} {repo_id} not found")
            self._fail(404, f"{'Model' if kind == 'model' else 'Dataset'} {repo_id} does not exist")
        if write or repo.private:
            if caller is None:
                if openapi:
                    self._open_fail(401, "InvalidAuthentication", "Login required")
                self._fail(401, "User not logged in")
            allowed = caller.may_write(repo.owner) if write else caller.may_read(repo.owner)
            if not allowed:
                if openapi:
                    self._open_fail(403, "OperationNotAllowed", "access denied")
                self._fail(403, "access denied")
        return repo

    def _commit(self, repo: MsRepo, revision: str | None) -> Commit:
        commit_id = repo.resolve(revision or "master")
        if commit_id is None:
            self._fail(404, f"Revision {revision} not found in {repo.repo_id}")
        return repo.commits[commit_id]

    def _dispatch(self) -> None:
        body = self._body()
        url = urlparse(self.path)
        path = unquote(url.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        with self.state.lock:
            self.state.requests.append((self.command, path, query))
            latency = list(self.state.latency)
        for method, pattern, seconds in latency:
            if method == self.command and re.search(pattern, path):
                time.sleep(seconds)
        failure = self.state.scheduled_failure(self.command, path)
        if failure is not None and not failure.after:
            if failure.status == DROP:  # as a proxy resetting the connection: no response at all
                return self._drop()
            return self._send(failure.status, _legacy_error(failure.status, "scheduled failure"))
        self._late_failure = failure
        for method, pattern, func in ROUTES:
            if method != self.command and not (method == "GET" and self.command == "HEAD"):
                continue
            match = re.fullmatch(pattern, path)
            if match:
                try:
                    with self.state.lock:
                        func(self, body, query, *match.groups())
                except _Answered:
                    pass
                return None
        self._late_failure = None
        self._send(404, _legacy_error(404, f"no route for {self.command} {path}"))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # -- account ------------------------------------------------------------------------------------
    def users_me(self, body, query):
        caller = self._caller(openapi=True)
        if caller is None:
            self._open_fail(401, "InvalidAuthentication", "Login required")
        self._send(200, {"success": True, "request_id": uuid.uuid4().hex,
                         "data": {"id": abs(hash(caller.user)) % 10**6, "username": caller.user, "name": caller.user,
                                  "email": f"{caller.user}@example.com"}})

    def login(self, body, query):
        token = (json.loads(body or b"{}").get("AccessToken") or "").strip()
        info = self.state.tokens.get(token)
        if info is None:
            self._fail(400, "AccessToken is invalid or expired", INVALID_LOGIN_CODE)
        if info.read_only:  # the login endpoint mints git credentials, which a read token may not have
            self._fail(403, "token permission is insufficient")
        payload = {"Code": 200, "Success": True, "Message": "success", "RequestId": uuid.uuid4().hex,
                   "Data": {"AccessToken": f"git-{token}", "Username": info.user,
                            "Email": f"{info.user}@example.com"}}
        self._send(200, payload, {"Set-Cookie": f"m_session_id={token}; Path=/; HttpOnly"})

    # -- repositories -------------------------------------------------------------------------------
    def create_model(self, body, query):
        fields = json.loads(body or b"{}")
        self._create("model", fields.get("Path"), fields.get("Name"), fields.get("Visibility"))

    def create_dataset(self, body, query):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers.get("Content-Type", "").encode() + b"\r\n\r\n" + body)
        fields = {part.get_param("name", header="content-disposition"): part.get_content()
                  for part in message.iter_parts()} if message.is_multipart() else {}
        self._create("dataset", fields.get("Owner"), fields.get("Name"), fields.get("Visibility"))

    def _create(self, kind: str, owner: str | None, name: str | None, visibility) -> None:
        caller = self._caller()
        if caller is None:
            self._fail(401, "User not logged in")
        if not owner or not name:
            self._fail(400, "path is required")
        if not caller.may_write(owner):
            self._fail(403, f"no permission to create a {kind} under {owner}")
        repo_id = f"{owner}/{name}"
        if (kind, repo_id) in self.state.repos:
            self._fail(400, "该名称已被注册使用，请重新命名",
                       MODEL_EXISTS_CODE if kind == "model" else DATASET_EXISTS_CODE)
        repo = self.state.new_repo(kind, repo_id, int(visibility or PUBLIC), caller.user)
        repo.add_commit("master", self.state.initial_files, set(), "initial commit", caller.user)
        self._ok({"Id": repo.number, "Path": owner, "Name": name, "Visibility": repo.visibility})

    def _info(self, repo: MsRepo) -> dict:
        head = repo.branches.get("master")
        return {"Id": repo.number, "Name": repo.repo_id.split("/")[1], "Path": repo.owner, "Owner": repo.owner,
                "Namespace": repo.owner, "Visibility": repo.visibility, "License": "Apache License 2.0",
                "CreatedTime": repo.created, "LastUpdatedTime": repo.commits[head].created if head else repo.created,
                "Revision": "master"}

    def repo_info(self, body, query, kind, repo_id):
        self._ok(self._info(self._repo(kind, repo_id)))

    def openapi_repo(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id, openapi=True)
        owner, name = repo_id.split("/")
        self._send(200, {"success": True, "request_id": uuid.uuid4().hex,
                         "data": {"id": repo_id, "owner": owner, "name": name, "display_name": name,
                                  "private": repo.private, "downloads": 0, "likes": 0, "license": "apache-2.0",
                                  "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(repo.created))}})

    def revisions(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id)

        def ref(name, commit_id):
            entry = {"Revision": name, "CreatedAt": repo.commits[commit_id].created}
            return {**entry, "CommitId": commit_id} if self.state.commit_ids_in_revisions else entry

        self._ok({"RevisionMap": {"Branches": [ref(n, c) for n, c in repo.branches.items()],
                                  "Tags": [ref(n, c) for n, c in repo.tags.items()]}})
        if self.state.commit_ids_in_revisions:
            self._push_pinned()

    def _push_pinned(self) -> None:
        while self.state.after_pinning:  # the lock is held: the push is in before the reader's next request
            self.state.after_pinning.pop(0)()

    def commits(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id)
        history = self._commit(repo, query.get("Ref") or "master")
        commits = repo.history(history.id)
        page, size = int(query.get("PageNumber") or 1), int(query.get("PageSize") or 50)
        shown = commits[(page - 1) * size: page * size]
        self._send(200, {"Code": 200, "Success": True, "Message": "success", "RequestId": uuid.uuid4().hex,
                         "TotalCount": len(commits),
                         "Data": {"Commit": [{"Id": c.id, "ShortId": c.id[:8], "Title": c.message.splitlines()[0]
                                              if c.message else "", "Message": c.message, "AuthorName": c.author,
                                              "AuthorEmail": f"{c.author}@example.com", "AuthoredDate": c.created,
                                              "CommittedDate": c.created, "CommitterName": c.author,
                                              "CommitterEmail": f"{c.author}@example.com", "CreatedAt": c.created}
                                             for c in shown]}})
        self._push_pinned()

    def create_tag(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id, write=True)
        fields = json.loads(body or b"{}")
        commit = self._commit(repo, fields.get("Ref") or "master")
        if fields.get("TagName") in repo.tags:
            self._fail(400, "tag already exists")
        repo.tags[fields["TagName"]] = commit.id
        self._ok({"TagName": fields["TagName"], "CommitId": commit.id})

    # -- listings -----------------------------------------------------------------------------------
    def _entries(self, repo: MsRepo, commit: Commit, recursive: bool, root: str | None) -> list[dict]:
        prefix = (root or "").strip("/")
        paths = sorted(commit.tree)
        if prefix:
            if not any(p.startswith(prefix + "/") for p in paths):
                self._fail(404, f"Path {prefix} not found at revision {commit.id}")
            paths = [p for p in paths if p.startswith(prefix + "/")]
        entries, dirs = [], set()
        base = len(prefix) + 1 if prefix else 0
        for path in paths:
            parts = path[base:].split("/")
            for depth in range(1, len(parts)):  # the directories on the way, as "tree" entries
                directory = path[:base] + "/".join(parts[:depth])
                if (recursive or depth == 1) and directory not in dirs:
                    dirs.add(directory)
                    entries.append({"Name": parts[depth - 1], "Path": directory, "Type": "tree", "Size": 0,
                                    "Sha256": "", "Revision": commit.id, "Mode": "040000"})
            if not recursive and len(parts) > 1:
                continue
            data = commit.tree[path]
            last = repo.last_change(commit.id, path)
            entries.append({"Name": parts[-1], "Path": path, "Type": "blob", "Size": len(data),
                            "Sha256": hashlib.sha256(data).hexdigest(), "Id": git_blob_id(data),
                            "IsLFS": path in commit.lfs, "Mode": "100644", "Revision": last.id,
                            "CommitMessage": last.message, "CommittedDate": last.created,
                            "CommitterName": last.author})
        return sorted(entries, key=lambda e: e["Path"])

    def repo_files(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id)
        commit = self._commit(repo, query.get("Revision"))
        recursive = (query.get("Recursive") or "False").lower() == "true"
        self._ok({"Files": self._entries(repo, commit, recursive, query.get("Root"))})

    def repo_tree(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id)
        commit = self._commit(repo, query.get("Revision"))
        recursive = (query.get("Recursive") or "False").lower() == "true"
        entries = self._entries(repo, commit, recursive, query.get("Root"))
        page, size = int(query.get("PageNumber") or 1), int(query.get("PageSize") or 100)
        self._ok({"Files": entries[(page - 1) * size: page * size]})

    def acceleration_info(self, body, query):
        self._fail(404, "not available")

    # -- downloads ----------------------------------------------------------------------------------
    def download(self, body, query, kind, repo_id):
        repo = self._repo(kind, repo_id)
        commit = self._commit(repo, query.get("Revision"))
        path = (query.get("FilePath") or "").lstrip("/")
        if path not in commit.tree:
            self._fail(404, f"File {path} not found at revision {query.get('Revision') or 'master'}")
        data = commit.tree[path]
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{git_blob_id(data)}"',
                   "Accept-Ranges": "bytes"}
        if path in commit.lfs:
            headers["X-Linked-ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                self._send(416, _legacy_error(416, "range not satisfiable"), {"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, headers=headers, raw=data[start:end + 1])
            return
        self._send(200, headers=headers, raw=data)

    # -- uploads ------------------------------------------------------------------------------------
    def lfs_batch(self, body, query, kind, repo_id):
        self._repo(kind, repo_id, write=True)
        objects = []
        for obj in json.loads(body or b"{}").get("objects", []):
            item = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.objects:
                href = f"{self.state.base_url}/lfs-upload/{obj['oid']}?size={obj['size']}"
                item["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(item)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, body, query, oid):
        if hashlib.sha256(body).hexdigest() != oid or str(len(body)) != query.get("size", str(len(body))):
            self._fail(400, "uploaded content does not match its sha256 or size")
        self.state.objects[oid] = body
        self._send(200)

    def commit(self, body, query, kind, repo_id, branch):
        kind = kind[:-1]
        repo = self._repo(kind, repo_id, write=True)
        if branch not in repo.branches and repo.branches:
            self._fail(404, f"Branch {branch} not found in {repo_id}")
        payload = json.loads(body or b"{}")
        actions = payload.get("actions") or []
        if not actions:
            self._fail(400, "actions must not be empty")
        head = repo.commits[repo.branches[branch]] if branch in repo.branches else None
        tree = dict(head.tree) if head else {}
        lfs = set(head.lfs) if head else set()
        for action in actions:
            path = (action.get("path") or "").strip("/")
            if not path:
                self._fail(400, "path is required")
            if action.get("action") == "delete":
                if path not in tree:
                    self._fail(404, f"File {path} not found")
                del tree[path]
                lfs.discard(path)
            elif action.get("action") in ("create", "update"):
                if action.get("type") == "lfs":
                    data = self.state.objects.get(action.get("sha256") or "")
                    if data is None or len(data) != int(action.get("size") or 0):
                        self._fail(400, f"LFS object {action.get('sha256')} for {path} was not uploaded")
                    lfs.add(path)
                else:
                    data = base64.b64decode(action.get("content") or "")
                    if action.get("size") is not None and int(action["size"]) != len(data):
                        self._fail(400, f"size of {path} does not match its content")
                    lfs.discard(path)
                tree[path] = data
            else:
                self._fail(400, f"unknown action {action.get('action')!r}")
        commit = repo.add_commit(branch, tree, lfs, payload.get("commit_message") or "", self._caller().user)
        self._ok({"oid": commit.id})


def _legacy_error(code: int, message: str) -> dict:
    return {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex, "Success": False}


REPO = r"([^/]+/[^/]+)"
ROUTES = [
    ("GET", r"/openapi/v1/users/me", Handler.users_me),
    ("POST", r"/api/v1/login", Handler.login),
    ("GET", r"/api/v1/repos/internalAccelerationInfo", Handler.acceleration_info),
    ("POST", r"/api/v1/models", Handler.create_model),
    ("POST", r"/api/v1/datasets", Handler.create_dataset),
    ("GET", rf"/openapi/v1/(model|dataset)s/{REPO}", Handler.openapi_repo),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}/revisions", Handler.revisions),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}/commits", Handler.commits),
    ("POST", rf"/api/v1/(model|dataset)s/{REPO}/repo/tag", Handler.create_tag),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}/repo/files", Handler.repo_files),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}/repo/tree", Handler.repo_tree),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}/repo", Handler.download),
    ("GET", rf"/api/v1/(model|dataset)s/{REPO}", Handler.repo_info),
    ("POST", rf"/api/v1/repos/(model|dataset)s/{REPO}/info/lfs/objects/batch", Handler.lfs_batch),
    ("PUT", r"/lfs-upload/([0-9a-f]{64})", Handler.lfs_upload),
    ("POST", rf"/api/v1/repos/(models|datasets)/{REPO}/commit/([^/]+)", Handler.commit),
]


class LocalModelScope(LocalServer):
    """`with LocalModelScope(tokens={"ms-x": "tester"}) as hub:` then MODELSCOPE_ENDPOINT=hub.url.

    A token maps to a user name, or to a TokenInfo / dict(user=..., read_only=..., namespaces=(...)).
    """

    def __init__(self, tokens: dict, initial_files: dict[str, bytes] | None = None,
                 commit_ids_in_revisions: bool = True):
        """commit_ids_in_revisions=False: branches and tags are listed by name only, as the real hub may list
        them, so a client must read a branch's head from the commits endpoint."""
        state = MsState(tokens, initial_files)
        state.commit_ids_in_revisions = commit_ids_in_revisions
        super().__init__(Handler, state)

    # -- seeding and inspection ---------------------------------------------------------------------
    def _seed(self, kind: str, repo_id: str, files: dict[str, bytes], branch: str, private: bool,
              message: str, lfs: tuple[str, ...] | None) -> str:
        with self.state.lock:
            repo = self.state.repos.get((kind, repo_id))
            if repo is None:
                repo = self.state.new_repo(kind, repo_id, PRIVATE if private else PUBLIC, repo_id.split("/")[0])
            lfs_paths = {p for p in files if p.endswith(lfs)} if lfs else set()
            return repo.add_commit(branch, files, lfs_paths, message, repo.owner).id

    def add_model(self, repo_id: str, files: dict[str, bytes], branch: str = "master", private: bool = False,
                  message: str = "seed", lfs: tuple[str, ...] | None = (".safetensors", ".bin", ".pt")) -> str:
        """One commit on `branch` whose tree is exactly `files`; returns its id."""
        return self._seed("model", repo_id, files, branch, private, message, lfs)

    def add_dataset(self, repo_id: str, files: dict[str, bytes], branch: str = "master", private: bool = False,
                    message: str = "seed", lfs: tuple[str, ...] | None = (".parquet", ".jsonl", ".gz", ".zst")) -> str:
        return self._seed("dataset", repo_id, files, branch, private, message, lfs)

    def add_tag(self, repo_id: str, tag: str, revision: str = "master", kind: str = "model") -> str:
        with self.state.lock:
            repo = self.state.repos[(kind, repo_id)]
            repo.tags[tag] = repo.resolve(revision)
            return repo.tags[tag]

    def push_after_pinning(self, repo_id: str, files: dict[str, bytes], branch: str = "master",
                           kind: str = "model") -> None:
        """Commit `files` as the tree of `branch` right after the next answer that names a commit (the revisions, or
        the commits endpoint): a push landing between a reader pinning the branch and reading it."""
        repo = self.state.repos[(kind, repo_id)]
        self.state.after_pinning.append(lambda: repo.add_commit(branch, files, set(), "pushed", repo.owner))

    def head(self, repo_id: str, branch: str = "master", kind: str = "model") -> str:
        return self.state.repos[(kind, repo_id)].branches[branch]

    def files_at(self, repo_id: str, revision: str = "master", kind: str = "model") -> dict[str, bytes]:
        repo = self.state.repos[(kind, repo_id)]
        return dict(repo.commits[repo.resolve(revision)].tree)

    def commits(self, repo_id: str, branch: str = "master", kind: str = "model") -> list[Commit]:
        """The branch's history, newest first."""
        repo = self.state.repos[(kind, repo_id)]
        return repo.history(repo.branches[branch])

    # -- faults -------------------------------------------------------------------------------------
    def fail(self, method: str, pattern: str, status: int = 503, times: int = 1, after: bool = False) -> None:
        """The next `times` requests matching method and path regex get `status` (DROP: a connection reset).

        after=True lets the request take effect first (a commit lands) and then loses or replaces its answer.
        Commit paths look like /api/v1/repos/models/<owner>/<name>/commit/master.
        """
        with self.state.lock:
            self.state.failures.append(Failure(method, pattern, status, times, after))

    def slow(self, method: str, pattern: str, seconds: float) -> None:
        with self.state.lock:
            self.state.latency.append((method, pattern, seconds))

    @property
    def requests(self) -> list[tuple[str, str, dict]]:
        return list(self.state.requests)


@contextlib.contextmanager
def sdk_pointed_at_a_local_modelscope(tokens: dict, folder, monkeypatch, token: str, **options):
    """A LocalModelScope that ModelScope's SDK, in this process, talks to with `token`; its login and cache
    files under `folder` (never ~/.modelscope), downloads from the server itself (no intra-cloud mirror)."""
    with LocalModelScope(tokens, **options) as server:
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
        monkeypatch.setenv("MODELSCOPE_API_TOKEN", token)
        monkeypatch.setenv("MODELSCOPE_HOME", str(folder / "ms-home"))
        monkeypatch.setenv("MODELSCOPE_CACHE", str(folder / "ms-cache"))
        monkeypatch.setenv("MODELSCOPE_DOWNLOAD_INTRA_CLOUD", "false")
        yield server
