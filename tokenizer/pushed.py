"""Stage 1 on a new machine (PITFALLS.md RA5): the tokenizer pushed beside this run's last checkpoint becomes
stage 1's output when it was made from the same corpus and settings; a retrained SentencePiece model need not
be identical, and the checkpoint's token ids are this tokenizer's."""

import logging
import os
import shutil

from gpt2zh.config.schema import Config
from gpt2zh.input_changes import setting_changes
from gpt2zh.manifests import TokenizerManifest
from gpt2zh.remote import open_hub
from gpt2zh.remote.checkpoints import TOKENIZER_FOLDER, fetch_pushed, other_run, pushed_checkpoint

log = logging.getLogger("gpt2zh")


def adopt_pushed_tokenizer(config: Config, output) -> TokenizerManifest | None:
    """Stage 1 on a new machine (RA5): the tokenizer pushed beside this run's last checkpoint, when it was
    made from the same corpus and settings (a retrained SentencePiece model need not be identical), else None."""
    repo_id, insist, hub = config.hub.repo_id, config.checkpoint.resume == "hub", open_hub(config.hub.provider)
    download = output.final.parent / f".hub-tokenizer-{os.getpid()}"
    shutil.rmtree(download, ignore_errors=True)
    try:
        checkpoint = pushed_checkpoint(hub, repo_id, insist, download)
        if checkpoint is None:
            return None
        marker, commit = checkpoint.marker, checkpoint.commit
        fetch_pushed(hub, repo_id, commit, f"{checkpoint.folder}/{TOKENIZER_FOLDER}/*", download)
        pushed = download / checkpoint.folder / TOKENIZER_FOLDER
        manifest = TokenizerManifest.read(pushed)
        if manifest is None and not insist:  # torn by hand, or an earlier format: stage 3 decides on the checkpoint
            log.info("train-tokenizer: the tokenizer pushed with %s's checkpoint is incomplete; training one", repo_id)
            return None
        if manifest is None or manifest.fingerprint != output.fingerprint:
            # that checkpoint cannot be this run's: refused now, not after stage 2 (as stage 3 would)
            changes = setting_changes(manifest.inputs if manifest else {}, output.fingerprint_parts)
            raise other_run(repo_id, checkpoint.folder, changes or ["the tokenizer pushed with it is incomplete"])
        with output.build() as staging:  # its manifest copied too, then written anew for this folder
            shutil.copytree(pushed, staging, copy_function=shutil.copyfile, dirs_exist_ok=True)
            output.manifest_extra.update(manifest.facts())
            output.manifest_extra["pushed_with_checkpoint"] = {"repo_id": repo_id, "commit": commit,
                                                               "step": marker.get("step")}
        return output.published
    finally:
        shutil.rmtree(download, ignore_errors=True)
