"""A corpus file's identity is its content (PITFALLS.md RA1): the same corpus copied to another machine or
path is the same data, and a file edited in place is other data, whatever its modification time says.

sha256 of the bytes as stored (compressed files as compressed), about 1.7 GB/s on one core here: a 14 GB
corpus takes seconds. Digests are kept in a small cache keyed by (path, size, mtime, ctime, inode), so unchanged
files are hashed once per machine, not once per command; the ctime changes with every write and no tool can
set it back, so a file edited in place with its size and mtime restored is still hashed again.
"""

import hashlib
import os
from pathlib import Path

from gpt2zh.console import progress

CHUNK = 8 << 20
CACHE_NAME = "file-digests.tsv"
CACHE_LIMIT = 20_000  # entries; the oldest go first
SHOW_PROGRESS_BYTES = 256 << 20
_memo: dict[str, str] = {}


def cache_file() -> Path:
    """GPT2ZH_CACHE, else $XDG_CACHE_HOME/gpt2zh, else ~/.cache/gpt2zh."""
    root = os.environ.get("GPT2ZH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2zh"
    return Path(root) / CACHE_NAME


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"


def _read_cache() -> dict[str, str]:
    """One `key<TAB>digest` line per file: plain lines, so a torn write loses only its last line."""
    try:
        lines = cache_file().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    pairs = (line.rsplit("\t", 1) for line in lines if "\t" in line)
    return {key: digest for key, digest in pairs if digest.startswith("sha256:") and len(digest) == 71}


def _write_cache(entries: dict[str, str]) -> None:
    """Best effort: a read-only home or a concurrent writer costs a re-hash later, never a wrong digest."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = list(entries.items())[-CACHE_LIMIT:]
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text("".join(f"{key}\t{digest}\n" for key, digest in kept), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass


def _hash(path: Path, bar) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return "sha256:" + digest.hexdigest()


def content_digest(path: Path) -> str:
    return content_digests([path])[0]


def content_digests(paths: list[Path]) -> list[str]:
    """The digests of `paths`, hashing only those this machine has not hashed as they are now, under one
    progress bar when that is more than a few hundred MB (a new machine's first command)."""
    keys = [_key(path) for path in paths]
    missing = [(path, key) for path, key in zip(paths, keys, strict=True) if key not in _memo]
    if missing:
        cached = _read_cache()
        to_hash = [(path, key) for path, key in missing if key not in cached]
        total = sum(path.stat().st_size for path, _ in to_hash)
        bar = progress(total, "B", f"hashing {len(to_hash)} corpus file(s)", scale=True) \
            if total >= SHOW_PROGRESS_BYTES else None
        for path, key in to_hash:
            cached[key] = _hash(path, bar)
        if bar is not None:
            bar.close()
        if to_hash:
            _write_cache(cached)
        _memo.update({key: cached[key] for _, key in missing})
    return [_memo[key] for key in keys]
