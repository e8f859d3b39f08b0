"""The stages in pipeline order and what a stage receives. Importing this module imports no stage:
entry points are loaded by name after the Hugging Face environment is prepared (G13)."""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.manifests import DatasetManifest, ModelManifest, PushManifest, StageManifest, TokenizerManifest
from gpt2zh.resolution import Resolved
from gpt2zh.rundir import RunDir


@dataclass
class StageRequest:
    resolved: Resolved  # the config with its preset and sources, resolved once (PITFALLS.md RS15)
    run_dir: RunDir
    force: bool = False  # rebuild even when up to date (--force, or --from-stage for this stage)
    replace: bool = False  # --force: also replace an output built from other inputs (--from-stage does not)
    overrides: dict = field(default_factory=dict)  # everything typed on command lines, this one's and saved ones
    dry_run: bool = False  # stage 4: list what would be pushed, send nothing
    saved_settings: str = ""  # the run's saved settings the config started from, described; "" = none
    # What each stage's check found before the command's first stage ran (pipeline/preflight.py), by command:
    # the stage reuses it. A stage called without one makes its check itself.
    checks: dict[str, object] = field(default_factory=dict)
    corpus_listing: tuple[list, str] | None = None  # see corpus()

    @property
    def config(self) -> Config:
        return self.resolved.config

    @property
    def cpu_count(self) -> int:
        return self.resolved.facts.cpu_count

    def corpus(self) -> tuple[list, str]:
        """The corpus files (corpus.sources.Source) and their label, listed once a command, by the first check
        or stage that reads them (an hf:// corpus is listed on its hub)."""
        if self.corpus_listing is None:
            from gpt2zh.corpus.sources import sources_for  # with the stages' modules, not at start-up (G13)

            self.corpus_listing = sources_for(self.config.data.files)
        return self.corpus_listing


@dataclass(frozen=True)
class StageInfo:
    command: str     # subcommand of `gpt2zh`
    number: int      # scripts/0N_*.py
    contract: type[StageManifest]  # what its output folder holds (pipeline/manifests.py)
    entry: str       # "module:function", called with a StageRequest
    summary: str
    groups: tuple[str, ...]  # the config groups it reads (its --help shows these)
    check: str | None = None  # "module:function": what is known before it runs, called with a Command

    @property
    def folder(self) -> str:
        """Its output folder inside the run directory."""
        return self.contract.FOLDER


@dataclass
class Command:
    """What each stage's check reads (pipeline/preflight.py): the request, the stages the command runs
    (command -> forced) and what the checks before it returned, in pipeline order."""
    request: StageRequest
    forced: dict[str, bool]
    checks: dict[str, object] = field(default_factory=dict)

    def runs(self, command: str) -> bool:
        return command in self.forced

    @property
    def replaces(self) -> bool:
        """Whether a check lets its stage replace an output built from other inputs: only --force does;
        --from-stage reruns a stage and still refuses (PITFALLS.md RS11)."""
        return self.request.replace

    @property
    def sources(self) -> list:
        """The corpus files stages 1 and 2 read, listed once a command (StageRequest.corpus)."""
        return self.request.corpus()[0]


STAGES = (
    StageInfo("train-tokenizer", 1, TokenizerManifest, "gpt2zh.tokenizer.stage:train_tokenizer",
              "train a SentencePiece tokenizer on the corpus and save it as a Hugging Face fast tokenizer",
              ("data", "tokenizer"), "gpt2zh.tokenizer.check:check_tokenizer"),
    StageInfo("tokenize", 2, DatasetManifest, "gpt2zh.dataset.stage:tokenize_dataset",
              "tokenize the corpus and pack it into fixed-length training and validation blocks",
              ("data", "tokenizer"), "gpt2zh.dataset.check:check_dataset"),
    StageInfo("pretrain", 3, ModelManifest, "gpt2zh.training.stage:pretrain",
              "pretrain GPT-2 with the Trainer: presets, safe resume, logs, samples -> model/",
              ("model", "training", "optimization", "checkpoint", "hub"), "gpt2zh.training.check:check_pretrain"),
    StageInfo("push", 4, PushManifest, "gpt2zh.hub.stage:push_to_hub",
              "push model/, its model card and logs to a Hugging Face Hub model repository", ("hub",)),
)


def stage_by_reference(reference: str) -> StageInfo:
    """A stage by number (3) or command name (pretrain)."""
    for info in STAGES:
        if reference in (str(info.number), info.command):
            return info
    raise KeyError(reference)


def refuse_earlier_stages_settings(info: StageInfo, typed: dict, before: Config, run_dir: str) -> None:
    """A stage command acts on its own groups and saves a later stage's settings for it; a changed setting that
    only an earlier stage reads (`pretrain --tokenizer-vocab-size 8000`) would be accepted and ignored
    (PITFALLS.md NU4). before: the settings without this command line (the same value typed again is fine)."""
    from gpt2zh.config.options import flag_name

    later = {group for stage in STAGES if stage.number >= info.number for group in stage.groups}
    for dotted, value in typed.items():
        group, field_name = dotted.split(".", 1)
        if group in later or getattr(getattr(before, group), field_name) == value:
            continue
        flag = flag_name(group, field_name)
        if isinstance(value, bool):
            flag = flag if value else f"--no-{flag[2:]}"
        typed_again = flag if isinstance(value, bool) else \
            f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        first = next(stage for stage in STAGES if group in stage.groups)
        raise UserError(f"{flag} is a setting of stage {first.number} ({first.command}), which `gpt2zh "
                        f"{info.command}` does not run: nothing would use it",
                        f"to rebuild from stage {first.number} with it, use `gpt2zh run --run-dir {run_dir} "
                        f"{typed_again} --force`; "
                        "else leave it out")


def built_at(run_dir: RunDir, info: StageInfo) -> str | None:
    """When the stage's output was published (its manifest's time), None when there is none."""
    manifest = info.contract.read(run_dir.stage(info.folder))
    return manifest.created_utc if manifest else None


def _load(reference: str) -> Callable:
    module_name, function_name = reference.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def load_entry(info: StageInfo) -> Callable[[StageRequest], object]:
    return _load(info.entry)


def load_check(info: StageInfo) -> Callable[[Command], object] | None:
    return _load(info.check) if info.check else None
