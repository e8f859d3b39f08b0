"""The learning-rate schedule: linear warmup to the peak, then `cosine` decay to min_lr_ratio × peak,
`wsd` (warmup, stable at the peak, decay over the last decay_ratio of the steps) or `constant`.

Counted in optimizer steps from 1. transformers' warmup starts at factor 0, so step 1 trains at
learning rate 0: a step of compute spent on nothing, and a history whose first row says 0.0. Here
step k of the warmup trains at k / warmup_steps of the peak (step warmup_steps at the peak), and the
last step at exactly the minimum.

A run resumed with another max_steps (PITFALLS.md RA2) keeps the factors of the steps already taken
and re-plans only the future, from the factor the last step trained at: `cosine` decays from there to
the minimum at the new last step; `wsd` still in its stable phase just decays later (from the re-plan at the
earliest), and after its decay began re-warms to the peak over warmup_steps, stays there, and decays again, or,
with too few steps left for both, decays on from where it is; `constant` is unchanged. Either way the last
step trains at exactly the minimum.
Every re-plan is kept (`previous`), so the factors of the past stay what they were.
"""

import math
from dataclasses import asdict, dataclass, replace
from functools import partial


@dataclass(frozen=True)
class Schedule:
    kind: str
    warmup_steps: int
    max_steps: int
    min_ratio: float
    decay_ratio: float = 0.2  # wsd only
    replanned_at: int = 0  # the plan applies to steps after this one (0: from the start)
    start_factor: float = 1.0  # the factor step `replanned_at` trained at
    previous: "Schedule | None" = None

    def factor(self, step: int) -> float:
        """The share of the peak learning rate that optimizer step `step` (1-based) trains at."""
        if step <= self.replanned_at and self.previous is not None:
            return self.previous.factor(step)
        if self.replanned_at < self.warmup_steps or self.kind == "constant":  # warmup is never repeated
            return planned_factor(self, step)
        return replanned_factor(self, step)

    def extended(self, step: int, max_steps: int) -> "Schedule":
        """The schedule for a run at `step` that now ends at `max_steps` (re-planned from `step`)."""
        if max_steps == self.max_steps:
            return self
        current = self.factor(step) if step > 0 else 0.0
        return replace(self, max_steps=max_steps, replanned_at=step, start_factor=current, previous=self)

    def describe_extension(self) -> str:
        """What the last re-plan did, in words for the log."""
        if self.previous is None:
            return f"{self.kind} schedule over {self.max_steps:,} steps"
        step, old = self.replanned_at, self.previous.max_steps
        head = f"training.max_steps {old:,} -> {self.max_steps:,} at step {step:,}: "
        if self.kind == "constant" or self.replanned_at < self.warmup_steps:
            return head + f"the {self.kind} schedule continues unchanged (warmup is not repeated)"
        if self.kind == "cosine":
            return head + (f"cosine decay re-planned from the current {self.start_factor:.3g} x peak to "
                           f"{self.min_ratio:g} x peak at step {self.max_steps:,}")
        if self.kind != "wsd":
            raise ValueError(f"no words for a re-planned {self.kind} schedule")
        decay, left = _decay_steps(self), self.max_steps - step
        if self.start_factor >= 1.0:
            return head + f"wsd stays at the peak and decays over the last {min(decay, left):,} steps"
        if self.warmup_steps + decay > left:
            return head + (f"wsd had begun its decay ({self.start_factor:.3g} x peak) and {left:,} steps are too "
                           f"few to re-warm over {self.warmup_steps:,} and decay over {decay:,}: it decays on to "
                           f"{self.min_ratio:g} x peak at step {self.max_steps:,}")
        return head + (f"wsd had begun its decay ({self.start_factor:.3g} x peak): re-warms to the peak over "
                       f"{self.warmup_steps:,} steps, then decays over the last {decay:,}")

    def in_words(self) -> str:
        """For the model card: `linear warmup then cosine decay`, and where it was re-planned."""
        shape = {"cosine": "cosine decay", "constant": "a constant rate",
                 "wsd": f"a stable rate and a linear decay over the last {_decay_steps(self):,} steps (wsd)"}[self.kind]
        replans, schedule = [], self
        while schedule.previous is not None:
            replans.append(f"{schedule.replanned_at:,}")
            schedule = schedule.previous
        again = f", re-planned at step {', '.join(reversed(replans))} for a longer run" if replans else ""
        return f"linear warmup then {shape}{again}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "Schedule":
        previous = saved.get("previous")
        return cls(**{**saved, "previous": cls.from_dict(previous) if previous else None})


def _decay_steps(schedule: Schedule) -> int:
    return max(1, round(schedule.decay_ratio * schedule.max_steps))


def planned_factor(schedule: Schedule, step: int) -> float:
    warmup, last, low = schedule.warmup_steps, schedule.max_steps, schedule.min_ratio
    if step <= warmup:
        return step / warmup
    if schedule.kind == "constant":
        return 1.0
    if schedule.kind == "wsd":
        decay_start = max(warmup, last - _decay_steps(schedule))
        if step <= decay_start:
            return 1.0
        return 1.0 - (1.0 - low) * min(1.0, (step - decay_start) / max(1, last - decay_start))
    progress = min(1.0, (step - warmup) / max(1, last - warmup))
    return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def replanned_factor(schedule: Schedule, step: int) -> float:
    start, begin, last, low = schedule.replanned_at, schedule.start_factor, schedule.max_steps, schedule.min_ratio
    if schedule.kind == "cosine":
        progress = min(1.0, (step - start) / max(1, last - start))
        return low + (max(begin, low) - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    decay = _decay_steps(schedule)
    if begin >= 1.0:  # still stable: the decay comes later, and never begins before the re-plan (no drop)
        return _linear_decay(1.0, low, max(start, last - decay), last, step)
    rewarm_end = start + schedule.warmup_steps
    if rewarm_end > last - decay:  # no room to re-warm and decay again: decay on from the current rate
        return _linear_decay(begin, low, start, last, step)
    if step <= rewarm_end:
        return begin + (1.0 - begin) * (step - start) / max(1, schedule.warmup_steps)
    return _linear_decay(1.0, low, last - decay, last, step)


def _linear_decay(high: float, low: float, decay_start: int, last: int, step: int) -> float:
    if step <= decay_start:
        return high
    return high - (high - low) * min(1.0, (step - decay_start) / max(1, last - decay_start))


def _factor_for_index(index: int, schedule: Schedule) -> float:
    # LambdaLR calls this with the number of scheduler steps taken so far: 0 while step 1 runs.
    return schedule.factor(index + 1)


def scheduler_for(optimizer, schedule: Schedule):
    from torch.optim.lr_scheduler import LambdaLR

    # a partial, not a callable object: LambdaLR's state_dict saves an object's __dict__ into every
    # checkpoint and load_state_dict writes it back, which would restore the old plan over a re-planned one
    return LambdaLR(optimizer, partial(_factor_for_index, schedule=schedule))


def rate_from_the_schedule(scheduler) -> None:
    """After a checkpoint's optimizer and scheduler states are loaded: the optimizer holds the rate the checkpoint's
    plan gave the next step. A re-planned schedule (PITFALLS.md RA2) gives another, so without this the first
    resumed step trains at the old plan's rate and the next jumps to the new one (measured on a 12-step cosine run
    trained on to 16 from step 8: step 9 at 2.85e-4, step 10 at 3.65e-4, where the plan says 3.99e-4, 3.65e-4)."""
    scheduler.last_epoch -= 1
    scheduler.step()  # the same position again: every group's rate recomputed from this run's schedule
