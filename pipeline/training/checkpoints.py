"""Which checkpoint a run may resume from (G3, G5, F7).

The Trainer writes checkpoint-N in place, file by file; a process killed mid-save leaves a folder
that looks like a checkpoint. A checkpoint counts only once our marker is in it, written after every
rank finished saving, listing each file's size. Resume takes the newest complete one whose weights
and state load; torn ones newer than that are removed so the Trainer cannot mix their files.
"""

import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from gpt2zh.errors import UserError
from gpt2zh.input_changes import changed_inputs
from gpt2zh.remote.checkpoints import MARKER, read_marker
from gpt2zh.rundir import RunDir, give_plain_modes
from gpt2zh.training.model import COMPILE_PREFIX, strip_compile_prefix
from gpt2zh.training.ranks import barrier, is_main_process

log = logging.getLogger("gpt2zh")
WEIGHTS = "model.safetensors"
STATE = "trainer_state.json"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)$")


def checkpoint_step(folder: Path) -> int:
    match = CHECKPOINT_NAME.match(folder.name)
    return int(match.group(1)) if match else -1


def list_checkpoints(directory: Path) -> list[Path]:
    """checkpoint-N folders, newest (highest N) first."""
    found = [p for p in directory.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0] \
        if directory.is_dir() else []
    return sorted(found, key=checkpoint_step, reverse=True)


def write_marker(folder: Path, fingerprint: str, inputs: dict, extra: dict | None = None) -> None:
    give_plain_modes(folder)  # the Trainer's model.safetensors comes 0600 (pipeline/rundir.py)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MARKER}
    marker = {"step": checkpoint_step(folder), "fingerprint": fingerprint, "inputs": inputs, "files": files,
              "written_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **(extra or {})}
    _replace_marker(folder, marker)


def _replace_marker(folder: Path, marker: dict) -> None:
    """Written aside, then renamed: a process killed mid-write leaves the old marker or the new one, never half."""
    temporary = folder / (MARKER + ".tmp")
    temporary.write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(folder / MARKER)


def problem_with(folder: Path) -> str | None:
    """Why the checkpoint cannot be resumed from, or None if it is complete and loadable."""
    marker = read_marker(folder)
    if marker is None:
        return "no completion marker (the save was interrupted)"
    for relative, size in marker.get("files", {}).items():
        path = folder / relative
        if not path.is_file():
            return f"{relative} is missing"
        if path.stat().st_size != size:
            return f"{relative} has {path.stat().st_size} bytes, {size} were written"
    try:
        json.loads((folder / STATE).read_text(encoding="utf-8"))
        from safetensors import safe_open

        with safe_open(str(folder / WEIGHTS), framework="pt") as weights:
            weights.keys()
    except Exception as err:  # any unreadable state or weights make the checkpoint unusable
        return f"cannot be loaded ({type(err).__name__}: {str(err)[:100]})"
    return None


def repair_compile_prefix(folder: Path) -> bool:
    """(G3) Weights saved from a compiled model carry `_orig_mod.`; rewrite them without it."""
    from safetensors.torch import load_file, save_file

    path = folder / WEIGHTS
    weights = load_file(str(path))
    if not any(key.startswith(COMPILE_PREFIX) for key in weights):
        return False
    temporary = path.with_suffix(".tmp")
    save_file(strip_compile_prefix(weights), str(temporary), metadata={"format": "pt"})
    temporary.replace(path)
    give_plain_modes(folder)
    marker = read_marker(folder)
    if marker is not None:
        marker["files"][WEIGHTS] = path.stat().st_size
        _replace_marker(folder, marker)
    return True


def find_last_valid_checkpoint(directory: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(newest resumable checkpoint or None, [(newer checkpoint, why it was passed over)])."""
    passed_over = []
    for folder in list_checkpoints(directory):
        problem = problem_with(folder)
        if problem is None:
            return folder, passed_over
        passed_over.append((folder, problem))
    return None, passed_over


def move_aside(directory: Path) -> Path | None:
    """`--resume never`: keep the old checkpoints, out of the way (they are never deleted for you)."""
    if not list_checkpoints(directory):
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = directory.with_name(f"{directory.name}.previous-{stamp}")
    directory.rename(target)
    return target


def is_model_not_checkpoint(folder: Path) -> bool:
    """A saved model (a run's model/, a Hub download): config and weights, but no trainer state to continue."""
    return (folder / "config.json").is_file() and not (folder / "trainer_state.json").is_file()


def check_resume_folder(setting: str) -> Path:
    """The checkpoint `--resume PATH` names, or one line; before stage 1 (preflight) and again in stage 3.
    A model (a folder, or a Hub id) is what --model-init-from starts from (PITFALLS.md BM1)."""
    from gpt2zh.models.source import HUB_ID

    chosen = Path(setting).expanduser()
    start_from = f"to start a run from its weights, pass --model-init-from {setting} (PITFALLS.md BM1); --resume " \
                 "continues a run's own checkpoint"
    if RunDir(chosen).checkpoints.is_dir() or (chosen / "settings.yaml").is_file():
        raise UserError(f"--resume {setting}: that is a run directory, not one of its checkpoints",
                        f"to continue that run, pass --run-dir {setting} (it resumes its last checkpoint); "
                        f"to start a new run from its model, pass --model-init-from {setting}")
    if is_model_not_checkpoint(chosen) or (RunDir(chosen).model / "config.json").is_file():
        raise UserError(f"--resume {setting}: that is a model (weights without optimizer, schedule or trainer "
                        "state), not a checkpoint of a run", start_from)
    if not chosen.exists() and HUB_ID.match(setting):  # a path starting with ".", "/" or "~" never matches
        raise UserError(f"--resume {setting}: no such folder; a Hub model is not a checkpoint to resume", start_from)
    if not chosen.is_dir() or (problem := problem_with(chosen)) is not None:
        reason = "not a folder" if not chosen.is_dir() else problem
        raise UserError(f"--resume {setting}: cannot resume from it: {reason}",
                        "pass a complete checkpoint-N folder, or --resume auto")
    return chosen


def select_resume(setting: str, directory: Path, fingerprint: str, inputs: dict) -> tuple[Path | None, list]:
    """(checkpoint to resume from or None, [(torn newer checkpoint, why)]); reads only, on every rank."""
    if setting == "never":
        return None, []
    if setting not in ("auto", "hub"):  # hub: the local checkpoints, then the Hub (training/hub_resume.py)
        chosen, passed_over = check_resume_folder(setting), []
    else:
        chosen, passed_over = find_last_valid_checkpoint(directory)
    if chosen is not None:
        marker = read_marker(chosen) or {}
        if marker.get("fingerprint") != fingerprint:
            changes = changed_inputs(marker.get("inputs", {}), inputs) or ["the dataset or tokenizer"]
            raise UserError(f"{chosen} was made by a different run; changed: {', '.join(changes[:6])}",
                            "restore those settings to resume, or pass --resume never (or --force) to start over")
    return chosen, passed_over


def prepare_resume(setting: str, directory: Path, chosen: Path | None, passed_over: list,
                   fresh_start: str = "from scratch") -> None:
    """Main process only: say what was decided, remove torn checkpoints, repair compiled weights."""
    if setting == "never":
        if (moved := move_aside(directory)) is not None:
            log.info("pretrain: --resume never: previous checkpoints moved to %s; starting %s", moved, fresh_start)
        return
    for folder, problem in passed_over:
        log.warning("%s is not a complete checkpoint (%s); removed, resuming from an older one", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    if chosen is None:
        log.info("pretrain: no checkpoint to resume from in %s; starting %s", directory, fresh_start)
        return
    if repair_compile_prefix(chosen):
        log.info("pretrain: %s had torch.compile's `_orig_mod.` prefix in its weights; stripped", chosen)
    log.info("pretrain: resuming from %s (step %d)", chosen, checkpoint_step(chosen))


class CheckpointMarker(TrainerCallback):
    """Marks checkpoint-N complete once every rank has finished writing it; `extra` (the schedule, the
    process count) goes into the marker, and `after` (the Hub push) runs once the marker is written."""

    def __init__(self, directory: Path, fingerprint: str, inputs: dict, extra: dict | None = None, after=None):
        self.directory, self.fingerprint, self.inputs = directory, fingerprint, inputs
        self.extra, self.after = extra or {}, after

    def on_save(self, args, state, control, **kwargs):
        barrier()  # each rank writes its own RNG state into the folder
        folder = self.directory / f"checkpoint-{state.global_step}"
        if is_main_process() and folder.is_dir():
            write_marker(folder, self.fingerprint, self.inputs, self.extra)
            if self.after is not None:
                self.after(folder)
        barrier()
