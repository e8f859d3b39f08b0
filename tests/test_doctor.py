"""`doctor` and the hardware decisions, fed fabricated A100/4090/5090/T4/H100/CPU facts."""

import json
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from pipeline.doctor import Check, doctor_checks, render
from pipeline.hardware import facts as facts_module
from pipeline.hardware.decisions import (
    MINIMUM_VERSIONS,
    bf16_native,
    compile_available,
    flash_attention_eligible,
    tf32_eligible,
    version_at_least,
    version_tuple,
)
from pipeline.hardware.facts import (
    HardwareFacts,
    StorageFacts,
    probe_8bit_adam,
)
from tests.conftest import fabricate, run_cli

STORAGE = StorageFacts(cache_dir="/cache", cache_writable=True, run_dir="runs", free_gib=100.0)

AMPERE_OR_NEWER = {"a100-40g": True, "a100-80g": True, "rtx4090": True, "rtx5090": True, "h100": True,
                   "t4": False, "cpu": False}


@pytest.mark.parametrize("device", list(AMPERE_OR_NEWER))
def test_tf32_bf16_and_flash_attention_follow_compute_capability(device):
    facts = fabricate(device)
    expected = AMPERE_OR_NEWER[device]
    assert tf32_eligible(facts) is expected
    assert bf16_native(facts) is expected
    assert flash_attention_eligible(facts)[0] is expected
    assert flash_attention_eligible(fabricate(device, flash=None))[0] is False  # not installed: SDPA everywhere


def test_t4_explains_why_flash_attention_is_off():
    ok, reason = flash_attention_eligible(fabricate("t4"))
    assert not ok and "SM 7.5" in reason and "SDPA" in reason


@pytest.mark.parametrize("device", list(AMPERE_OR_NEWER))
def test_every_doctor_check_is_true_or_false_never_none(device):
    checks = doctor_checks(fabricate(device), STORAGE, (device != "cpu", "probe"))
    assert checks and all(type(c.ok) is bool for c in checks)
    by_name = {c.name: c for c in checks}
    assert by_name["TF32 eligible (SM >= 8.0)"].ok is AMPERE_OR_NEWER[device]
    assert by_name["GPU"].ok is (device != "cpu")
    assert "SM" in render(checks, fabricate(device))


def test_t4_gets_fp16_and_cpu_gets_fp32():
    t4 = {c.name: c for c in doctor_checks(fabricate("t4"), STORAGE, (False, "x"))}
    cpu = {c.name: c for c in doctor_checks(fabricate("cpu"), STORAGE, (True, "x"))}
    assert "fp16 + loss scaling" in t4["bf16 native (SM >= 8.0)"].detail
    assert "fp32 on CPU" in cpu["bf16 native (SM >= 8.0)"].detail


def test_a_check_that_returns_none_is_a_bug_caught_at_once():
    # (G7) check_environment returned None on non-zero ranks and flash attention silently went off
    with pytest.raises(TypeError, match="not True/False"):
        Check("flash", None, "detail")


def test_required_failures_are_flagged():
    old = HardwareFacts(python_version="3.9.1", cpu_count=2, torch_version="1.13.1",
                        versions={"transformers": "4.30.0"})
    unwritable = StorageFacts(cache_dir="/ro", cache_writable=False, run_dir="runs", free_gib=1.0)
    failing = {c.name for c in doctor_checks(old, unwritable, (False, "x")) if c.required and not c.ok}
    assert failing == {"python >= 3.10", "torch >= 2.2", "transformers >= 5.0", "HF cache writable"}


def _declared_minimums() -> dict[str, str]:
    """The `>=` bounds of pyproject.toml: requires-python, the dependencies and every extra."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest itself depends on tomli there
        import tomli as tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    minimums = {"python": project["requires-python"].removeprefix(">=")}
    for requirement in map(Requirement, lines):
        for bound in (s for s in requirement.specifier if s.operator == ">="):
            minimums[requirement.name] = bound.version
    return minimums


def test_minimum_versions_are_the_lower_bounds_pyproject_declares():
    declared = _declared_minimums()
    assert set(MINIMUM_VERSIONS) <= set(declared)
    assert {name: declared[name] for name in MINIMUM_VERSIONS} == MINIMUM_VERSIONS


def test_the_report_shows_what_the_guides_debug_commands_print():
    # nvidia-smi / get_device_capability(), torch.version.cuda, flash_attn.__version__, bitsandbytes
    facts = fabricate("a100-80g", count=2)
    checks = {c.name: c for c in doctor_checks(facts, STORAGE, (True, "Adam8bit stepped on cuda"))}
    assert checks["GPU"].detail == "; ".join(["NVIDIA A100-SXM4-80GB, 79.2 GiB, SM 8.0"] * 2)
    assert checks["torch built with CUDA"].detail == "CUDA 12.8"
    assert checks["flash-attn importable"].detail == "2.8.3"
    assert checks["bitsandbytes 8-bit Adam on cuda"].ok is True
    assert checks["torch >= 2.2"].detail.startswith("2.13.0")
    assert "transformers 5.23.0" in render(list(checks.values()), facts)


def test_compile_needs_triton_on_gpu_and_a_compiler_on_cpu():
    assert compile_available(fabricate("a100-80g"))[0] is True
    assert compile_available(HardwareFacts(python_version="3.11", cpu_count=2, torch_version="2.13.0"))[0] is False
    assert compile_available(HardwareFacts(python_version="3.11", cpu_count=2, cxx_compiler=True)) == \
        (False, "torch is not installed")


def test_versions_compare_numerically():
    assert version_tuple("2.13.0+cpu") == (2, 13, 0) and version_tuple("2.0rc1") == (2, 0)
    assert version_at_least("2.13.0", "2.2") and not version_at_least("2.1.9", "2.2")
    assert not version_at_least(None, "1")


def test_8bit_adam_probe_takes_a_real_step_on_cpu(monkeypatch):
    import bitsandbytes

    steps, real_step = [], bitsandbytes.optim.Adam8bit.step

    def counted(optimizer, *args, **kwargs):
        steps.append(type(optimizer).__name__)
        return real_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(bitsandbytes.optim.Adam8bit, "step", counted)
    ok, detail = probe_8bit_adam("cpu")
    assert ok is True and "stepped on cpu" in detail
    assert steps == ["Adam8bit"]  # the real step ran, once


def test_8bit_adam_probe_fails_when_only_the_step_fails(monkeypatch):
    # (G4) a build without GPU support constructs Adam8bit fine and fails at its first step
    import bitsandbytes

    def failing_step(optimizer, *args, **kwargs):
        raise RuntimeError("The installed version of bitsandbytes was compiled without GPU support")

    monkeypatch.setattr(bitsandbytes.optim.Adam8bit, "step", failing_step)
    ok, detail = probe_8bit_adam("cpu")
    assert ok is False and detail == "RuntimeError: The installed version of bitsandbytes was compiled without GPU " \
                                     "support"


def test_8bit_adam_probe_reports_failure_instead_of_raising(monkeypatch):
    import bitsandbytes

    def broken(*args, **kwargs):
        raise RuntimeError("libbitsandbytes_cuda124.so: cannot open shared object file")

    monkeypatch.setattr(bitsandbytes.optim, "Adam8bit", broken)
    ok, detail = probe_8bit_adam("cpu")
    assert ok is False and "cannot open shared object file" in detail


def test_missing_bitsandbytes_is_a_false_probe(monkeypatch):
    monkeypatch.setattr(facts_module, "package_version", lambda name: None)
    assert probe_8bit_adam("cpu") == (False, "bitsandbytes is not installed")


def test_doctor_command_reports_this_machine(tmp_path):
    result = run_cli("doctor", "--json", "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert all(type(check["ok"]) is bool for check in report["checks"])
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["python >= 3.10"]["ok"] and checks["CUDA available"]["ok"] is False
    assert checks["bitsandbytes 8-bit Adam on cpu"]["ok"] is True
    text = run_cli("doctor", "--run-dir", str(tmp_path))
    assert text.returncode == 0 and "environment report" in text.stdout and "kernels" not in text.stderr
