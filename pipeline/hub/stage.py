"""Stage 4: <run-dir>/model/ (+ card and logs) -> a Hub model repository (seed 002 §8).

The files are gathered into <run-dir>/push/upload/ and sent as one commit. <run-dir>/push/ is written
only after the Hub accepted the commit, with the commit id; pushing an unchanged run again is
skipped, and even with --force the Hub sees no changed file and makes no commit.
"""

import json
import logging
import shutil
from pathlib import Path

from pipeline.errors import UserError
from pipeline.report import StageReport, human_bytes
from pipeline.rundir import StageOutput, file_sha256, fingerprint, read_manifest
from pipeline.stages import StageRequest

log = logging.getLogger("gpt2zh")
STAGE = "push"
MODEL_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
               "tokenizer_config.json", "training_summary.json")
LOG_FILES = ("training_history.csv", "loss.png")


def gather(run_dir: Path, target: Path, repo_id: str, license_id: str) -> list[tuple[str, int]]:
    """Copy what is pushed into target; returns (name, size) of each file."""
    from pipeline.hub.card import render_model_card

    target.mkdir(parents=True, exist_ok=True)
    model_dir = run_dir / "model"
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, target / name)
    if (model_dir / "run_config.yaml").is_file():
        shutil.copyfile(model_dir / "run_config.yaml", target / "gpt2zh_config.yaml")
    for name in LOG_FILES:
        if (run_dir / "logs" / name).is_file():
            shutil.copyfile(run_dir / "logs" / name, target / name)
    (target / "README.md").write_text(render_model_card(run_dir, repo_id, license_id), encoding="utf-8")
    return [(str(p.relative_to(target)), p.stat().st_size) for p in sorted(target.rglob("*")) if p.is_file()]


def _listing(files: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({human_bytes(size)})" for name, size in files)


def push_to_hub(request: StageRequest) -> dict:
    hub, run = request.config.hub, request.run_dir
    report = StageReport(STAGE)
    if not hub.repo_id:
        raise UserError("no repository to push to", "pass --hub-repo-id user/name (or set hub.repo_id in the config)")
    model = read_manifest(run.stage("model"))
    if model is None:
        raise UserError(f"no complete model in {run.stage('model')}", "run `gpt2zh pretrain` (or `gpt2zh run`) first")

    if request.dry_run:
        preview = run.root / ".push-preview"
        shutil.rmtree(preview, ignore_errors=True)
        files = gather(run.root, preview, hub.repo_id, hub.license)
        shutil.rmtree(preview, ignore_errors=True)
        report.row("dry run", f"would push {len(files)} files, {human_bytes(sum(s for _, s in files))}, to "
                              f"{hub.repo_id} ({'private' if hub.private else 'public'}); nothing was sent")
        report.row("files", _listing(files))
        report.print("dry run")
        return {}

    from pipeline.hub.access import check_push_access, hub_api
    from pipeline.hub.upload import upload_with_retries

    access = check_push_access(hub.repo_id, hub.private)  # before any upload work
    inputs = {"model": model["fingerprint"], "repo_id": hub.repo_id, "private": hub.private, "license": hub.license,
              "endpoint": access.endpoint}
    output = StageOutput(run.stage("push"), STAGE, fingerprint(inputs), inputs)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s already has this model (commit %s); skipped (--force pushes again)", STAGE, hub.repo_id,
                 manifest.get("commit", "?")[:12])
        return manifest
    summary = json.loads((run.stage("model") / "training_summary.json").read_text(encoding="utf-8"))
    loss = summary.get("final_eval_loss")
    message = (f"gpt2zh {run.root.name}: {summary['steps']:,} steps"
               + (f", validation loss {loss:.3f}" if loss is not None else ""))
    with output.build() as staging:
        files = gather(run.root, staging / "upload", hub.repo_id, hub.license)
        api = hub_api()
        commit = upload_with_retries(api, hub.repo_id, staging / "upload", message, hub.max_retries,
                                     hub.retry_wait_seconds)
        output.manifest_extra.update(repo_id=hub.repo_id, commit=commit.oid, commit_url=commit.commit_url,
                                     card_sha256=file_sha256(staging / "upload" / "README.md"))
    report.row("pushed", f"{len(files)} files, {human_bytes(sum(s for _, s in files))}, as {access.user}")
    report.row("commit", f"{commit.oid} \"{message}\"")
    report.row("repository", f"{access.endpoint}/{hub.repo_id}")
    report.row("load it", f"pipeline('text-generation', model={hub.repo_id!r})")
    report.print()
    return json.loads((output.final / "manifest.json").read_text(encoding="utf-8"))
