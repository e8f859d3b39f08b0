"""The stage contracts (pipeline/manifests.py): manifests of the previous release read and write back the same keys,
one from a newer gpt2zh is refused in one line, and no other module reads a manifest file or names a stage folder
by its string.

The two checks on the code read it with `ast`, so comments and docstrings may name files and folders freely:
- a manifest is read by name when a string constant holding "manifest.json" appears in code, or the name
  MANIFEST is taken from pipeline/manifests.py (the only ways to build the file's path); every module of the
  package and every script is checked, pipeline/manifests.py excepted;
- a stage folder is named by string when a path is joined with one of the run directory's folder names
  (`run_dir / "tokenizer"`) or `RunDir.stage` is called with one (`run.stage("model")`); RunDir's properties
  and each contract's FOLDER are the one place (pipeline/rundir.py and pipeline/manifests.py are not checked).
"""

import ast
import json
import shutil
from pathlib import Path

import pytest

from gpt2zh.dataset.loading import dataset_parts
from gpt2zh.errors import UserError
from gpt2zh.manifests import FORMAT_KEY, MANIFEST, DatasetManifest, ModelManifest, PushManifest, TokenizerManifest
from gpt2zh.rundir import CHECKPOINTS, LOGS, RunDir, StageOutput
from tests.conftest import one_error_line, run_cli
from tests.test_layers import modules
from tests.test_previous_release import FIXTURE, SETTINGS

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = (TokenizerManifest, DatasetManifest, ModelManifest)  # the stages the previous release's fixture ran
FOLDERS = {contract.FOLDER for contract in (*CONTRACTS, PushManifest)} | {CHECKPOINTS, LOGS}
OWN_MODULES = {"gpt2zh.manifests", "gpt2zh.rundir"}


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda contract: contract.FOLDER)
def test_a_manifest_of_the_previous_release_reads_as_format_1_and_writes_back_the_same_keys(contract, tmp_path):
    folder = FIXTURE / "run" / contract.FOLDER
    on_disk = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert FORMAT_KEY not in on_disk  # written before the format existed
    manifest = contract.read(folder)
    assert manifest is not None and manifest.fingerprint == on_disk["fingerprint"]
    written = manifest.as_dict()
    assert written.pop(FORMAT_KEY) == contract.FORMAT == 1
    assert written == on_disk and list(written) == list(on_disk), "a key was lost, added, changed or moved"


# push/manifest.json as the previous release wrote it (f98a127 pipeline/hub/stage.py: the common keys, then
# repo_id, commit, commit_url, card_sha256); the fixture has no push, which needs a hub
PREVIOUS_PUSH = {"stage": "push", "fingerprint": "0123456789abcdef0123", "created_utc": "2026-12-06T10:00:00+00:00",
                 "gpt2zh_version": "0.1.0", "inputs": {"model": "fedcba9876543210fedc"},
                 "files": {"upload/README.md": 5}, "repo_id": "user/model", "commit": "a" * 40,
                 "commit_url": "https://huggingface.co/user/model/commit/" + "a" * 40, "card_sha256": "b" * 64}


def test_a_push_record_of_the_previous_release_reads_as_format_1_and_writes_back_the_same_keys(tmp_path):
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / "README.md").write_text("card\n", encoding="utf-8")
    (tmp_path / MANIFEST).write_text(json.dumps(PREVIOUS_PUSH), encoding="utf-8")
    manifest = PushManifest.read(tmp_path)
    assert manifest is not None and manifest.commit == "a" * 40
    written = manifest.as_dict()
    assert written.pop(FORMAT_KEY) == 1
    assert written == PREVIOUS_PUSH and list(written) == list(PREVIOUS_PUSH)


@pytest.mark.parametrize("contract", (*CONTRACTS, PushManifest), ids=lambda contract: contract.FOLDER)
def test_every_contract_refuses_a_manifest_of_a_newer_format(contract, tmp_path):
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / "README.md").write_text("card\n", encoding="utf-8")
    source = PREVIOUS_PUSH if contract is PushManifest else \
        json.loads((FIXTURE / "run" / contract.FOLDER / MANIFEST).read_text(encoding="utf-8"))
    (tmp_path / MANIFEST).write_text(json.dumps({**source, "files": {}, FORMAT_KEY: contract.FORMAT + 1}),
                                     encoding="utf-8")
    with pytest.raises(UserError, match="manifest format 2"):
        contract.read(tmp_path)


def test_an_output_with_a_file_cut_short_after_its_manifest_is_neither_complete_nor_up_to_date(tmp_path):
    """A copy or download interrupted after the manifest (rsync, a full disk): the file is there with fewer bytes
    than the manifest lists. Counted as complete, its stage would be skipped as up to date and the stages after it
    would read the damaged file."""
    for contract, cut in ((TokenizerManifest, "tokenizer.model"), (DatasetManifest, "train/data-00000.arrow"),
                          (ModelManifest, "model.safetensors")):
        folder = tmp_path / contract.FOLDER
        shutil.copytree(FIXTURE / "run" / contract.FOLDER, folder)
        manifest = contract.read(folder)
        output = StageOutput(folder, contract, manifest.fingerprint, manifest.inputs)
        assert output.current_manifest() == manifest  # whole, it is up to date
        with open(folder / cut, "r+b") as handle:
            handle.truncate(manifest.files[cut] - 1)
        assert contract.read(folder) is None and not contract.complete(folder), cut
        assert output.current_manifest() is None, cut  # out of date: the stage builds it again
    with pytest.raises(UserError) as refused:  # what stage 3 says of it
        dataset_parts(tmp_path / DatasetManifest.FOLDER)
    assert f"no complete dataset in {tmp_path / DatasetManifest.FOLDER}" in refused.value.message
    assert "gpt2zh tokenize" in refused.value.fix


def _newer(run_dir: Path) -> Path:
    path = RunDir(run_dir).tokenizer / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[FORMAT_KEY] = TokenizerManifest.FORMAT + 1
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def test_a_manifest_from_a_newer_gpt2zh_is_refused_in_one_line_naming_the_file_and_the_upgrade(tmp_path):
    folder = tmp_path / "previous_release"
    shutil.copytree(FIXTURE, folder)
    path = _newer(folder / "run")
    with pytest.raises(UserError) as caught:
        TokenizerManifest.read(path.parent)
    assert str(path) in caught.value.message and "upgrade gpt2zh" in caught.value.fix

    before = path.read_bytes()
    result = run_cli("run", "--data-files", "corpus.txt", "--run-dir", "run", *SETTINGS, cwd=folder)
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert f"{path.relative_to(folder)} is in manifest format 2" in result.stderr and "upgrade gpt2zh" in result.stderr
    assert path.read_bytes() == before and not (folder / "run" / "push").exists()


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def manifest_reads(source: str) -> list[int]:
    """Lines that build a manifest file's path by name."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)

    def by_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and MANIFEST in node.value and id(node) not in docstrings
        if isinstance(node, ast.ImportFrom):
            return node.module == "gpt2zh.manifests" and any(alias.name == "MANIFEST" for alias in node.names)
        return isinstance(node, ast.Attribute) and node.attr == "MANIFEST"

    return [node.lineno for node in ast.walk(tree) if by_name(node)]


def folder_literals(source: str) -> list[int]:
    """Lines that name a run directory's folder by its string: `x / "model"`, `run.stage("tokenizer")`."""
    def folder(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and node.value in FOLDERS

    def names_folder(node: ast.AST) -> bool:
        if isinstance(node, ast.BinOp):
            return isinstance(node.op, ast.Div) and folder(node.right)
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "stage" \
            and any(folder(argument) for argument in node.args)

    return [node.lineno for node in ast.walk(ast.parse(source)) if names_folder(node)]


def checked_files() -> dict[str, Path]:
    files = {name: path for name, path in modules().items() if name not in OWN_MODULES}
    return {**files, **{f"scripts/{path.name}": path for path in sorted((REPO / "scripts").glob("*.py"))}}


def _offenders(find) -> list[str]:
    return [f"{name}:{line}" for name, path in checked_files().items()
            for line in find(path.read_text(encoding="utf-8"))]


def test_only_the_contracts_read_a_manifest_file_by_name():
    assert _offenders(manifest_reads) == [], "read it through its contract in pipeline/manifests.py"


def test_stage_folders_are_named_only_by_the_run_directory_and_the_contracts():
    assert _offenders(folder_literals) == [], "use RunDir's properties (run.tokenizer, run.model, ...)"


@pytest.mark.parametrize(("source", "find"), [
    ('import json\njson.loads((folder / "manifest.json").read_text())\n', manifest_reads),
    ('path = f"{folder}/manifest.json"\n', manifest_reads),
    ("from gpt2zh.manifests import MANIFEST, TokenizerManifest\n", manifest_reads),
    ("from gpt2zh import manifests\npath = folder / manifests.MANIFEST\n", manifest_reads),
    ('tokenizer = run_dir / "tokenizer"\n', folder_literals),
    ('weights = run.stage("model") / "model.safetensors"\n', folder_literals),
])
def test_the_checks_see_an_added_read_by_name(source, find):
    assert find(source) and not find('"""Reads <run-dir>/tokenizer/manifest.json."""\nx = run.tokenizer\n')
