"""The run directory: the only channel between stages, and how a stage publishes its output.

<run-dir>/tokenizer/ -> dataset/ -> checkpoints/ -> model/ (+ logs/) -> push/; RunDir names every folder, and
each stage's contract (pipeline/manifests.py) its own. A stage builds its folder under a hidden
`.<name>.partial-<pid>` name and renames it into place only after its manifest is written, so a killed or
failed stage never leaves a folder that a later stage mistakes for complete, and a failed rebuild leaves the
previous output untouched.
"""

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2zh.errors import UserError
from gpt2zh.input_changes import setting_changes
from gpt2zh.manifests import DatasetManifest, ModelManifest, PushManifest, StageManifest, TokenizerManifest

log = logging.getLogger("gpt2zh")
CHECKPOINTS, LOGS = "checkpoints", "logs"  # stage 3's folders beside model/, without a manifest
REPLACE_FIX = ("to keep it, drop what changed (a command without --config starts from the run's saved settings); "
               "to replace it and what later stages built from it, add --force; or use another --run-dir")


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


def plain_file_mode(folder: Path) -> int:
    """The mode open() gives a new file in folder: 0o666 less the umask (or the folder's default ACL).
    Found with a probe file, because reading the umask means setting it, which races other threads."""
    probe = folder / f".mode-probe-{os.getpid()}"
    probe.unlink(missing_ok=True)  # left by a killed process whose pid this one reuses
    descriptor = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return stat.S_IMODE(os.fstat(descriptor).st_mode)
    finally:
        os.close(descriptor)
        probe.unlink()


def give_plain_modes(folder: Path) -> None:
    """Every file under folder gets plain_file_mode. safetensors >= 0.8 writes through a temporary
    file created 0600 and renamed into place, so model.safetensors alone would be unreadable to the
    other users of a shared machine, whatever the umask."""
    mode = plain_file_mode(folder)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)


@dataclass
class RunDir:
    root: Path

    def stage(self, name: str) -> Path:
        return self.root / name

    @property
    def tokenizer(self) -> Path:
        return self.root / TokenizerManifest.FOLDER

    @property
    def dataset(self) -> Path:
        return self.root / DatasetManifest.FOLDER

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def model(self) -> Path:
        return self.root / ModelManifest.FOLDER

    @property
    def push(self) -> Path:
        return self.root / PushManifest.FOLDER

    @property
    def logs(self) -> Path:
        return self.root / LOGS


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


def refuse_replacing(final: Path, manifest: StageManifest, current_inputs: dict,
                     view: Callable[[dict], dict] = lambda inputs: inputs) -> None:
    """A complete output made from other settings or another corpus is never replaced silently; one that
    differs only in an earlier stage's output (rebuilt on purpose) or in our format is rebuilt.
    `view` narrows both sides to what can be compared (before stage 3's hardware preset is known)."""
    changes = setting_changes(view(manifest.inputs), view(current_inputs))
    if changes:
        raise UserError(f"{final} was built from other inputs than this command's: {'; '.join(changes[:6])}",
                        REPLACE_FIX)


class StageOutput:
    """One stage's folder: reuse check, atomic build, manifest (of the stage's contract). Opening it removes the
    leftovers of builds that were killed (a partial folder whose process is gone)."""

    def __init__(self, final: Path, contract: type[StageManifest], fingerprint_value: str, fingerprint_parts: Any):
        if final.parent.is_dir():
            _remove_stale_partials(final)
        self.final = final
        self.contract = contract
        self.fingerprint = fingerprint_value
        self.fingerprint_parts = fingerprint_parts
        self.manifest_extra: dict = {}  # the contract's own fields, filled while building
        self.published: StageManifest | None = None  # the manifest once the build is published

    def current_manifest(self) -> StageManifest | None:
        manifest = self.contract.read(self.final)
        if manifest is not None and manifest.fingerprint == self.fingerprint:
            return manifest
        return None

    def refuse_replacing(self, force: bool) -> None:
        manifest = self.contract.read(self.final)
        if not force and manifest is not None and manifest.fingerprint != self.fingerprint:
            refuse_replacing(self.final, manifest, self.fingerprint_parts)

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """Yield an empty staging folder; publish it if the body succeeds, delete it if not."""
        self.final.parent.mkdir(parents=True, exist_ok=True)
        staging = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            yield staging
            give_plain_modes(staging)
            self._write_manifest(staging, self.manifest_extra)
            self._publish(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _write_manifest(self, staging: Path, extra: dict) -> None:
        self.published = self.contract.publish(staging, self.fingerprint, self.fingerprint_parts, extra)

    def _publish(self, staging: Path) -> None:
        retired = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
        if self.final.exists() and not self.contract.complete(self.final) and any(self.final.iterdir()):
            # Not a complete output of ours (those are published whole): files a user put there, or a damaged
            # output. Kept aside, never deleted.
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            retired = self.final.with_name(f"{self.final.name}.replaced-{stamp}")
            log.warning("%s held files that are not a complete %s output (written by hand, or damaged); moved to %s",
                        self.final, self.contract.FOLDER, retired)
        if self.final.exists():
            self.final.rename(retired)
        staging.rename(self.final)
        if retired.name.startswith("."):
            shutil.rmtree(retired, ignore_errors=True)
