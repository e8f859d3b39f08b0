"""What `--force` replaces in stage 3 (PITFALLS.md NU3): "replace this stage and everything built from it".

A tokenizer or dataset rebuilt with --force makes the run's checkpoints and model another run's. Stage 3
then starts over by itself, as `--resume never` does, instead of refusing and asking for a second command;
the checkpoints and the finished model of the replaced run are moved aside, never deleted.
"""

import datetime as dt
import logging
from pathlib import Path

from gpt2zh.input_changes import changed_inputs
from gpt2zh.training.checkpoints import find_last_valid_checkpoint, read_marker

log = logging.getLogger("gpt2zh")


def resume_under_force(setting: str, replace: bool, directory: Path, fingerprint: str, inputs: dict) -> str:
    """The resume setting stage 3 uses: `never` when --force meets a newest complete checkpoint of another run
    (its folder is then moved aside by prepare_resume); the setting as given otherwise, so a checkpoint of this
    run is resumed as always. Reads only: every rank decides the same."""
    if not replace or setting not in ("auto", "hub"):
        return setting
    last = find_last_valid_checkpoint(directory)[0]
    marker = read_marker(last) if last is not None else None
    if marker is None or marker.get("fingerprint") == fingerprint:
        return setting
    changes = changed_inputs(marker.get("inputs", {}), inputs) or ["the dataset or tokenizer"]
    log.info("pretrain: --force: %s belongs to the run being replaced (changed: %s); starting over, as with "
             "--resume never (PITFALLS.md NU3)", last.name, ", ".join(changes[:4]))
    return "never"


def keep_replaced_model(final: Path) -> Path | None:
    """The finished model of the replaced run, moved to model.previous-<UTC time> just before the new one is
    published: a failed or interrupted retraining leaves it where it was."""
    if not final.is_dir():
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = final.with_name(f"{final.name}.previous-{stamp}")
    final.rename(kept)
    return kept
