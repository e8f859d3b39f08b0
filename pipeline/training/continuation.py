"""What a resumed run continues with: its learning-rate schedule, its step limit, its process count.

A checkpoint's marker records the schedule that trained its steps and how many processes trained them.
Resuming with a higher (or lower) `training.max_steps` re-plans only the future steps (PITFALLS.md RA2);
a max_steps below the checkpoint's step is one line. The global batch and the data order do not depend
on the process count (GlobalStreamSampler deals out global positions), so a checkpoint of one process
continues on two and the other way round (PITFALLS.md RA3).
"""

import logging
from pathlib import Path

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.manifests import ModelManifest
from gpt2zh.training.checkpoints import checkpoint_step, read_marker
from gpt2zh.training.schedule import Schedule

log = logging.getLogger("gpt2zh")


def planned_schedule(config: Config) -> Schedule:
    optimization = config.optimization
    return Schedule(optimization.lr_schedule, optimization.warmup_steps, config.training.max_steps,
                    optimization.min_lr_ratio, optimization.decay_ratio)


def _schedule_so_far(marker: dict, config: Config, step: int) -> Schedule:
    """The schedule the checkpoint's steps trained under; a marker from before RA2 had the cosine one."""
    if saved := marker.get("schedule"):
        return Schedule.from_dict(saved)
    recorded = ((marker.get("inputs") or {}).get("config") or {})
    max_steps = (recorded.get("training") or {}).get("max_steps", step)
    return Schedule("cosine", config.optimization.warmup_steps, max_steps, config.optimization.min_lr_ratio)


def refuse_fewer_steps(resume: Path, wanted: int) -> None:
    """Stage 3, and before stage 1 (pipeline/training/check.py): a max_steps the checkpoint is already past."""
    step = checkpoint_step(resume)
    if wanted < step:
        raise UserError(f"--training-max-steps {wanted:,} is below step {step:,}, where {resume.name} of this run "
                        "already is", f"pass --training-max-steps {step:,} or more to train on (or --resume never "
                        f"to start over with {wanted:,} steps)")


def continued_schedule(config: Config, resume: Path | None) -> Schedule:
    """The schedule for this run: the planned one, or the checkpoint's re-planned for the new max_steps."""
    if resume is None:
        return planned_schedule(config)
    step, wanted = checkpoint_step(resume), config.training.max_steps
    refuse_fewer_steps(resume, wanted)
    schedule = _schedule_so_far(read_marker(resume) or {}, config, step)
    extended = schedule.extended(step, wanted)
    if extended is not schedule:
        log.info("pretrain: %s (PITFALLS.md RA2)", extended.describe_extension())
    return extended


def say_process_change(resume: Path | None, world_size: int, global_batch: int) -> None:
    recorded = (read_marker(resume) or {}).get("world_size") if resume is not None else None
    if recorded is not None and recorded != world_size:
        log.info("pretrain: %s was trained by %d process(es), this run has %d: the global batch (%d) and the data "
                 "order are unchanged (PITFALLS.md RA3)", resume.name, recorded, world_size, global_batch)


def only_the_plan_changed(manifest: ModelManifest | None, weights: dict) -> bool:
    """model/ was made by this run with another max_steps: training on replaces it, after keep_previous_model.
    The same settings on a rebuilt tokenizer or dataset are another run (PITFALLS.md NU3)."""
    from gpt2zh.fingerprints import weights_inputs
    from gpt2zh.input_changes import UPSTREAM_KEYS, setting_changes

    if manifest is None:
        return False
    recorded = weights_inputs(manifest.inputs)
    return not setting_changes(recorded, weights) and all(recorded.get(key) == weights.get(key)
                                                           for key in UPSTREAM_KEYS)


def keep_previous_model(final: Path) -> Path | None:
    """The finished model of the shorter run, kept beside as model.step-N (never replaced silently)."""
    import json

    try:
        steps = json.loads((final / "training_summary.json").read_text(encoding="utf-8"))["steps"]
    except (OSError, ValueError, KeyError):
        return None
    kept = final.with_name(f"{final.name}.step-{steps}")
    if kept.exists():
        return None
    final.rename(kept)
    return kept
