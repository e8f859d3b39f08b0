"""What can be known before the first stage runs, checked before anything long starts. Each stage exposes it as
one check (StageInfo.check in pipeline/stages.py: the tokenizer or dataset a command would replace, a corpus
too small for its blocks or for one optimizer step, stage 3's plan on this machine, its schedule and resume)
that returns what it computed; preflight runs the checks of the stages a command runs, in order, and each
stage reuses what its own returned (StageRequest.checks). Each problem is one line that says what to change.
"""

from gpt2zh.config.schema import Config
from gpt2zh.stages import Command, StageInfo, StageRequest, load_check


def check_token_present(config: Config, commands: set[str], dry_run: bool) -> None:
    """Without a network request: whether the token is accepted is checked by the stage, before any upload.
    Looked for before any stage's check, for the whole command: stage 4 pushes the model, stage 3 checkpoints."""
    pushes = ("push" in commands and not dry_run) or ("pretrain" in commands and config.hub.push_checkpoints)
    if pushes and config.hub.repo_id:
        from gpt2zh.remote.access import require_token

        require_token(config.hub.repo_id, config.hub.provider)


def preflight(request: StageRequest, stages: list[tuple[StageInfo, bool]]) -> dict[str, object]:
    """Raise before any stage runs if one of them would refuse or fail for a reason known now; else what each
    stage's check returned, by command, for the stage to reuse."""
    command = Command(request, {info.command: forced for info, forced in stages})
    check_token_present(request.config, set(command.forced), request.dry_run)
    for info, _ in stages:
        if (check := load_check(info)) is not None:
            command.checks[info.command] = check(command)
    return command.checks
