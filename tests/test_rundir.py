"""How a stage publishes its output (pipeline/rundir.py): the folder appears whole or not at all, a rebuild
replaces a complete output and keeps aside what a user put there, leftovers of dead builds are removed
and a live build's are not, and every file is readable by the other users of a shared machine."""

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import stat
from pathlib import Path

import pytest

from gpt2zh.errors import UserError
from gpt2zh.manifests import MANIFEST, ModelManifest
from gpt2zh.rundir import REPLACE_FIX, StageOutput, fingerprint, give_plain_modes, pid_alive, plain_file_mode
from tests.conftest import GONE_PID


def test_a_fingerprint_digests_the_canonical_json_of_its_inputs_with_chinese_kept_and_paths_as_text():
    """Run directories of earlier releases stay up to date only while the same inputs give the same digest."""
    canonical = '{"corpus": "/语料/新闻.txt", "vocab_size": 8000}'
    assert fingerprint({"vocab_size": 8000, "corpus": Path("/语料/新闻.txt")}) == \
        hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_plain_file_mode_is_the_one_open_gives_a_new_file_in_the_folder(tmp_path, umask_022):
    with open(tmp_path / "written.txt", "w", encoding="utf-8"):
        pass
    assert plain_file_mode(tmp_path) == stat.S_IMODE((tmp_path / "written.txt").stat().st_mode) == 0o644
    assert sorted(path.name for path in tmp_path.iterdir()) == ["written.txt"]  # the probe is gone


def test_every_file_of_an_output_gets_the_plain_mode_and_a_symlinks_target_is_left_alone(tmp_path, umask_022):
    """safetensors writes model.safetensors 0600 (a temporary file renamed): other users could not read it."""
    output, outside = tmp_path / "model", tmp_path / "elsewhere.txt"
    (output / "nested").mkdir(parents=True)
    for path in (output / "model.safetensors", output / "nested" / "state.pt", outside):
        path.write_bytes(b"x")
        path.chmod(0o600)
    (output / "config.json").write_bytes(b"{}")
    (output / "link.txt").symlink_to(outside)
    give_plain_modes(output)
    modes = {str(path.relative_to(tmp_path)): stat.S_IMODE(path.lstat().st_mode)
             for path in (*output.rglob("*"), outside) if not path.is_symlink()}
    assert modes == {"model/model.safetensors": 0o644, "model/nested/state.pt": 0o644, "model/config.json": 0o644,
                     "model/nested": 0o755, "elsewhere.txt": 0o600}


def test_a_pid_is_alive_while_its_process_runs_and_one_we_may_not_signal_counts_as_alive(monkeypatch, live_pid):
    assert pid_alive(os.getpid()) is True
    assert pid_alive(live_pid) is True
    assert pid_alive(GONE_PID) is False

    def refused(pid, signal):  # another user's process: as root (this suite's machine) no process refuses
        raise PermissionError(errno.EPERM, "Operation not permitted")

    with monkeypatch.context() as patched:
        patched.setattr(os, "kill", refused)
        assert pid_alive(live_pid) is True


def test_opening_an_output_removes_the_leftovers_of_dead_builds_and_keeps_those_of_a_live_one(tmp_path, live_pid):
    """A shard's name has dashes of its own (the pid is after the last one); several live leftovers, so that one
    met first in the folder's order does not end the clean-up."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    name = "shard-00000-of-00002"
    dead = [f".{name}.partial-{GONE_PID}", f".{name}.old-{GONE_PID}", f".{name}.partial-{os.getpid()}",
            f".{name}.partial-x1", f".{name}.old-{GONE_PID + 1}", f".{name}.partial-{GONE_PID + 2}"]
    kept = [f".{name}.partial-{live_pid}", f".{name}.old-{live_pid}", f".{name}.replaced-{live_pid}",
            f".shard-00001-of-00002.partial-{GONE_PID}"]  # the last: another shard's
    for leftover in dead + kept:
        (dataset / leftover / "data").mkdir(parents=True)
    (dataset / f".{name}.partial-{GONE_PID + 3}").write_bytes(b"")  # a file: cannot be removed as a folder
    StageOutput(dataset / name, ModelManifest, "f" * 20, {})
    assert sorted(path.name for path in dataset.iterdir()) == sorted([*kept, f".{name}.partial-{GONE_PID + 3}"])


def _build(final: Path, fingerprint_value: str, parts: dict, content: bytes) -> StageOutput:
    output = StageOutput(final, ModelManifest, fingerprint_value, parts)
    with output.build() as staging:
        (staging / "weights.bin").write_bytes(content)
    return output


def test_a_build_publishes_the_folder_whole_and_a_rebuild_replaces_a_complete_output_without_a_trace(
        tmp_path, caplog):
    final = tmp_path / "model"
    parts = {"format": 1, "config": {"training": {"max_steps": 5}}}
    output = StageOutput(final, ModelManifest, "a" * 20, parts)
    assert output.published is None and output.current_manifest() is None
    with output.build() as staging:
        (staging / "weights.bin").write_bytes(b"first")
    written = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
    assert (written["stage"], written["fingerprint"], written["inputs"], written["files"]) == \
        ("model", "a" * 20, parts, {"weights.bin": 5})
    assert output.published == ModelManifest.read(final) == output.current_manifest()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]

    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        again = _build(final, "b" * 20, {**parts, "config": {"training": {"max_steps": 9}}}, b"second!")
    assert (final / "weights.bin").read_bytes() == b"second!" and again.current_manifest().files == {"weights.bin": 7}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # the old output is gone, not kept aside
    assert caplog.messages == []


def test_files_a_user_put_in_an_output_folder_are_moved_aside_with_a_utc_stamp_and_a_warning(
        tmp_path, caplog, clock_at_utc_plus_8):
    final = tmp_path / "model"
    final.mkdir()
    (final / "NOTES.txt").write_text("my notes", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="gpt2zh"):
        _build(final, "a" * 20, {}, b"weights")
    aside = [path for path in tmp_path.iterdir() if path.name != "model"]
    assert len(aside) == 1 and (aside[0] / "NOTES.txt").read_text(encoding="utf-8") == "my notes"
    stamp = re.fullmatch(r"model\.replaced-(\d{8}T\d{6}Z)", aside[0].name)
    assert stamp, aside[0].name
    moved = dt.datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - moved) < dt.timedelta(minutes=2)
    assert caplog.messages == [f"{final} held files that are not a complete model output (written by hand, or "
                               f"damaged); moved to {aside[0]}"]
    assert ModelManifest.read(final).files == {"weights.bin": 7}


def test_a_complete_output_from_other_settings_is_replaced_only_when_forced_and_the_refusal_names_six_changes(
        tmp_path):
    final = tmp_path / "model"
    built = {"format": 1, "config": {"training": {f"k{i}": i for i in range(7)}}}
    _build(final, "a" * 20, built, b"weights")
    changed = {"format": 1, "config": {"training": {f"k{i}": i + 1 for i in range(7)}}}
    other = StageOutput(final, ModelManifest, "b" * 20, changed)
    with pytest.raises(UserError) as refused:
        other.refuse_replacing(force=False)
    assert refused.value.message == (f"{final} was built from other inputs than this command's: training.k0 (0 -> 1); "
                                     "training.k1 (1 -> 2); training.k2 (2 -> 3); training.k3 (3 -> 4); "
                                     "training.k4 (4 -> 5); training.k5 (5 -> 6)")
    assert refused.value.fix == REPLACE_FIX
    other.refuse_replacing(force=True)
    StageOutput(final, ModelManifest, "a" * 20, built).refuse_replacing(force=False)  # its own output: reused
    # only our format differs: rebuilt without asking
    StageOutput(final, ModelManifest, "c" * 20, {**built, "format": 2}).refuse_replacing(force=False)
