"""pipeline/remote/checkpoints.py in process: where a hub keeps the pushed checkpoint, how a reader finds a whole
one at one commit (last-checkpoint/ on the Hub, the pointer on ModelScope), and the one-line refusals, against
tests/hub_server.py and tests/modelscope_server.py (PITFALLS.md RA4, RA5, CN7)."""

import json

import pytest

from gpt2zh.config.schema import Config
from gpt2zh.errors import UserError
from gpt2zh.remote.checkpoints import (
    MARKER,
    POINTER,
    Pushed,
    fetch_pushed,
    folder_words,
    other_run,
    pushed_checkpoint,
    read_marker,
    refuse_other_settings,
    wants_hub_checkpoint,
)
from tests.hub_server import LocalHub, point_huggingface_hub_at
from tests.modelscope_server import sdk_pointed_at_a_local_modelscope
from tests.test_hub import TOKEN, USER

MS_TOKEN, MS_USER = "ms-hub-token", "alice"
NO_CHECKPOINT_FIX = ("check --hub-repo-id (the repository a run pushed its checkpoints to), or pass --resume auto to "
                     "start fresh when it has none")
MARKER_8 = {"step": 8, "fingerprint": "8" * 64, "inputs": {"config": {"optimization": {"learning_rate": 0.001}}}}


def marker_bytes(marker: dict) -> bytes:
    return json.dumps(marker, ensure_ascii=False).encode("utf-8")  # as training/checkpoints.py writes it


@pytest.fixture
def hub():
    with LocalHub(tokens={TOKEN: USER}) as server:
        yield server


@pytest.fixture
def hf(hub, tmp_path, monkeypatch):
    """The real HuggingFaceHub in this process, reading from the local server (what HF_ENDPOINT and
    HF_HUB_DISABLE_XET set when huggingface_hub is imported), with an HF cache of the test's own."""
    from gpt2zh.remote import open_hub

    point_huggingface_hub_at(hub, monkeypatch, TOKEN, tmp_path / "hf-cache")
    return open_hub("huggingface")


@pytest.fixture
def ms(tmp_path, monkeypatch):
    with sdk_pointed_at_a_local_modelscope({MS_TOKEN: MS_USER}, tmp_path, monkeypatch, MS_TOKEN) as server:
        yield server


@pytest.fixture
def msh(ms):
    from gpt2zh.remote import open_hub

    return open_hub("modelscope")


def hub_config(repo_id: str, resume: str = "hub", push_checkpoints: bool = False) -> Config:
    config = Config()
    config.hub.repo_id, config.checkpoint.resume, config.hub.push_checkpoints = repo_id, resume, push_checkpoints
    return config


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}


def test_a_hub_checkpoint_is_wanted_with_a_repository_and_resume_hub_or_auto_with_pushed_checkpoints():
    assert wants_hub_checkpoint(hub_config("r", "hub")) is True
    assert wants_hub_checkpoint(hub_config("r", "auto", push_checkpoints=True)) is True
    assert wants_hub_checkpoint(hub_config("r", "auto")) is False  # nothing was pushed there
    assert wants_hub_checkpoint(hub_config("r", "never", push_checkpoints=True)) is False
    assert wants_hub_checkpoint(hub_config("", "hub", push_checkpoints=True)) is False  # no repository to read


def test_messages_name_last_checkpoint_on_the_hub_and_the_step_folders_and_pointer_on_modelscope():
    from gpt2zh.remote import open_hub

    assert folder_words(open_hub("huggingface")) == "last-checkpoint/"
    assert folder_words(open_hub("modelscope")) == "checkpoints/ (last-checkpoint.json)"


def test_another_runs_checkpoint_is_refused_naming_at_most_six_changes():
    changes = [f"setting_{i} (1 -> 2)" for i in range(8)]
    error = other_run(f"{USER}/m", "last-checkpoint", changes)
    assert error.message == (f"{USER}/m/last-checkpoint was made by a different run; changed: "
                             + ", ".join(changes[:6]))
    assert error.fix == ("restore those settings to resume, or pass --resume never to start over (its next "
                         "checkpoint then replaces it on the hub)")


def test_the_hubs_checkpoint_is_last_checkpoint_read_at_the_branchs_commit_into_the_given_folder(hub, hf, tmp_path):
    """Into the folder given (a scratch or staging folder), never the HF cache: nothing of it stays behind."""
    commit = hub.add_model(f"{USER}/m", {f"last-checkpoint/{MARKER}": marker_bytes(MARKER_8),
                                         "last-checkpoint/model.safetensors": b"w" * 64})
    into = tmp_path / "scratch"
    assert pushed_checkpoint(hf, f"{USER}/m", True, into) == Pushed(MARKER_8, commit, "last-checkpoint")
    assert files_under(into) == {f"last-checkpoint/{MARKER}"}  # the marker only
    assert not (tmp_path / "hf-cache").exists()


def test_a_repository_without_a_whole_checkpoint_is_none_and_refused_in_one_line_with_resume_hub(hub, hf, tmp_path):
    hub.add_model(f"{USER}/no-marker", {"last-checkpoint/model.safetensors": b"w" * 64})  # torn: no marker
    hub.add_model(f"{USER}/unreadable", {f"last-checkpoint/{MARKER}": b"{not json"})
    for repo_id in (f"{USER}/missing", f"{USER}/no-marker", f"{USER}/unreadable"):
        assert pushed_checkpoint(hf, repo_id, False, tmp_path / repo_id) is None
        with pytest.raises(UserError) as refused:
            pushed_checkpoint(hf, repo_id, True, tmp_path / repo_id)
        assert refused.value.message == f"--resume hub: {repo_id} has no complete last-checkpoint/ (no {MARKER} in it)"
        assert refused.value.fix == NO_CHECKPOINT_FIX


def test_a_hub_that_fails_while_the_checkpoint_is_read_is_one_line_never_a_fresh_start(hub, hf, tmp_path):
    hub.add_model(f"{USER}/m", {f"last-checkpoint/{MARKER}": marker_bytes(MARKER_8)})
    hub.state.fail("GET", rf"/api/models/{USER}/m", 503, times=100)
    for insist in (False, True):
        with pytest.raises(UserError) as failed:
            pushed_checkpoint(hf, f"{USER}/m", insist, tmp_path / "scratch")
        assert failed.value.message == (f"--resume (the checkpoint pushed to --hub-repo-id {USER}/m): the Hub at "
                                        f"{hub.url} answered HTTP 503 for model {USER}/m")
        assert failed.value.fix == ("retry later; files already downloaded are not downloaded again; or pass --resume "
                                    "never to start over without it")


def test_a_repository_without_the_default_branch_is_named_with_the_branch_it_lacks(hub, hf, tmp_path):
    hub.add_model(f"{USER}/m", {f"last-checkpoint/{MARKER}": marker_bytes(MARKER_8)}, revision="dev")
    with pytest.raises(UserError) as failed:
        pushed_checkpoint(hf, f"{USER}/m", False, tmp_path / "scratch")
    assert failed.value.message == (f"--resume (the checkpoint pushed to --hub-repo-id {USER}/m): model {USER}/m has "
                                    "no branch, tag or commit 'main'")


def test_the_pushed_files_come_from_the_markers_commit_and_match_only_the_pattern(hub, hf, tmp_path):
    files = {f"last-checkpoint/{MARKER}": marker_bytes(MARKER_8), "last-checkpoint/gpt2zh-tokenizer/tokenizer.json":
             b"{}", "last-checkpoint/model.safetensors": b"w" * 64, "config.json": b"{}"}
    commit = hub.add_model(f"{USER}/m", files)
    hub.add_model(f"{USER}/m", {**files, "last-checkpoint/gpt2zh-tokenizer/tokenizer.json": b'{"newer": 1}'})
    into = tmp_path / "download"
    fetch_pushed(hf, f"{USER}/m", commit, "last-checkpoint/gpt2zh-tokenizer/*", into)
    assert files_under(into) == {"last-checkpoint/gpt2zh-tokenizer/tokenizer.json"}
    assert (into / "last-checkpoint" / "gpt2zh-tokenizer" / "tokenizer.json").read_bytes() == b"{}"


def test_a_hub_that_fails_while_the_checkpoint_is_fetched_is_one_line(hub, hf, tmp_path):
    commit = hub.add_model(f"{USER}/m", {f"last-checkpoint/{MARKER}": marker_bytes(MARKER_8)})
    hub.state.fail("GET", rf"/api/models/{USER}/m", 403, times=100)  # a 503 the client retries for seconds
    with pytest.raises(UserError) as failed:
        fetch_pushed(hf, f"{USER}/m", commit, "last-checkpoint/*", tmp_path / "download")
    assert failed.value.message == (f"--resume (the checkpoint pushed to --hub-repo-id {USER}/m): your token may not "
                                    f"read model {USER}/m (HTTP 403)")
    assert failed.value.fix == ("use a token with read access to it (a fine-grained token must list the repository); "
                                "or pass --resume never to start over without it")


def modelscope_checkpoint(step: int, marker: dict) -> dict[str, bytes]:
    """A checkpoint as hub_push.py lays it out on ModelScope: its own folder, and the pointer naming it."""
    folder = f"checkpoints/checkpoint-{step}"
    return {f"{folder}/{MARKER}": marker_bytes(marker), f"{folder}/model.safetensors": b"w" * 64,
            POINTER: json.dumps({"folder": folder, "step": step}).encode()}


def test_modelscopes_checkpoint_is_the_folder_its_pointer_names_at_the_commit_the_pointer_was_read_at(ms, msh,
                                                                                                      tmp_path):
    """checkpoint-12 lands on the branch right after the reader pinned it: the pointer and the marker both come
    from the commit read first."""
    repo_id = f"{MS_USER}/m"
    commit = ms.add_model(repo_id, modelscope_checkpoint(8, MARKER_8))
    ms.push_after_pinning(repo_id, modelscope_checkpoint(12, {**MARKER_8, "step": 12}))
    into = tmp_path / "scratch"
    assert pushed_checkpoint(msh, repo_id, True, into) == Pushed(MARKER_8, commit, "checkpoints/checkpoint-8")
    assert ms.head(repo_id) != commit  # the push landed between reading the branch and reading its files
    assert files_under(into) == {POINTER, f"checkpoints/checkpoint-8/{MARKER}"}

    fetch_pushed(msh, repo_id, commit, "checkpoints/checkpoint-8/*", tmp_path / "download")
    assert files_under(tmp_path / "download") == {f"checkpoints/checkpoint-8/{MARKER}",
                                                  "checkpoints/checkpoint-8/model.safetensors"}


def test_modelscope_without_a_readable_pointer_or_marker_is_none_and_refused_with_resume_hub(ms, msh, tmp_path):
    """A pointer that names no folder (hand-edited, another program's) names no checkpoint: never a marker that
    happens to be at the repository's root."""
    whole = modelscope_checkpoint(8, MARKER_8)
    ms.add_model(f"{MS_USER}/no-pointer", {k: v for k, v in whole.items() if k != POINTER})
    ms.add_model(f"{MS_USER}/bad-pointer", {**whole, POINTER: b"{not json"})
    ms.add_model(f"{MS_USER}/bad-marker", {**whole, f"checkpoints/checkpoint-8/{MARKER}": b"{not json"})
    at_root = {**whole, MARKER: marker_bytes(MARKER_8)}
    ms.add_model(f"{MS_USER}/no-folder", {**at_root, POINTER: b'{"step": 8}'})
    ms.add_model(f"{MS_USER}/empty-folder", {**at_root, POINTER: b'{"folder": "", "step": 8}'})
    ms.add_model(f"{MS_USER}/list-pointer", {**at_root, POINTER: b'["checkpoints/checkpoint-8"]'})
    for name in ("missing", "no-pointer", "bad-pointer", "bad-marker", "no-folder", "empty-folder", "list-pointer"):
        repo_id = f"{MS_USER}/{name}"
        assert pushed_checkpoint(msh, repo_id, False, tmp_path / name) is None
        with pytest.raises(UserError) as refused:
            pushed_checkpoint(msh, repo_id, True, tmp_path / name)
        assert refused.value.message == (f"--resume hub: {repo_id} has no complete checkpoints/ (last-checkpoint.json) "
                                         f"(no {MARKER} in it)"), name




def test_a_marker_is_read_as_utf_8_whatever_the_machines_locale(tmp_path, ascii_locale):
    marker = {"step": 8, "inputs": {"data_files": ["语料/新闻.txt"]}}
    (tmp_path / MARKER).write_bytes(marker_bytes(marker))
    assert read_marker(tmp_path) == marker


def test_a_pushed_checkpoint_of_other_settings_is_refused_before_stage_1_and_the_same_settings_pass(hub, hf,
                                                                                                     tmp_path):
    """`view` narrows both sides: the dataset differs too, but only the settings it keeps are compared."""
    lr_05 = {**MARKER_8, "inputs": {"config": {"optimization": {"learning_rate": 0.5}}, "dataset": ["f" * 64]}}
    hub.add_model(f"{USER}/other", {f"last-checkpoint/{MARKER}": marker_bytes(lr_05)})
    current = {"config": {"optimization": {"learning_rate": 0.001}}, "dataset": ["0" * 64]}

    def view(inputs: dict) -> dict:
        return {"config": inputs["config"]}

    with pytest.raises(UserError) as refused:
        refuse_other_settings(hub_config(f"{USER}/other", "auto", push_checkpoints=True), current, view)
    assert refused.value.message == (f"{USER}/other/last-checkpoint was made by a different run; changed: "
                                     "optimization.learning_rate (0.5 -> 0.001)")
    same = {"config": {"optimization": {"learning_rate": 0.5}}, "dataset": ["0" * 64]}
    assert refuse_other_settings(hub_config(f"{USER}/other"), same, view) is None
    assert not (tmp_path / "hf-cache").exists()  # the marker was read in a scratch folder, gone since


def test_a_missing_pushed_checkpoint_is_refused_before_stage_1_only_with_resume_hub(hub, hf):
    current = {"config": {}}
    assert refuse_other_settings(hub_config(f"{USER}/missing", "auto", push_checkpoints=True), current, dict) is None
    with pytest.raises(UserError) as refused:
        refuse_other_settings(hub_config(f"{USER}/missing", "hub"), current, dict)
    assert refused.value.message == f"--resume hub: {USER}/missing has no complete last-checkpoint/ (no {MARKER} in it)"


def test_a_pushed_marker_without_inputs_is_another_runs(hub, hf):
    hub.add_model(f"{USER}/bare", {f"last-checkpoint/{MARKER}": marker_bytes({"step": 8})})
    with pytest.raises(UserError) as refused:
        refuse_other_settings(hub_config(f"{USER}/bare"), {"config": {"seed": 1}}, dict)
    assert refused.value.message == (f"{USER}/bare/last-checkpoint was made by a different run; changed: config "
                                     "(None -> {'seed': 1})")
