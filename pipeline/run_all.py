"""`gpt2zh run`: stages 1-4 in order in one run directory, up-to-date stages skipped, one closing summary.

When a push is requested, the token and the repository are checked before stage 1, so hours of
training never end on a failed upload.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from gpt2zh.errors import UserError
from gpt2zh.report import StageReport, human_duration
from gpt2zh.stages import STAGES, StageInfo, StageRequest, built_at, load_entry, stage_by_reference
from gpt2zh.training.trackers import log_contents

log = logging.getLogger("gpt2zh")


def selected_stages(request: StageRequest, from_stage: str | None) -> list[tuple[StageInfo, bool]]:
    """[(stage, forced)]: every stage, push only when a repository is named; forced from --from-stage on."""
    start = None
    if from_stage is not None:
        try:
            start = stage_by_reference(from_stage).number
        except KeyError:
            names = ", ".join(f"{info.number}/{info.command}" for info in STAGES)
            raise UserError(f"--from-stage: no stage {from_stage!r}", f"use one of {names}") from None
    return [(info, request.force or (start is not None and info.number >= start))
            for info in STAGES if info.command != "push" or request.config.hub.repo_id]


def run_all(request: StageRequest, stages: list[tuple[StageInfo, bool]], after_each: Callable[[], None]) -> int:
    """Run `stages` (from selected_stages, already checked by pipeline/preflight.py) and summarise them;
    `after_each` runs after every stage that built its output."""
    hub = request.config.hub
    if hub.repo_id and not request.dry_run:
        from gpt2zh.remote.access import check_push_access

        # before stage 1, not after hours of training
        access = check_push_access(hub.repo_id, hub.private, hub.provider)
        log.info("run: will push to %s as %s at the end", hub.repo_id, access.user)
    elif not hub.repo_id:
        log.info("run: no --hub-repo-id, so stage 4 (push) is skipped")

    report = StageReport("run")
    for info, forced in stages:
        before = built_at(request.run_dir, info)
        started = time.monotonic()
        load_entry(info)(replace(request, force=forced))
        elapsed = time.monotonic() - started
        after = built_at(request.run_dir, info)
        if after != before:
            after_each()
        if info.command == "push" and request.dry_run:
            state = "dry run, nothing sent"
        else:
            reused = after is not None and after == before
            state = "up to date, reused" if reused else f"ran in {human_duration(elapsed)}"
        where = hub.repo_id if info.command == "push" else f"{request.run_dir.stage(info.folder)}/"
        report.row(f"{info.number} {info.command}", f"{state:<22} {where}")
    root = request.run_dir.root
    report.row("logs", f"{request.run_dir.logs}/ ({log_contents(request.config.training.report_to)})")
    report.row("try it", f'gpt2zh generate --model {root} "今天"')
    if not hub.repo_id:
        report.row("publish", f"gpt2zh push --run-dir {root} --hub-repo-id <user>/<name>")
    report.print()
    return 0
