"""Corpus paths on a hub, `hf://datasets/<owner>/<name>[@<revision>]/<glob>` (the Hugging Face Hub) or
`ms://datasets/<owner>/<name>[@<revision>]/<glob>` (ModelScope), resolved to files in that hub's cache.

The revision is pinned to one commit first, so the listing, every download and the urls handed back all
name the same immutable tree: a push to the branch between two runs shows up as new urls, never as data
changing silently under an unchanged name. The token is the hub SDK's own (HF_TOKEN or `hf auth login`,
MODELSCOPE_API_TOKEN); nothing here reads, passes or prints it. The SDKs are imported inside the hub's methods
because the CLI imports this module before it sets HF_HOME, which HF libraries read once, at import.
"""

import glob
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.remote import Hub, open_hub, provider_of_path
from gpt2zh.report import human_bytes

log = logging.getLogger("gpt2zh")
PATH_FORM = "{scheme}datasets/<owner>/<name>[@<revision>]/<file, folder or glob>"
MS_PATH = re.compile(r"ms://datasets/(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[^/\s]+))?(?:/(?P<path>.*))?")
EXAMPLES_SHOWN = 3


@dataclass(frozen=True)
class HubFile:
    local_path: Path  # the file in the hub's cache, under its name in the repository
    url: str  # hf://datasets/<owner>/<name>@<commit sha>/<path in repo> (ms:// for ModelScope)
    blob_id: str  # the hub's id of the content (an LFS or ModelScope sha256, or a git blob oid)
    size: int


@dataclass(frozen=True)
class _Location:
    pattern: str  # as the user wrote it, for messages
    hub: Hub
    repo_id: str
    revision: str
    glob: str  # inside the repository; "" is all of it

    @property
    def where(self) -> str:
        return f"--data-files {self.pattern!r}"


def is_hub_path(pattern: str) -> bool:
    return provider_of_path(pattern) is not None


def resolve_hub_files(pattern: str, accepts: Callable[[str], bool]) -> list[HubFile]:
    """The files of the dataset repository that match pattern and that accepts(path_in_repo) keeps, sorted by
    path and downloaded into the HF cache (files already there are not downloaded again).

    Raises UserError for a malformed or non-dataset path, a repository, revision or file that is not there or
    not readable with the token, and a Hub that cannot be reached; anything else is a bug and propagates."""
    location = _parse(pattern)
    try:
        return _resolve(location, accepts)
    except UserError:
        raise
    except Exception as err:
        problem = location.hub.explain(err, location.where, "dataset", location.repo_id, location.revision)
        if problem is None:
            raise
        raise problem from None


def _parse(pattern: str) -> _Location:
    hub = open_hub(provider_of_path(pattern) or "huggingface")
    form = PATH_FORM.format(scheme=hub.scheme)
    if hub.scheme == "ms://":
        if (match := MS_PATH.fullmatch(pattern)) is None:
            raise UserError(f"--data-files {pattern!r} is not a valid ms:// path", f"write {form}")
        return _Location(pattern, hub, match["repo"], match["revision"] or hub.default_revision, match["path"] or "")

    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(pattern)  # HfFileSystem's grammar: '@' revisions, %2F-encoded and refs/... ones
    except HfUriError as err:
        raise UserError(f"--data-files {pattern!r} is not a valid hf:// path ({err.msg.strip()})",
                        f"write {form}") from None
    if uri.type != "dataset":
        raise UserError(f"--data-files {pattern!r} names a {uri.type} repository, but hf:// corpora come from "
                        "dataset repositories", f"write {form}")
    return _Location(pattern, hub, uri.id, uri.revision or hub.default_revision, uri.path_in_repo)


def _resolve(location: _Location, accepts: Callable[[str], bool]) -> list[HubFile]:
    hub = location.hub
    commit = hub.resolve(location.repo_id, "dataset", location.revision)
    listing = _list_files(location, commit, _listing_root(location.glob))
    chosen = [entry for entry in listing if _matches(location.glob, entry.path) and accepts(entry.path)]
    if not chosen:
        raise _nothing_matches(location, commit, listing, accepts)
    files, cached = [], 0
    for entry in chosen:
        # For the summary line only: a file whose content an earlier commit already brought is not downloaded again.
        cached += hub.is_cached(location.repo_id, "dataset", commit, entry)
        local = hub.download_file(location.repo_id, "dataset", commit, entry.path)
        files.append(HubFile(local_path=local, url=f"{hub.scheme}datasets/{location.repo_id}@{commit}/{entry.path}",
                             blob_id=entry.content_id, size=entry.size))
    log.info("%sdatasets/%s@%s/%s: %d file(s), %s, %d downloaded, %d already in the %s", hub.scheme,
             location.repo_id, commit, location.glob, len(files), human_bytes(sum(f.size for f in files)),
             len(files) - cached, cached, hub.cache_name)
    return files


def _listing_root(pattern: str) -> str:
    """The folders before the first wildcard: only they need listing. The last part may be a file, so it stays out."""
    folders = pattern.split("/")[:-1] if pattern else []
    literal = []
    for part in folders:
        if glob.has_magic(part):
            break
        literal.append(part)
    return "/".join(literal)


def _list_files(location: _Location, commit: str, root: str) -> list:
    return location.hub.list_files(location.repo_id, "dataset", commit, root)


def _matches(pattern: str, path: str) -> bool:
    """glob.glob(pattern, recursive=True) on the repository, a matched folder standing for every file in it —
    as local --data-files are read. As on disk, wildcards skip names starting with '.', and so does `**`."""
    return _parts_match(pattern.split("/") if pattern else [], path.split("/"))


def _parts_match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:  # whatever is left lies inside a matched folder
        return not any(part.startswith(".") for part in parts)
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_parts_match(rest, parts[skip:]) for skip in range(len(parts) + 1)
                   if not any(part.startswith(".") for part in parts[:skip]))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatchcase(parts[0], head) and _parts_match(rest, parts[1:])


def _nothing_matches(location: _Location, commit: str, listing: list, accepts: Callable[[str], bool]) -> UserError:
    matching = [entry.path for entry in listing if _matches(location.glob, entry.path)]
    if matching:
        found = f"{len(matching)} file(s) match but none is a corpus file ({_examples(matching)})"
    else:
        if _listing_root(location.glob):  # only one folder was listed; the message describes the repository
            listing = _list_files(location, commit, "")
        corpus = [entry.path for entry in listing if accepts(entry.path) and _matches("", entry.path)]
        found = (f"no file matches; the repository has {len(listing)} file(s), "
                 f"{len(corpus)} of them corpus files ({_examples(corpus)})")
    return UserError(f"{location.where}: in dataset {location.repo_id}@{location.revision}, {found}",
                     "fix the path or glob after the repository name (`**` matches across folders; quote the "
                     "pattern so the shell leaves it alone)")


def _examples(paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES_SHOWN]) or "none"
    return shown + (", ..." if len(paths) > EXAMPLES_SHOWN else "")
