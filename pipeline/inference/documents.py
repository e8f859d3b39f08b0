"""The documents `gpt2zh evaluate` scores, the same for every model it compares: a run's held-out documents
(the ones stages 2 and 3 kept out of training, chosen by the same hash of the cleaned text), or every document
of --data-files; cleaned by the run's data settings either way, as stages 1 and 2 clean the corpus.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from gpt2zh.config.schema import DataConfig
from gpt2zh.console import progress
from gpt2zh.corpus import CorpusReader, sources_for
from gpt2zh.errors import UserError
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.rundir import RunDir

log = logging.getLogger("gpt2zh")
CHOOSE = "pass --run-dir R (its held-out documents) or --data-files F (every document of those files)"


@dataclass(frozen=True)
class EvaluationText:
    texts: list[str]
    described: str  # for the summary: "25 held-out documents of runs/demo"

    @property
    def characters(self) -> int:
        return sum(map(len, self.texts))


def run_of(model_references: list[str]) -> tuple[Path, str] | None:
    """(the run directory, the --model in it) of the first --model that is a run directory or its model/."""
    from gpt2zh.models.source import local_folder
    from gpt2zh.run_settings import read_settings

    for reference in model_references:
        folder = local_folder(reference)
        if folder is not None and read_settings(folder.parent) is not None:
            return folder.parent, reference
    return None


def run_specials(run: RunDir) -> tuple[str, ...]:
    """The run's own special-token strings, which its stage 2 removed from the text."""
    manifest = TokenizerManifest.read(run.tokenizer)
    return tuple(manifest.special_tokens) if manifest else ()


def read_texts(data: DataConfig, held_out_only: bool, reserved: tuple[str, ...],
               max_documents: int | None) -> list[str]:
    reader = CorpusReader(sources_for(data.files)[0], data, reserved)  # every file checked before reading
    texts = []
    total = sum(reader.block_bytes(block) for block in reader.blocks)
    with progress(total, "B", "reading documents", scale=True) as bar:
        # Every document is read even for the held-out few: they are spread over the corpus, and dedupe (as
        # in stage 2) must see the training documents that come before them.
        for document in reader.documents(on_block=bar.update):
            if held_out_only and not document.validation:
                continue
            texts.append(document.text)
            if max_documents and len(texts) >= max_documents:
                break
    return texts


def held_out_text(run: RunDir, data: DataConfig, reserved: tuple[str, ...],
                  max_documents: int | None) -> EvaluationText:
    from gpt2zh.run_settings import read_settings

    where = f"--run-dir {run.root}"
    if not run.root.is_dir():
        raise UserError(f"{where} does not exist", CHOOSE)
    if read_settings(run.root) is None:
        raise UserError(f"{where} has no saved settings (settings.yaml) to find its held-out documents by",
                        "pass the run directory stages 1-2 ran in, or --data-files F")
    if data.validation_fraction <= 0:
        raise UserError(f"{where} holds out no documents (data.validation_fraction is 0)",
                        "pass --data-files F to evaluate on other text")
    texts = read_texts(data, True, reserved, max_documents)
    if not texts:
        raise UserError(f"{where}: none of its documents is held out (data.validation_fraction "
                        f"{data.validation_fraction:g} of a small corpus)", "pass --data-files F to evaluate on "
                        "other text, or rebuild the run with a larger --data-validation-fraction")
    return EvaluationText(texts, f"{len(texts):,} held-out document(s) of {run.root}")


def file_text(data: DataConfig, reserved: tuple[str, ...], max_documents: int | None) -> EvaluationText:
    texts = read_texts(data, False, reserved, max_documents)
    if not texts:
        raise UserError(f"--data-files {' '.join(data.files)}: no text left after cleaning",
                        "check the files and --data-text-field")
    return EvaluationText(texts, f"{len(texts):,} document(s) of {len(data.files)} --data-files path(s)")
