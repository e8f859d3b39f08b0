"""scripts/check_guards.py: every guard row of PITFALLS.md has a sabotage that still applies (the fast
consistency check; breaking each guard and running its tests is `scripts/check_guards.py --fast`)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "check_guards.py"

ROW = ("| a value of `<|endoftext|>` goes unchecked | no check | `pkg/guarded.py:check` refuses it "
       "| `tests/test_guarded.py::test_it_is_refused`, `::test_it_is_named` | done |")
PITFALLS = f"""# Pitfalls

## Found while testing the checker

| Symptom | Cause | Guard | Test | Status |
|---|---|---|---|---|
{ROW}
| planned later | - | `pkg/guarded.py:later` | - | planned |
"""
GUARDED = 'def check(value):\n    if value is None:\n        raise ValueError("refused")\n'
TESTS = "def test_it_is_refused():\n    pass\n\n\ndef test_it_is_named():\n    pass\n"


def sabotage(old: str, symptom: str = "goes unchecked") -> str:
    return f"""[[sabotage]]
key = "checker-row"
section = "Found while testing the checker"
symptom = "{symptom}"
file = "pkg/guarded.py"
function = "check"
old = '''{old}'''
new = '''    if False:'''
fast = true
"""


def check_list(tmp_path: Path, sabotages: str) -> subprocess.CompletedProcess:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "pkg" / "guarded.py").write_text(GUARDED, encoding="utf-8")
    (repo / "tests" / "test_guarded.py").write_text(TESTS, encoding="utf-8")
    (tmp_path / "PITFALLS.md").write_text(PITFALLS, encoding="utf-8")
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
    assert "applies  checker-row" in result.stdout and "2 test reference(s)" in result.stdout


def test_a_sabotage_whose_old_text_is_gone_no_longer_applies(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None or value == 0:"))
    assert result.returncode == 1
    assert "checker-row: no longer applies: the old text occurs 0 times in pkg/guarded.py" in result.stdout


def test_a_guard_row_without_a_sabotage_and_a_sabotage_without_its_row_are_errors(tmp_path):
    result = check_list(tmp_path, sabotage("    if value is None:", symptom="a row that was removed"))
    assert result.returncode == 1
    assert "checker-row: its row no longer exists" in result.stdout
    assert "goes unchecked' (PITFALLS.md line 7) names a guard but has no sabotage" in result.stdout


def check_for_real(tmp_path: Path, tests: str) -> subprocess.CompletedProcess:
    """The whole mechanism on a toy repository: copy, sabotage, run the row's tests in the copy."""
    repo = tmp_path / "repo"
    for package in ("pipeline", "tokenizer"):  # the checker verifies that the copy imports its own packages
        (repo / package).mkdir(parents=True)
        (repo / package / "__init__.py").write_text("", encoding="utf-8")
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
    tests = ("import pytest\nfrom pipeline.guarded import check\n\n\ndef test_it_is_refused():\n"
             "    with pytest.raises(ValueError):\n        check(None)\n\n\ndef test_it_is_named():\n    pass\n")
    result = check_for_real(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "proven" in result.stdout and "1 of 1 guards proven" in result.stdout


def test_a_guard_whose_tests_still_pass_when_it_is_broken_is_not_proven(tmp_path):
    result = check_for_real(tmp_path, TESTS)  # tests that never call the guard
    assert result.returncode == 1
    assert "NOT PROVEN" in result.stdout and "0 of 1 guards proven" in result.stdout
    assert (tmp_path / "repo" / "pipeline" / "guarded.py").read_text(encoding="utf-8") == GUARDED  # never edited
