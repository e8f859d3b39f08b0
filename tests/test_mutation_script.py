"""scripts/mutation.py keeps naming what exists: a module moved or a test file renamed fails here, not after
the first minutes of a mutation run."""

import importlib.util
import sys
from pathlib import Path

import tomllib

from tests.conftest import REPO


def _mutation_script():
    sys.path.insert(0, str(REPO / "scripts"))  # as when it runs: it imports check_guards beside it
    spec = importlib.util.spec_from_file_location("mutation_script", REPO / "scripts" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_module_of_every_area_and_of_the_ci_sample_exists_in_the_package():
    mutation = _mutation_script()
    package = Path(mutation.package_folders(REPO)["gpt2zh"])
    modules = [module for area in mutation.AREAS.values() for module in area] + mutation.SAMPLE
    assert [name for name in mutation.SAMPLE_TESTS if not (REPO / "tests" / name).is_file()] == []
    assert [module for module in modules if not (package / module).is_file()] == []
    assert set(mutation.SAMPLE) <= {module for area in mutation.AREAS.values() for module in area}


def test_the_tests_left_out_and_the_fork_unsafe_tests_exist():
    mutation = _mutation_script()
    assert [name for name in mutation.NOT_BEHAVIOUR_TESTS if not (REPO / "tests" / name).is_file()] == []
    for node in mutation.FORK_UNSAFE[1::2]:
        path, _, name = node.partition("::")
        assert f"def {name}(" in (REPO / path).read_text(encoding="utf-8"), node


def test_a_mutant_key_is_scored_in_the_area_of_its_module():
    mutation = _mutation_script()
    assert mutation.area_of("gpt2zh.corpus.json_array.x__utf8_stream__mutmut_3") == "corpus"
    assert mutation.area_of("gpt2zh.training.batch_fit.x_fit_batch__mutmut_12") == "training"
    assert mutation.area_of("gpt2zh.hub.card.xǁCardǁrender__mutmut_1") == "hub"
    assert mutation.area_of("gpt2zh.cli.x_main__mutmut_1") == "other"


def test_every_equivalent_mutant_says_which_line_and_why():
    equivalents = tomllib.loads((REPO / "tests" / "equivalent_mutants.toml").read_text(encoding="utf-8"))
    for key, entry in equivalents.get("mutant", {}).items():
        assert "__mutmut_" in key and entry.get("line", "").strip() and entry.get("why", "").strip(), key


def test_staging_again_keeps_only_mutmuts_verdicts_and_test_map_and_fresh_forgets_them(tmp_path):
    """A verdict is kept while its function is unchanged (mutmut compares hashes); every other file of the
    earlier stage is copied anew, so an edited module or test reaches the next run."""
    mutation = _mutation_script()
    folder = tmp_path / "corpus"
    kept = [folder / "mutants" / "gpt2zh" / "corpus" / "formats.py.meta", folder / "mutants" / "mutmut-stats.json"]
    stale = [folder / "mutants" / "gpt2zh" / "corpus" / "formats.py", folder / "mutants" / "tests" / "test_old.py",
             folder / "gpt2zh" / "gone.py"]
    for path in kept + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("earlier run", encoding="utf-8")
    mutation.stage(folder, ["corpus/formats.py"], None, fresh=False)
    assert [path.read_text(encoding="utf-8") for path in kept] == ["earlier run"] * 2
    assert [path for path in stale if path.exists()] == []
    assert (folder / "gpt2zh" / "corpus" / "formats.py").is_file() and (folder / "tests" / "conftest.py").is_file()
    configuration = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    assert configuration["only_mutate"] == ["gpt2zh/corpus/formats.py"]
    assert configuration["pytest_add_cli_args_test_selection"] == ["tests"]  # the same when a test file is added
    left_out = configuration["pytest_add_cli_args"]
    assert all(f"tests/{name}" in left_out for name in mutation.NOT_BEHAVIOUR_TESTS + mutation.STAGE_RUN_TESTS)
    mutation.stage(folder, ["corpus/formats.py"], None, fresh=True)
    assert [path for path in kept if path.exists()] == []
