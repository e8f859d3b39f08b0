"""A model reference as users type it — a folder, a run directory, `<owner>/<name>[@<revision>]` on the
Hugging Face Hub or `ms://<owner>/<name>[@<revision>]` on ModelScope — turned into a local folder and an identity
that fingerprints can hold.

A Hub revision is pinned to one commit first (as corpora are, pipeline/corpus/hub_files.py), so the
tokenizer stage 1 adopts and the weights stage 3 loads come from the same immutable tree. Only the files a
GPT-2 needs are downloaded: config, tokenizer files and one weights format (safetensors when the repository
has it, the pickle checkpoint otherwise), never a repository's Python code.
"""

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.errors import UserError
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.remote import Hub, open_hub
from gpt2zh.rundir import RunDir

log = logging.getLogger("gpt2zh")
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[^\s@]+))?$")
COMMIT = re.compile(r"[0-9a-f]{40}")
CONFIG = "config.json"
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model")
SMALL_FILES = (CONFIG, "generation_config.json", *TOKENIZER_FILES)
# The settings of the gpt2zh run that trained a model (a run's model/, and as pushed): the script its corpus was
# converted to (pipeline/inference/script.py). Fetched beside SMALL_FILES, never part of the model's identity.
SETTINGS_FILES = ("run_config.yaml", "gpt2zh_config.yaml")
FORM = ("a folder holding config.json (a run's model/ or run directory), a Hub model id <owner>/<name>[@<revision>] "
        "or a ModelScope one ms://<owner>/<name>[@<revision>]")
MODELSCOPE = "ms://"


@dataclass(frozen=True)
class ModelSource:
    reference: str              # as typed
    folder: Path                # the files, on this machine (a folder, or a snapshot in the HF cache)
    repo_id: str | None = None  # on the hub
    commit: str | None = None   # the revision, pinned
    provider: str = "huggingface"

    @property
    def label(self) -> str:
        scheme = MODELSCOPE if self.provider == "modelscope" else ""  # as typed: never mistaken for a Hub id
        return f"{scheme}{self.repo_id}@{self.commit[:12]}" if self.repo_id else str(self.folder)

    def identity(self) -> dict:
        """What fingerprints hold: a Hub commit names its files for good; a folder is named by its content."""
        if self.repo_id:
            where = {"provider": self.provider} if self.provider != "huggingface" else {}  # HF: as before the choice
            return {"reference": self.reference, "hub": self.repo_id, "commit": self.commit, **where}
        files = sorted(p.name for p in self.folder.iterdir() if p.name in (*SMALL_FILES, *SAFETENSORS, *PICKLE)
                       or p.name.endswith((".safetensors", ".bin")))
        return {"reference": self.reference, "folder": str(self.folder),
                "files": {name: _sha256(self.folder / name) for name in files}}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def local_folder(reference: str) -> Path | None:
    """The model folder a path names: the folder itself, or the model/ inside a run directory."""
    path = Path(reference).expanduser()
    for folder in (path, RunDir(path).model):
        if (folder / CONFIG).is_file():
            return folder.resolve()
    return None


def absolute_reference(reference: str) -> str:
    """A folder reference made absolute, so the saved settings and the fingerprints mean the same folder from
    any directory; a Hub id stays as typed. A folder that exists wins over a Hub id of the same name, as it does
    for from_pretrained."""
    if not reference or (local_folder(reference) is None and not reference.startswith((".", "/", "~"))):
        return reference
    return os.path.abspath(os.path.expanduser(reference))


def fetch_model(reference: str, flag: str, commit: str | None = None, weights: bool = True) -> ModelSource:
    """The model's files on this machine; weights=False fetches only config and tokenizer files.
    commit: the revision pinned by an earlier stage (stage 3 loads what stage 1 adopted)."""
    where = f"{flag} {reference!r}"
    if (folder := local_folder(reference)) is not None:
        return ModelSource(reference, folder)
    provider = "modelscope" if reference.startswith(MODELSCOPE) else "huggingface"
    match = HUB_ID.match(reference.removeprefix(MODELSCOPE))
    path = Path(reference).expanduser()
    if (path / "settings.yaml").is_file() or TokenizerManifest.present(RunDir(path).tokenizer):
        raise UserError(f"{where}: a run directory without a finished model/ (stage 3 has not ended there)",
                        f"finish it (`gpt2zh run --run-dir {reference}`), or pass {FORM}")
    if match is None or (provider == "huggingface" and (path.exists() or reference.startswith((".", "/", "~")))):
        problem = "no config.json there" if path.exists() else "no such folder"
        raise UserError(f"{where}: {problem}, and not a Hub model id", f"pass {FORM}")
    hub = open_hub(provider)
    repo_id, revision = match["repo"], commit or match["revision"] or hub.default_revision
    try:
        return _download(hub, reference, repo_id, revision, weights)
    except UserError:
        raise
    except Exception as err:
        problem = hub.explain(err, where, "model", repo_id, revision)
        if problem is None:
            raise
        if provider == "huggingface":  # `runs/mine` reads as a Hub id too: a mistyped folder is not only a Hub problem
            problem = UserError(f"{problem.message} (and there is no folder {path} here)", problem.fix)
        raise problem from None


def _cached(hub: Hub, reference: str, repo_id: str, commit: str, weights: bool) -> ModelSource | None:
    """A commit pinned by an earlier stage whose files are all in the hub's cache: no request to the hub."""
    if (folder := hub.cached_snapshot(repo_id, "model", commit)) is None:
        return None
    complete = (folder / CONFIG).is_file() and (not weights or any((folder / name).is_file()
                                                                   for name in (*SAFETENSORS, *PICKLE)))
    return ModelSource(reference, folder, repo_id, commit, hub.name) if complete else None


def _download(hub: Hub, reference: str, repo_id: str, revision: str, weights: bool) -> ModelSource:
    if COMMIT.fullmatch(revision) and (cached := _cached(hub, reference, repo_id, revision, weights)) is not None:
        return cached

    commit = hub.resolve(repo_id, "model", revision)
    files = {entry.path: entry for entry in hub.list_files(repo_id, "model", commit)}
    names = set(files)
    if CONFIG not in names:
        raise UserError(f"{reference!r}: model {repo_id}@{revision} has no config.json (files: "
                        f"{', '.join(sorted(names)[:5]) or 'none'})", "name a transformers model repository")
    wanted = [name for name in (*SMALL_FILES, *SETTINGS_FILES) if name in names]
    if weights:
        wanted += _weight_files(names, repo_id)
    missing = [name for name in wanted if not hub.is_cached(repo_id, "model", commit, files[name])]
    if missing:  # the download shows each file's progress
        log.info("model %s@%s (commit %s): downloading %d of %d file(s) into the %s", repo_id, revision,
                 commit[:12], len(missing), len(wanted), hub.cache_name)
    folder = hub.download(repo_id, "model", commit, wanted)
    return ModelSource(reference, folder, repo_id, commit, hub.name)


def _weight_files(names: set[str], repo_id: str) -> list[str]:
    """Safetensors when the repository has them (no code can run while loading); else the pickle checkpoint,
    which stage 3 reads with torch's weights_only loader."""
    for single, index in (SAFETENSORS, PICKLE):
        if index in names:  # sharded: model-00001-of-00002.safetensors, ...
            stem, suffix = single.rsplit(".", 1)
            return [index, *sorted(n for n in names if n.startswith(f"{stem}-") and n.endswith(f".{suffix}"))]
        if single in names:
            return [single]
    raise UserError(f"model {repo_id} has neither model.safetensors nor pytorch_model.bin",
                    "name a repository with PyTorch weights (TensorFlow/Flax-only repositories are not supported)")


def _outside_vocabulary_warning(record: logging.LogRecord) -> bool:
    return not (record.getMessage().startswith("Model config: ") and "within the vocabulary" in record.getMessage())


def hide_outside_vocabulary_ids() -> None:
    """GPT2Config's defaults put bos/eos at 50256, outside a Chinese vocabulary (UER's config.json names no ids),
    and transformers warns on every load. The ids used here come from the tokenizer
    (pipeline/models/text.py:special_token_ids), so the warning only alarms; it is dropped."""
    logger = logging.getLogger("transformers.configuration_utils")
    if _outside_vocabulary_warning not in logger.filters:
        logger.addFilter(_outside_vocabulary_warning)


def read_config(source: ModelSource, flag: str) -> dict:
    """config.json of a GPT-2; any other architecture is one line (its code would be needed, and never runs)."""
    hide_outside_vocabulary_ids()
    config = json.loads((source.folder / CONFIG).read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    if model_type != "gpt2":
        kind = f"a {model_type}" if model_type else "an unknown"
        raise UserError(f"{flag} {source.reference!r} is {kind} model "
                        f"({', '.join(config.get('architectures') or []) or 'no architectures listed'}), not GPT-2",
                        "start from a GPT-2 checkpoint (model_type gpt2), e.g. uer/gpt2-chinese-cluecorpussmall")
    return config
