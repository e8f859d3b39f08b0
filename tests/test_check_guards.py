"""scripts/check_guards.py: every guard row of PITFALLS.md has a sabotage that still applies (the fast
consistency check; breaking each guard and running its tests is `scripts/check_guards.py --fast`)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "check_guards.py"

ROW = ("| K1 | a value of `<|endoftext|>` goes unchecked | no check | `pkg/guarded.py:check` refuses it "
       "| `tests/test_guarded.py::test_it_is_refused`, `::test_it_is_named` | done |")
PITFALLS = f"""# Pitfalls

## K: Found while testing the checker

| ID | Symptom | Cause | Guard | Test | Status |
|---|---|---|---|---|---|
{ROW}
| K2 | planned later | - | `pkg/guarded.py:later` | - | planned |
"""
GUARDED = 'def check(value):\n    if value is None:\n        raise ValueError("refused")\n'
TESTS = "def test_it_is_refused():\n    pass\n\n\ndef test_it_is_named():\n    pass\n"


def sabotage(old: str, row: str = "K1", key: str = "K1-checker-row") -> str:
    return f"""[[sabotage]]
key = "{key}"
row = "{row}"
file = "pkg/guarded.py"
function = "check"
old = '''{old}'''
new = '''    if False:'''
fast = true
"""


def check_list(tmp_path: Path, sabotages: str, pitfalls: str = PITFALLS,
               files: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True, exist_ok=True)
    (repo / "tests").mkdir(exist_ok=True)
    (repo / "pkg" / "guarded.py").write_text(GUARDED, encoding="utf-8")
    for name, text in (files or {}).items():
        (repo / name).write_text(text, encoding="utf-8")
    (repo / "tests" / "test_guarded.py").write_text(TESTS, encoding="utf-8")
    (tmp_path / "PITFALLS.md").write_text(pitfalls, encoding="utf-8")
    (tmp_path / "sabotages.toml").write_text(sabotages, encoding="utf-8")
    return subprocess.run([sys.executable, str(SCRIPT), "--list", "--pitfalls", str(tmp_path / "PITFALLS.md"),
                           "--sabotages", str(tmp_path / "sabotages.toml"), "--repo", str(repo)],
                          capture_output=True, text=True, timeout=60)


def test_every_guard_row_of_pitfalls_has_a_sabotage_that_still_applies():
    result = subprocess.run([sys.executable, str(SCRIPT), "--list"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_consistent_row_and_sabotage_pass_the_list_check(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None:"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applies  K1-checker-row" in result.stdout and "2 test reference(s)" in result.stdout


def test_a_sabotage_whose_old_text_is_gone_no_longer_applies(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None or value == 0:"))
    assert result.returncode == 1
    assert "K1-checker-row: no longer applies: the old text occurs 0 times in pkg/guarded.py" in result.stdout


def test_a_guard_row_without_a_sabotage_and_a_sabotage_without_its_row_are_errors(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None:", row="K3", key="K3-checker-row"))
    assert result.returncode == 1
    assert "K3-checker-row: its row no longer exists (row K3 of PITFALLS.md)" in result.stdout
    assert "row K1 'a value of `<|endoftext|>` goes unchecked' (PITFALLS.md line 7) names a guard but has no " \
           "sabotage" in result.stdout


def test_a_sabotage_is_named_after_its_row_and_names_it_by_id_not_by_section(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None:", key="checker-row"))
    assert result.returncode == 1
    assert "checker-row: its key does not start with its row's id (K1, or K1-<what it breaks>)" in result.stdout
    old_style = sabotage("    if value is None:").replace('row = "K1"', 'section = "Found while testing"\nnumber = "1"')
    result = check_list(tmp_path, old_style)
    assert result.returncode == 1
    assert 'sabotage K1-checker-row names its row by section, number; name it by its PITFALLS.md id instead' \
           in result.stdout + result.stderr


def test_row_ids_must_be_well_formed_unique_and_in_every_table(tmp_path):
    applying = sabotage("    if value is None:")
    result = check_list(tmp_path, applying, PITFALLS.replace("| K2 |", "| K1 |"))
    assert result.returncode == 1 and "PITFALLS.md line 8: row id K1 is already used on line 7" in result.stdout
    result = check_list(tmp_path, applying, PITFALLS.replace("| K2 |", "| k-2 |"))
    assert result.returncode == 1 and "row id 'k-2' is not one or two capital letters" in result.stdout
    result = check_list(tmp_path, applying, PITFALLS.replace("| ID | Symptom", "| § | Symptom"))
    assert result.returncode == 1 and "a table whose first column is not ID" in result.stdout + result.stderr


def test_a_guard_in_a_shell_script_is_located_by_its_function(tmp_path):
    script = ('say() { echo "setup: $*"; }\ncheck() {  # refuses an empty value\n  if [ -z "$1" ]; then\n'
              '    exit 1\n  fi\n}\nlater() {\n  if [ -n "$2" ]; then\n    exit 2\n  fi\n}\n')
    pitfalls = PITFALLS.replace("`pkg/guarded.py:check`", "`pkg/setup.sh:check`")
    shell = sabotage('  if [ -z "$1" ]; then').replace("pkg/guarded.py", "pkg/setup.sh")
    result = check_list(tmp_path, shell, pitfalls, files={"pkg/setup.sh": script})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applies  K1-checker-row" in result.stdout
    outside = shell.replace('  if [ -z "$1" ]; then', '  if [ -n "$2" ]; then')
    result = check_list(tmp_path, outside, pitfalls, files={"pkg/setup.sh": script})
    assert result.returncode == 1
    assert "the old text (lines 8-8) is outside check (lines 2-6) in pkg/setup.sh" in result.stdout
    result = check_list(tmp_path, shell, pitfalls.replace("setup.sh:check", "setup.sh:refuse"),
                        files={"pkg/setup.sh": script})
    assert result.returncode == 1 and "names guards that do not exist: pkg/setup.sh:refuse" in result.stdout


def check_for_real(tmp_path: Path, tests: str) -> subprocess.CompletedProcess:
    """The whole mechanism on a toy repository: copy, sabotage, run the row's tests in the copy."""
    repo = tmp_path / "repo"
    (repo / "pipeline").mkdir(parents=True)  # the checker verifies that the copy imports its own packages
    (repo / "pipeline" / "__init__.py").write_text("", encoding="utf-8")
    (repo / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = {"gpt2zh" = "pipeline"}\n',
                                         encoding="utf-8")
    (repo / "pipeline" / "guarded.py").write_text(GUARDED, encoding="utf-8")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_guarded.py").write_text(tests, encoding="utf-8")
    pitfalls = PITFALLS.replace("pkg/guarded.py", "pipeline/guarded.py")
    (tmp_path / "PITFALLS.md").write_text(pitfalls, encoding="utf-8")
    (tmp_path / "sabotages.toml").write_text(sabotage("    if value is None:").replace("pkg/", "pipeline/"),
                                             encoding="utf-8")
    return subprocess.run([sys.executable, str(SCRIPT), "--no-baseline", "--pitfalls", str(tmp_path / "PITFALLS.md"),
                           "--sabotages", str(tmp_path / "sabotages.toml"), "--repo", str(repo)],
                          capture_output=True, text=True, timeout=120)


def test_a_guard_whose_test_fails_when_it_is_broken_is_proven(tmp_path):
    tests = ("import pytest\nfrom gpt2zh.guarded import check\n\n\ndef test_it_is_refused():\n"
             "    with pytest.raises(ValueError):\n        check(None)\n\n\ndef test_it_is_named():\n    pass\n")
    result = check_for_real(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "proven" in result.stdout and "1 of 1 guards proven" in result.stdout


def test_a_guard_whose_tests_still_pass_when_it_is_broken_is_not_proven(tmp_path):
    result = check_for_real(tmp_path, TESTS)  # tests that never call the guard
    assert result.returncode == 1
    assert "NOT PROVEN" in result.stdout and "0 of 1 guards proven" in result.stdout
    assert (tmp_path / "repo" / "pipeline" / "guarded.py").read_text(encoding="utf-8") == GUARDED  # never edited
