"""The test suite cleans up after itself: a run leaves nothing of ours in the system's temporary folder."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_a_pytest_run_leaves_no_gpt2zh_folder_in_the_temporary_directory(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "GPT2ZH_CACHE"}
    env["TMPDIR"] = str(temporary)
    # conftest.py makes the session's digest cache on import: any test exercises it.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_config.py::test_demo_config_is_the_default"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # pytest keeps its own last three base folders (pytest-of-USER) on purpose; nothing else may stay.
    left = sorted(entry.name for entry in temporary.iterdir() if not entry.name.startswith("pytest-of-"))
    assert left == []
