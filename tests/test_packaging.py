"""The wheel is one package, gpt2zh: built with pip from the repository, installed into a folder of its own
and run outside the repository, it trains a model with the configs it ships (issue 25)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_DATA, TINY_TRAIN, run_cli, weights

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

PACKAGE_ROOTS = ("pipeline", "tokenizer", "configs")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def setuptools_table() -> dict:
    return pyproject()["tool"]["setuptools"]


def import_name(folder: Path, package_dir: dict[str, str]) -> str:
    """The import name of a repository folder, through pyproject's package-dir (pipeline/hub -> gpt2zh.hub)."""
    relative = folder.relative_to(REPO).as_posix()
    for name, root in sorted(package_dir.items(), key=lambda item: -len(item[1])):
        if relative == root or relative.startswith(root + "/"):
            return ".".join([name, *Path(relative).relative_to(root).parts])
    raise AssertionError(f"{relative}/ is under no package-dir folder of pyproject.toml")


def source_files() -> dict[str, Path]:
    """Every file the package folders hold, under the path it must have in the wheel (gpt2zh/hub/x.py)."""
    package_dir = setuptools_table()["package-dir"]
    files = {}
    for root in PACKAGE_ROOTS:
        for path in (REPO / root).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[import_name(path.parent, package_dir).replace(".", "/") + "/" + path.name] = path
    return files


def test_pyproject_lists_every_package_folder():
    """A new subpackage folder left out of [tool.setuptools] packages works from the clone (editable
    install) and is missing from the wheel: every folder holding Python is listed, and nothing else."""
    table = setuptools_table()
    python_folders = {path.parent for root in PACKAGE_ROOTS for path in (REPO / root).rglob("*.py")
                      if "__pycache__" not in path.parts}
    assert all((folder / "__init__.py").is_file() for folder in python_folders), "a package folder lacks __init__.py"
    assert sorted(import_name(folder, table["package-dir"]) for folder in python_folders) == sorted(table["packages"])
    # the other ways setuptools installs a top-level name, which a wheel built from the package folders alone
    # would not show (a module named in py-modules is simply skipped when the copy lacks it)
    assert not {"py-modules", "data-files", "script-files"} & set(table), "only gpt2zh is installed (PITFALLS.md PK1)"
    assert all(name == "gpt2zh" or name.startswith("gpt2zh.") for name in [*table["packages"], *table["package-dir"]])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of what the build reads. Not the checkout itself: an in-tree build writes build/
    and gpt2zh.egg-info there, and build/lib keeps modules deleted since the last build, which the next
    wheel would ship. No build isolation: it would download setuptools, and the venv already has one
    (torch requires setuptools>=77)."""
    source = tmp_path_factory.mktemp("source")
    table = setuptools_table()
    shutil.copy2(REPO / "pyproject.toml", source)
    shutil.copy2(REPO / pyproject()["project"]["readme"], source)
    for folder in set(table["package-dir"].values()):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(out)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel_file,) = out.glob("gpt2zh-*.whl")
    return wheel_file


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a folder of its own, as `pip install --target` lays it out."""
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                             "-q", "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return site


def outside(site: Path) -> dict[str, str]:
    """PYTHONPATH is searched before the venv's editable install (its finder is last on sys.meta_path), so
    gpt2zh is imported from the installed wheel."""
    return {"PYTHONPATH": str(site)}


def test_the_wheel_holds_only_gpt2zh_with_every_module_and_the_shipped_configs(wheel):
    names = [name for name in zipfile.ZipFile(wheel).namelist() if not name.endswith("/")]
    version = wheel.name.split("-")[1]
    assert {name.split("/")[0] for name in names} == {"gpt2zh", f"gpt2zh-{version}.dist-info"}
    shipped = {name for name in names if name.startswith("gpt2zh/")}
    assert {"gpt2zh/configs/demo.yaml", "gpt2zh/tokenizer/stage.py", "gpt2zh/__main__.py"} <= shipped
    assert {f"gpt2zh/configs/presets/{p.name}" for p in (REPO / "configs" / "presets").glob("*.yaml")} <= shipped
    assert shipped == set(source_files()), "the wheel and the package folders differ"


def test_the_wheels_gpt2zh_command_is_cli_main_and_runs_outside_the_repository(wheel, installed, tmp_path):
    version = wheel.name.split("-")[1]
    entry_points = zipfile.ZipFile(wheel).read(f"gpt2zh-{version}.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\ngpt2zh = gpt2zh.cli:main" in entry_points
    result = run_cli("--version", cwd=tmp_path, env=outside(installed), executable=[str(installed / "bin" / "gpt2zh")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gpt2zh {version}"


@pytest.mark.slow
def test_the_installed_wheel_trains_a_model_outside_the_repository_with_its_own_demo_config(
        installed, tmp_path, small_corpus):
    probe = "import gpt2zh, gpt2zh.configs; print(gpt2zh.__file__); print(gpt2zh.configs.__file__)"
    located = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, **outside(installed)},
                             capture_output=True, text=True)
    assert located.returncode == 0, located.stderr
    paths = located.stdout.splitlines()
    assert len(paths) == 2 and all(Path(path).is_relative_to(installed) for path in paths), located.stdout

    # The command, on the small corpus and a tiny model (seconds); the flags come last,
    # where argparse lets them win over TINY_TRAIN's. The preset is named: a preset file missing from the
    # wheel is then an error, where auto would quietly fall back to the config's values.
    run_dir = tmp_path / "demo"
    result = run_cli("run", "--config", "demo", "--data-files", str(small_corpus), "--run-dir", str(run_dir),
                     *TINY_DATA, *TINY_TRAIN, "--training-preset", "cpu", "--force-preset",
                     "--training-max-steps", "10", "--optimization-warmup-steps", "3",
                     cwd=tmp_path, env=outside(installed))
    assert result.returncode == 0, result.stderr
    assert "pretrain: preset cpu" in result.stdout
    assert "trained     10 steps" in result.stdout and "3 pretrain         ran in" in result.stdout
    assert weights(run_dir / "model"), "no weights in model/"
