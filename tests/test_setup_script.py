"""scripts/setup.sh decides which torch a machine gets (PITFALLS.md CN1, CN2): the real script, run with
--dry-run, with a fake nvidia-smi first on PATH and a real Python whose `import torch` finds a stand-in
torch (or none), so every decision is made as on a rented GPU image and nothing is installed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "setup.sh"
# The interpreter this venv was made from: a venv's own Python cannot lend its packages to another venv.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
NVIDIA_SMI = """#!/bin/sh
cat <<'EOF'
Mon Dec  8 10:00:00 2025
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: {cuda}     |
|-----------------------------------------+----------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id        Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA GeForce RTX 4090        On  | 00000000:01:00.0 Off |                  Off |
+-----------------------------------------+----------------------+----------------------+
EOF
"""


def machine(tmp_path: Path, driver_cuda: str | None, torch: tuple[str, str | None] | None = None,
            interpreter: str = BASE_PYTHON) -> dict:
    """The environment of a machine: a driver reporting driver_cuda (None: no nvidia-smi at all) and a
    $PYTHON (interpreter) whose torch is torch = (version, CUDA version or None), or that has no torch."""
    bin_dir, site = tmp_path / "bin", tmp_path / "site" / "torch"
    bin_dir.mkdir()
    site.mkdir(parents=True)
    if torch is None:
        (site / "__init__.py").write_text('raise ImportError("no torch in this Python")\n', encoding="utf-8")
    else:
        (site / "__init__.py").write_text(f"__version__ = {torch[0]!r}\n\n\nclass version:\n    cuda = {torch[1]!r}\n",
                                          encoding="utf-8")
    python = bin_dir / "python-with-site"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site.parent}" exec "{interpreter}" "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    path = os.environ["PATH"]
    if driver_cuda is None:
        path = path_without_nvidia_smi(tmp_path, path)
    else:
        (bin_dir / "nvidia-smi").write_text(NVIDIA_SMI.format(cuda=driver_cuda), encoding="utf-8")
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("TORCH_SPEC", "TORCH_INDEX_URL")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{path}", PYTHON=str(python), VENV=str(tmp_path / "venv"))
    return env


def path_without_nvidia_smi(tmp_path: Path, path: str) -> str:
    """PATH with every folder that holds an nvidia-smi replaced by a copy of its links, less nvidia-smi."""
    folders = []
    for number, folder in enumerate(path.split(os.pathsep)):
        if not (Path(folder) / "nvidia-smi").exists():
            folders.append(folder)
            continue
        shadow = tmp_path / f"path-{number}"
        shadow.mkdir()
        for entry in Path(folder).iterdir():
            if entry.name != "nvidia-smi":
                (shadow / entry.name).symlink_to(entry)
        folders.append(str(shadow))
    return os.pathsep.join(folders)


def dry_run(env: dict, **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "dev"], env={**env, **overrides},
                          capture_output=True, text=True, timeout=60)


def torch_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.splitlines()
             if re.search(r"(?<![\w/-])torch\b", line) and not line.startswith("setup: (dry")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def would_run(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split("would run: ", 1)[1] for line in result.stdout.splitlines() if "would run: " in line]


def installs_nothing(result: subprocess.CompletedProcess, env: dict) -> None:
    assert not Path(env["VENV"]).exists(), "a dry run created the venv"
    assert "dev]" in would_run(result)[-1] and "--index-url" not in would_run(result)[-1], result.stdout


def test_a_driver_reporting_cuda_12_2_gets_a_cuda_12_build_it_runs_and_a_dry_run_installs_nothing(tmp_path):
    env = machine(tmp_path, "12.2")
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    line = torch_line(result)
    assert re.fullmatch(r"setup: NVIDIA driver supports CUDA 12\.2; installing torch==2\.13\.0 \(cu126 build, by "
                        r"CUDA 12 minor version compatibility\) from https://download\.pytorch\.org/whl/cu126", line)
    assert would_run(result)[1] == (f"{env['VENV']}/bin/python -m pip install --index-url "
                                    "https://download.pytorch.org/whl/cu126 torch==2.13.0")
    installs_nothing(result, env)


@pytest.mark.parametrize(("driver_cuda", "build"), [("12.6", "cu126"), ("12.9", "cu128"), ("13.0", "cu130"),
                                                    ("13.2", "cu130")])
def test_a_driver_gets_the_newest_cuda_build_at_or_below_its_cuda_version(tmp_path, driver_cuda, build):
    result = dry_run(machine(tmp_path, driver_cuda))
    assert result.returncode == 0, result.stdout + result.stderr
    assert torch_line(result) == (f"setup: NVIDIA driver supports CUDA {driver_cuda}; installing torch==2.13.0 "
                                  f"({build} build) from https://download.pytorch.org/whl/{build}")


@pytest.mark.parametrize("driver_cuda", ["11.8", "10.2"])
def test_a_driver_too_old_for_every_build_is_one_line_naming_the_minimum_driver_and_installs_nothing(
        tmp_path, driver_cuda):
    env = machine(tmp_path, driver_cuda)
    result = dry_run(env)
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"setup: the NVIDIA driver supports CUDA {driver_cuda}, older than every CUDA "
                                    "build of torch==2.13.0 (cu126/cu128/cu130); update the NVIDIA driver to "
                                    "525.60.13 or newer (CUDA 12)")
    assert not Path(env["VENV"]).exists()


def test_torch_index_url_overrides_the_index_chosen_for_the_driver(tmp_path):
    env = machine(tmp_path, "12.2")
    result = dry_run(env, TORCH_INDEX_URL="https://mirror.example.cn/pytorch-wheels/cu121")
    assert result.returncode == 0, result.stdout + result.stderr
    assert torch_line(result) == ("setup: NVIDIA driver supports CUDA 12.2; installing torch==2.13.0 from "
                                  "https://mirror.example.cn/pytorch-wheels/cu121 (TORCH_INDEX_URL)")
    assert "download.pytorch.org" not in result.stdout
    assert "--index-url https://mirror.example.cn/pytorch-wheels/cu121 torch==2.13.0" in would_run(result)[1]
    installs_nothing(result, env)


def test_a_preinstalled_torch_with_cuda_is_reused_through_system_site_packages_without_a_download(tmp_path):
    env = machine(tmp_path, "12.2", torch=("2.5.1+cu124", "12.4"))
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert torch_line(result).startswith(f"setup: reusing {env['PYTHON']}'s torch 2.5.1+cu124 (CUDA 12.4) through "
                                         "the venv's system site packages; nothing to download")
    commands = would_run(result)
    assert commands[0] == f"{env['PYTHON']} -m venv --system-site-packages {env['VENV']}"
    assert commands[1:] == [f"{env['VENV']}/bin/python -m pip install -e .[dev]"], result.stdout  # no torch
    installs_nothing(result, env)


def test_torch_spec_installs_what_was_asked_instead_of_reusing_the_preinstalled_torch(tmp_path):
    env = machine(tmp_path, "12.2", torch=("2.5.1+cu124", "12.4"))
    result = dry_run(env, TORCH_SPEC="torch==2.12.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not reused: TORCH_SPEC or TORCH_INDEX_URL asks for another" in result.stdout
    commands = would_run(result)
    assert commands[0] == f"{env['PYTHON']} -m venv {env['VENV']}"
    assert commands[1].endswith("--index-url https://download.pytorch.org/whl/cu126 torch==2.12.0")
    installs_nothing(result, env)


@pytest.mark.parametrize(("torch", "why"), [(("2.13.0+cpu", None), "is a CPU build; not reused"),
                                            (("2.1.2+cu121", "12.1"), "older than the torch>=2.2 gpt2zh needs"),
                                            (("2.13.0+cu130", "13.0"), "needs a newer driver than this one")])
def test_a_preinstalled_torch_without_cuda_too_old_or_too_new_for_the_driver_is_not_reused(tmp_path, torch, why):
    env = machine(tmp_path, "12.2", torch=torch)
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert why in result.stdout
    commands = would_run(result)
    assert commands[0] == f"{env['PYTHON']} -m venv {env['VENV']}"
    assert commands[1].endswith("--index-url https://download.pytorch.org/whl/cu126 torch==2.13.0")


def test_a_torch_in_another_virtual_environment_is_not_reused(tmp_path):
    # This test's own interpreter is a venv's: a new venv's system site packages would be its base Python's.
    env = machine(tmp_path, "12.2", torch=("2.5.1+cu124", "12.4"), interpreter=sys.executable)
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is in a virtual environment, which another venv cannot share; not reused" in result.stdout
    assert would_run(result)[1].endswith("--index-url https://download.pytorch.org/whl/cu126 torch==2.13.0")


def test_an_existing_venv_without_torch_is_turned_to_system_site_packages_to_reuse_the_preinstalled_torch(tmp_path):
    env = machine(tmp_path, "12.2", torch=("2.5.1+cu124", "12.4"))
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", env["VENV"]], check=True, timeout=60)
    config = Path(env["VENV"]) / "pyvenv.cfg"
    before = config.read_text(encoding="utf-8")
    assert "include-system-site-packages = false" in before
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{env['VENV']} was created without system site packages; turning them on" in result.stdout
    assert "include-system-site-packages = true" in would_run(result)[0]
    assert config.read_text(encoding="utf-8") == before  # a dry run changes nothing
    assert not (Path(env["VENV"]) / ".gpt2zh-installed").exists()


def test_without_nvidia_smi_the_cpu_build_is_installed(tmp_path):
    env = machine(tmp_path, None)
    result = dry_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    line = torch_line(result)
    # CPU index reachable or not (then the `+cpu` wheel from the configured index): a CPU build either way.
    assert line.startswith("setup: no NVIDIA GPU") and "CPU build" in line, line
    assert "cu12" not in result.stdout and "cu13" not in result.stdout
    installs_nothing(result, env)
