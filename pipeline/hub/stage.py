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

from gpt2zh.errors import UserError
from gpt2zh.manifests import ModelManifest, PushManifest, TokenizerManifest
from gpt2zh.report import StageReport, human_bytes
from gpt2zh.rundir import RunDir, StageOutput, file_sha256, fingerprint
from gpt2zh.stages import StageRequest

log = logging.getLogger("gpt2zh")
STAGE = "push"
MODEL_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
               "tokenizer_config.json", "training_summary.json")
LOG_FILES = ("training_history.csv", "loss.png")  # the copies stage 3 froze into model/, not logs/
PREVIEW = "README.preview.md"  # the card a dry run would push, in <run-dir>/push/


def upload_sources(run_dir: Path) -> dict[str, Path]:
    """Name in the repository -> file in the run directory, for everything pushed but the card."""
    model = RunDir(run_dir).model
    sources = {name: model / name for name in MODEL_FILES}
    sources["gpt2zh_config.yaml"] = model / "run_config.yaml"
    sources.update({name: model / name for name in LOG_FILES})
    return {name: path for name, path in sources.items() if path.is_file()}


def stage_upload(sources: dict[str, Path], written: dict[str, str], target: Path) -> list[tuple[str, int]]:
    """The upload folder: hard links to the run's files (no second copy of the weights), plus the files written
    for the push (the card, and what the hub needs beside it).

    Stages replace files (write aside, then rename) and never rewrite them in place, so the links keep
    exactly what was pushed."""
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        try:
            os.link(source, target / name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, target / name)
    for name, text in written.items():
        (target / name).write_text(text, encoding="utf-8")
    return [(str(p.relative_to(target)), p.stat().st_size) for p in sorted(target.rglob("*")) if p.is_file()]


def _check_model_matches_its_inputs(run: RunDir, model: ModelManifest) -> None:
    """The card describes the tokenizer and dataset from the run directory: they must be the ones the
    weights were trained on, not a rebuild made since."""
    from gpt2zh.dataset.loading import dataset_parts

    tokenizer = TokenizerManifest.read(run.tokenizer)
    try:
        datasets = [manifest.fingerprint for _, manifest in dataset_parts(run.dataset)]
    except UserError:  # removed to save space: nothing to contradict the model
        datasets = None
    changed = [name for name, now, then in (("tokenizer", tokenizer and tokenizer.fingerprint,
                                             model.tokenizer_fingerprint),
                                            ("dataset", datasets, model.dataset_fingerprints)) if now is not None
               and now != then]
    if changed:
        raise UserError(f"{run.model} was trained on another {' and '.join(changed)} than the one now in "
                        f"{run.root} (rebuilt since), so its model card would describe other data",
                        "retrain with `gpt2zh pretrain` (or `gpt2zh run`) before pushing")


def _listing(files: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({human_bytes(size)})" for name, size in files)


def _dry_run(run, hub, sources: dict[str, Path], written: dict[str, str], report: StageReport) -> None:
    """List, print and save what would be sent; send nothing, lock nothing, need no token.

    The preview goes beside a real push's record (push/manifest.json lists only upload/, so the record stays
    valid) and is written aside then renamed, so a reader never sees half of it."""
    from gpt2zh.remote import open_hub

    remote = open_hub(hub.provider)
    files = sorted([(name, path.stat().st_size) for name, path in sources.items()]
                   + [(name, len(text.encode("utf-8"))) for name, text in written.items()])
    card = written["README.md"]
    preview = run.push / PREVIEW
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
                          f"{hub.repo_id} on {remote.label} ({'private' if hub.private else 'public'}); nothing "
                          "was sent")
    report.row("files", _listing(files))
    report.row("card", saved)
    report.print("dry run")
    print(card, flush=True)
    if not remote.has_token():
        log.warning("%s: no %s token found; the dry run needs none, the push does: %s", STAGE, remote.brand,
                    remote.token_fix)


def push_to_hub(request: StageRequest) -> PushManifest | None:
    hub, run = request.config.hub, request.run_dir
    report = StageReport(STAGE)
    if not hub.repo_id:
        raise UserError("no repository to push to", "pass --hub-repo-id user/name (or set hub.repo_id in the config)")
    model = ModelManifest.read(run.model)
    if model is None:
        raise UserError(f"no complete model in {run.model}", "run `gpt2zh pretrain` (or `gpt2zh run`) first")

    _check_model_matches_its_inputs(run, model)

    from gpt2zh.hub.card import hub_files, load_snippet, render_model_card

    summary = json.loads((run.model / "training_summary.json").read_text(encoding="utf-8"))
    sources = upload_sources(run.root)
    card = render_model_card(run.root, summary, hub.repo_id, hub.license, hub.dataset_description, hub.provider)
    written = {"README.md": card, **hub_files(hub.provider)}
    if request.dry_run:
        return _dry_run(run, hub, sources, written, report)

    from gpt2zh.remote import open_hub
    from gpt2zh.remote.access import check_push_access
    from gpt2zh.remote.upload import upload_with_retries

    access = check_push_access(hub.repo_id, hub.private, hub.provider)  # before any upload work
    # The card's digest: a new description (or card layout) is pushed, an identical card is skipped.
    inputs = {"model": model.fingerprint, "repo_id": hub.repo_id, "private": hub.private, "license": hub.license,
              "endpoint": access.endpoint, "card": hashlib.sha256(card.encode("utf-8")).hexdigest()}
    output = StageOutput(run.push, PushManifest, fingerprint(inputs), inputs)
    if not request.force and (manifest := output.current_manifest()) is not None:
        log.info("%s: %s already has this model (commit %s); skipped (--force pushes again)", STAGE, hub.repo_id,
                 manifest.commit[:12])
        return manifest
    loss = summary.get("final_eval_loss")
    message = (f"gpt2zh {run.root.name}: {summary['steps']:,} steps"
               + (f", validation loss {loss:.3f}" if loss is not None else ""))
    with output.build() as staging:
        files = stage_upload(sources, written, staging / "upload")
        remote = open_hub(hub.provider)
        commit = upload_with_retries(remote, hub.repo_id, staging / "upload", message, hub.max_retries,
                                     hub.retry_wait_seconds)
        output.manifest_extra.update(repo_id=hub.repo_id, commit=commit.oid, commit_url=commit.url,
                                     card_sha256=file_sha256(staging / "upload" / "README.md"))
    report.row("pushed", f"{len(files)} files, {human_bytes(sum(s for _, s in files))}, as {access.user}")
    report.row("commit", f"{commit.oid} \"{message}\"")
    report.row("repository", remote.page(hub.repo_id))
    report.row("load it", load_snippet(hub.provider, hub.repo_id))
    report.print()
    return output.published
