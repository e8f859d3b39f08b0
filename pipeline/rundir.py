"""The run directory: the only channel between stages, and how a stage publishes its output.

<run-dir>/tokenizer/ -> dataset/ -> checkpoints/ -> model/ (+ logs/). A stage builds its folder
under a hidden `.<name>.partial-<pid>` name and renames it into place only after its manifest is
written, so a killed or failed stage never leaves a folder that a later stage mistakes for complete,
and a failed rebuild leaves the previous output untouched.
"""

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__

log = logging.getLogger("gpt2zh")
MANIFEST = "manifest.json"


def fingerprint(parts: Any) -> str:
    """A short stable digest of JSON-able inputs (config fields, file stats, upstream fingerprints)."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class RunDir:
    root: Path

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete stage folder, or None if missing, unreadable or files are missing."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for relative, size in manifest.get("files", {}).items():
        path = folder / relative
        if not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(final: Path) -> None:
    for leftover in final.parent.glob(f".{final.name}.*-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            continue  # another live process is building it
        shutil.rmtree(leftover, ignore_errors=True)


class StageOutput:
    """One stage's folder: reuse check, atomic build, manifest. Opening it removes the leftovers of
    builds that were killed (a partial folder whose process is gone)."""

    def __init__(self, final: Path, stage: str, fingerprint_value: str, fingerprint_parts: Any):
        if final.parent.is_dir():
            _remove_stale_partials(final)
        self.final = final
        self.stage = stage
        self.fingerprint = fingerprint_value
        self.fingerprint_parts = fingerprint_parts
        self.manifest_extra: dict = {}  # stage facts for downstream stages, filled while building

    def current_manifest(self) -> dict | None:
        manifest = read_manifest(self.final)
        if manifest and manifest.get("fingerprint") == self.fingerprint:
            return manifest
        return None

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """Yield an empty staging folder; publish it if the body succeeds, delete it if not."""
        self.final.parent.mkdir(parents=True, exist_ok=True)
        staging = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
            self._write_manifest(staging, self.manifest_extra)
            self._publish(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _write_manifest(self, staging: Path, extra: dict) -> None:
        files = {str(p.relative_to(staging)): p.stat().st_size
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "gpt2zh_version": __version__,
            "inputs": self.fingerprint_parts,
            "files": files,
            **extra,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def _publish(self, staging: Path) -> None:
        retired = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
        if self.final.exists():
            self.final.rename(retired)
        staging.rename(self.final)
        shutil.rmtree(retired, ignore_errors=True)
