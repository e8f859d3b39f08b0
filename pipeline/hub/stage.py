"""Stage 4: <run-dir>/model/ (+ card, and the logs stage 3 froze beside the weights) -> a Hub model
repository (G8).

The files are hard-linked into <run-dir>/push/upload/ and sent as one commit. <run-dir>/push/ is written
only after the Hub accepted the commit, with the commit id; pushing an unchanged run again is
skipped, and even with --force the Hub sees no changed file and makes no commit. A dry run only adds
push/README.preview.md, the card it would send.
"""

import hashlib
import json
import logging
import os
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
LOG_FILES = ("training_history.csv", "loss.png")  # the copies stage 3 froze into model/, not logs/
PREVIEW = "README.preview.md"  # the card a dry run would push, in <run-dir>/push/


def upload_sources(run_dir: Path) -> dict[str, Path]:
    """Name in the repository -> file in the run directory, for everything pushed but the card."""
    sources = {name: run_dir / "model" / name for name in MODEL_FILES}
    sources["gpt2zh_config.yaml"] = run_dir / "model" / "run_config.yaml"
    sources.update({name: run_dir / "model" / name for name in LOG_FILES})
    return {name: path for name, path in sources.items() if path.is_file()}


def stage_upload(sources: dict[str, Path], card: str, target: Path) -> list[tuple[str, int]]:
    """The upload folder: hard links to the run's files (no second copy of the weights), plus the card.

    Stages replace files (write aside, then rename) and never rewrite them in place, so the links keep
    exactly what was pushed."""
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        try:
            os.link(source, target / name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, target / name)
    (target / "README.md").write_text(card, encoding="utf-8")
    return [(str(p.relative_to(target)), p.stat().st_size) for p in sorted(target.rglob("*")) if p.is_file()]


def _check_model_matches_its_inputs(run, model: dict) -> None:
    """The card describes the tokenizer and dataset from the run directory: they must be the ones the
    weights were trained on, not a rebuild made since."""
    from pipeline.dataset.loading import dataset_parts

    tokenizer = (read_manifest(run.stage("tokenizer")) or {}).get("fingerprint")
    try:
        datasets = [manifest["fingerprint"] for _, manifest in dataset_parts(run.stage("dataset"))]
    except UserError:  # removed to save space: nothing to contradict the model
        datasets = None
    inputs = model.get("inputs", {})
    changed = [name for name, now, then in (("tokenizer", tokenizer, inputs.get("tokenizer")),
                                            ("dataset", datasets, inputs.get("dataset"))) if now is not None
               and now != then]
    if changed:
        raise UserError(f"{run.stage('model')} was trained on another {' and '.join(changed)} than the one now in "
                        f"{run.root} (rebuilt since), so its model card would describe other data",
                        "retrain with `gpt2zh pretrain` (or `gpt2zh run`) before pushing")


def _listing(files: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({human_bytes(size)})" for name, size in files)


def _dry_run(run, hub, sources: dict[str, Path], card: str, report: StageReport) -> dict:
    """List, print and save what would be sent; send nothing, lock nothing, need no token.

    The preview goes beside a real push's record (push/manifest.json lists only upload/, so the record stays
    valid) and is written aside then renamed, so a reader never sees half of it."""
    from huggingface_hub import get_token

    from pipeline.hub.access import TOKEN_FIX

    files = sorted([(name, path.stat().st_size) for name, path in sources.items()]
                   + [("README.md", len(card.encode("utf-8")))])
    preview = run.stage("push") / PREVIEW
    temporary = preview.with_name(f".{PREVIEW}.{os.getpid()}.tmp")
    try:
        preview.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(card, encoding="utf-8")
        os.replace(temporary, preview)
        saved = f"{preview} (printed below)"
    except OSError as err:  # a run directory we may only read: the card is still printed
        temporary.unlink(missing_ok=True)
        saved = f"printed below; not saved to {preview} ({err.strerror or type(err).__name__})"
    report.row("dry run", f"would push {len(files)} files, {human_bytes(sum(s for _, s in files))}, to "
                          f"{hub.repo_id} ({'private' if hub.private else 'public'}); nothing was sent")
    report.row("files", _listing(files))
    report.row("card", saved)
    report.print("dry run")
    print(card, flush=True)
    if not get_token():
        log.warning("%s: no Hugging Face token found; the dry run needs none, the push does: %s", STAGE, TOKEN_FIX)
    return {}


def push_to_hub(request: StageRequest) -> dict:
    hub, run = request.config.hub, request.run_dir
    report = StageReport(STAGE)
    if not hub.repo_id:
        raise UserError("no repository to push to", "pass --hub-repo-id user/name (or set hub.repo_id in the config)")
    model = read_manifest(run.stage("model"))
    if model is None:
        raise UserError(f"no complete model in {run.stage('model')}", "run `gpt2zh pretrain` (or `gpt2zh run`) first")

    _check_model_matches_its_inputs(run, model)

    from pipeline.hub.card import render_model_card

    summary = json.loads((run.stage("model") / "training_summary.json").read_text(encoding="utf-8"))
    sources = upload_sources(run.root)
    card = render_model_card(run.root, summary, hub.repo_id, hub.license, hub.dataset_description)
    if request.dry_run:
        return _dry_run(run, hub, sources, card, report)

    from pipeline.hub.access import check_push_access, hub_api
    from pipeline.hub.upload import upload_with_retries

    access = check_push_access(hub.repo_id, hub.private)  # before any upload work
    # The card's digest: a new description (or card layout) is pushed, an identical card is skipped.
    inputs = {"model": model["fingerprint"], "repo_id": hub.repo_id, "private": hub.private, "license": hub.license,
              "endpoint": access.endpoint, "card": hashlib.sha256(card.encode("utf-8")).hexdigest()}
    output = StageOutput(run.stage("push"), STAGE, fingerprint(inputs), inputs)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s already has this model (commit %s); skipped (--force pushes again)", STAGE, hub.repo_id,
                 manifest.get("commit", "?")[:12])
        return manifest
    loss = summary.get("final_eval_loss")
    message = (f"gpt2zh {run.root.name}: {summary['steps']:,} steps"
               + (f", validation loss {loss:.3f}" if loss is not None else ""))
    with output.build() as staging:
        files = stage_upload(sources, card, staging / "upload")
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
