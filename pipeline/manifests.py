"""The stage contracts: what each stage's output folder holds, as one dataclass per stage, read and written here only.

A folder is a stage's complete output when its manifest.json exists and its files have the sizes it lists
(pipeline/rundir.py publishes it last, atomically). Every manifest has the keys of StageManifest; a stage adds
its own facts for the stages after it (a tokenizer's vocabulary and special-token ids, a dataset's block size).
A fact a stage does not have is left out of the file rather than written as null: an adopted tokenizer has no
SentencePiece model, and code decides on the key's absence.

`manifest_format` says how to read the file; it is no part of any fingerprint (those hash `inputs`), so adding
it left every run directory's fingerprints as they were. A manifest without it (written before it existed)
reads as format 1; one with a format newer than this code knows is refused, not misread.
"""

import datetime as dt
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from gpt2zh import __version__
from gpt2zh.errors import UserError

MANIFEST = "manifest.json"
FORMAT_KEY = "manifest_format"
UPGRADE_FIX = "upgrade gpt2zh (`pip install --upgrade gpt2zh`) to use this run directory, or pass another --run-dir"
Manifest = TypeVar("Manifest", bound="StageManifest")  # typing.Self is Python 3.11


def _complete(folder: Path) -> dict | None:
    """The manifest's JSON object when it and every file it lists (with that size) are there, else None."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        return None
    for relative, size in data.get("files", {}).items():
        path = folder / relative
        if not path.is_file() or path.stat().st_size != size:
            return None
    return data


@dataclass(frozen=True, kw_only=True)
class StageManifest:
    """What every stage writes. inputs: the parts its fingerprint hashes (pipeline/fingerprints.py). Only the
    fingerprint is required of a manifest read: the other common keys were always read as optional."""

    FOLDER: ClassVar[str] = ""  # its folder in the run directory, and its `stage` key
    FORMAT: ClassVar[int] = 1  # the manifest format this code writes and reads (not the output's layout)

    fingerprint: str
    stage: str = ""
    created_utc: str = ""
    gpt2zh_version: str = ""
    inputs: dict = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls: type[Manifest], folder: Path) -> Manifest | None:
        """The manifest of a complete output in folder; None when there is none, it is damaged or a file it
        lists is missing; UserError when a newer gpt2zh wrote it in a format this one does not know."""
        data = _complete(folder)
        if data is None:
            return None
        written = data.get(FORMAT_KEY, 1)
        if not isinstance(written, int) or written > cls.FORMAT:
            raise UserError(f"{folder / MANIFEST} is in manifest format {written}, written by gpt2zh "
                            f"{data.get('gpt2zh_version', '?')}; this gpt2zh ({__version__}) reads format "
                            f"{cls.FORMAT} at most", UPGRADE_FIX)
        known = {item.name for item in fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError:  # a key the stage always writes is missing: not a complete output of this stage
            return None

    @staticmethod
    def complete(folder: Path) -> bool:
        """Whether folder holds a complete output of any stage and format (the publisher's question)."""
        return _complete(folder) is not None

    @staticmethod
    def present(folder: Path) -> bool:
        """Whether a manifest file is there at all, complete or not."""
        return (folder / MANIFEST).is_file()

    @classmethod
    def publish(cls: type[Manifest], staging: Path, fingerprint: str, inputs: dict, facts: dict) -> Manifest:
        """Write the manifest of the files now in staging (a manifest copied in with them is not one of them)."""
        files = {str(path.relative_to(staging)): path.stat().st_size for path in sorted(staging.rglob("*"))
                 if path.is_file() and path != staging / MANIFEST}
        manifest = cls(stage=cls.FOLDER, fingerprint=fingerprint,
                       created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       gpt2zh_version=__version__, inputs=inputs, files=files, **facts)
        manifest.write(staging)
        return manifest

    def as_dict(self) -> dict:
        """The JSON object on disk: the common keys, the format, then the stage's facts that it has."""
        return {"stage": self.stage, "fingerprint": self.fingerprint, "created_utc": self.created_utc,
                "gpt2zh_version": self.gpt2zh_version, FORMAT_KEY: self.FORMAT, "inputs": self.inputs,
                "files": self.files, **self.facts()}

    def facts(self) -> dict:
        """The stage's own fields that are set, by name (what a copy of this output records again)."""
        common = {item.name for item in fields(StageManifest)}
        return {item.name: getattr(self, item.name) for item in fields(self)
                if item.name not in common and getattr(self, item.name) is not None}

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")


@dataclass(frozen=True, kw_only=True)
class TokenizerManifest(StageManifest):
    """Stage 1: a SentencePiece tokenizer trained on the corpus, a base model's adopted (`--model-init-from`),
    or either one copied from beside a Hub checkpoint (pushed_with_checkpoint, PITFALLS.md RA5)."""

    FOLDER: ClassVar[str] = "tokenizer"

    # In the order the keys have always been written in.
    tokenizer_sha256: str | None = None  # tokenizer.json
    spm_sha256: str | None = None  # tokenizer.model: trained tokenizers only
    vocab_size: int
    text_format: int | None = None  # trained tokenizers since documents keep line breaks (PITFALLS.md NU17)
    special_tokens: dict[str, int]  # token -> id: the strings stage 2 removes from the text
    special_token_ids: dict[str, int]  # unk, bos, eos, pad
    base_model: dict | None = None  # the adopted model's identity (pipeline/models/source.py)
    base_architecture: dict | None = None  # its GPT2Config fields that a model from scratch sets otherwise (BM11)
    base_sizes: dict | None = None  # its sizes, as stage 1 read them
    pushed_with_checkpoint: dict | None = None  # repo_id, commit, step

    @property
    def eos_id(self) -> int:
        """The id that ends every document: stage 2 puts it after each one, and samples stop at it."""
        return self.special_token_ids["eos"]

    @property
    def trained(self) -> bool:
        """Trained here (SentencePiece), not a base model's."""
        return self.spm_sha256 is not None

    def checked_file(self) -> tuple[str, str | None]:
        """The file whose digest identifies the tokenizer, and that digest."""
        return ("tokenizer.model", self.spm_sha256) if self.trained else ("tokenizer.json", self.tokenizer_sha256)


@dataclass(frozen=True, kw_only=True)
class DatasetManifest(StageManifest):
    """Stage 2: packed blocks of one dataset, or of one shard of a multi-machine build."""

    FOLDER: ClassVar[str] = "dataset"

    tokenizer_fingerprint: str
    block_size: int
    dtype: str
    rows: dict[str, int]  # blocks per split
    shard: dict[str, int]  # index, count

    def built_with(self, tokenizer: TokenizerManifest) -> bool:
        """Whether these blocks hold the ids of this tokenizer: its inputs, and its file where the dataset recorded
        it (NU17: a tokenizer retrained from the same inputs may give other ids)."""
        return self.tokenizer_fingerprint == tokenizer.fingerprint and \
            self.inputs.get("tokenizer_sha256", tokenizer.tokenizer_sha256) == tokenizer.tokenizer_sha256


@dataclass(frozen=True, kw_only=True)
class ModelManifest(StageManifest):
    """Stage 3: the final weights, with the tokenizer and the run's history beside them."""

    FOLDER: ClassVar[str] = "model"

    @property
    def tokenizer_fingerprint(self) -> str | None:
        return self.inputs.get("tokenizer")

    @property
    def dataset_fingerprints(self) -> list[str] | None:
        return self.inputs.get("dataset")


@dataclass(frozen=True, kw_only=True)
class PushManifest(StageManifest):
    """Stage 4: the Hub commit that holds the model, written once the Hub accepted it."""

    FOLDER: ClassVar[str] = "push"

    repo_id: str
    commit: str
    commit_url: str
    card_sha256: str
