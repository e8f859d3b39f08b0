"""`doctor` and the hardware decisions, fed fabricated A100/4090/5090/T4/H100/CPU facts."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gpt2zh import network_checks
from gpt2zh.doctor import Check, doctor_checks, render
from gpt2zh.hardware import facts as facts_module
from gpt2zh.hardware.decisions import (
    MINIMUM_VERSIONS,
    bf16_native,
    compile_available,
    flash_attention_eligible,
    tf32_eligible,
    version_at_least,
    version_tuple,
)
from gpt2zh.hardware.facts import (
    HardwareFacts,
    StorageFacts,
    probe_8bit_adam,
)
from gpt2zh.network_checks import Endpoint, Reachability, collect_reachability, endpoints_in_force
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


def test_doctor_command_reports_this_machine(tmp_path, answering_server, closed_port):
    hubs = {"HF_ENDPOINT": answering_server, "MODELSCOPE_ENDPOINT": closed_port}  # never the internet
    result = run_cli("doctor", "--json", "--run-dir", str(tmp_path), env=hubs)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert all(type(check["ok"]) is bool for check in report["checks"])
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["python >= 3.10"]["ok"] and checks["CUDA available"]["ok"] is False
    assert checks["bitsandbytes 8-bit Adam on cpu"]["ok"] is True
    assert checks["Hugging Face reachable"]["ok"] is True and checks["ModelScope reachable"]["ok"] is False
    assert checks["ModelScope reachable"]["fix"] == "check the network or MODELSCOPE_ENDPOINT"
    assert [found["url"] for found in report["network"]] == [answering_server, closed_port]
    text = run_cli("doctor", "--run-dir", str(tmp_path), env=hubs)
    assert text.returncode == 0 and "environment report" in text.stdout and "kernels" not in text.stderr
    assert "fix: check the network or MODELSCOPE_ENDPOINT" in text.stdout


# -- CN4, CN5: can this machine reach the hubs? ---------------------------------------------------------------

@pytest.fixture
def answering_server():
    """A local HTTP server that answers 401 to everything, like a hub's "who am I" without a token."""
    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> str:
    with socket.socket() as probe:  # bound, never listening: connecting is refused
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def silent_socket():
    """Accepts connections (the kernel's backlog) and never answers: a network that swallows the request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def endpoint(name: str, url: str) -> Endpoint:
    return Endpoint(name, "HF_ENDPOINT" if name == "Hugging Face" else "MODELSCOPE_ENDPOINT", url, "/api/whoami-v2")


def test_any_http_answer_is_reachable_and_refused_or_silent_is_not(answering_server, closed_port, silent_socket):
    found = collect_reachability([endpoint("answers", answering_server), endpoint("refused", closed_port),
                                  endpoint("silent", silent_socket)], timeout=1.0)
    assert [(f.name, f.reachable) for f in found] == [("answers", True), ("refused", False), ("silent", False)]
    assert found[0].detail.startswith("answered in ") and "HTTP 401 to a request without a token" in found[0].detail
    assert found[1].detail == "connection refused" and found[2].detail == "no answer within 1 s"


def test_hanging_hubs_are_probed_at_once_so_doctor_waits_one_timeout_not_their_sum(silent_socket):
    started = time.monotonic()
    found = collect_reachability([endpoint("Hugging Face", silent_socket), endpoint("ModelScope", silent_socket)],
                                 timeout=1.5)
    elapsed = time.monotonic() - started
    assert [f.reachable for f in found] == [False, False]
    assert 1.4 < elapsed < 2.5, elapsed  # two probes one after the other would take 3 s


def test_the_endpoints_in_force_follow_hf_endpoint_and_modelscope_endpoint():
    assert [(e.name, e.url) for e in endpoints_in_force({})] == [("Hugging Face", "https://huggingface.co"),
                                                                 ("ModelScope", "https://www.modelscope.cn")]
    moved = endpoints_in_force({"HF_ENDPOINT": "https://hf-mirror.com/", "MODELSCOPE_ENDPOINT": "http://ms.local/"})
    assert [e.url for e in moved] == ["https://hf-mirror.com", "http://ms.local"]


def test_an_unreachable_hub_gets_its_one_line_fix_and_is_never_required():
    network = [Reachability("Hugging Face", "HF_ENDPOINT", "https://huggingface.co", False, "no answer within 3 s"),
               Reachability("ModelScope", "MODELSCOPE_ENDPOINT", "https://www.modelscope.cn", False,
                            "connection refused")]
    checks = doctor_checks(fabricate("cpu"), STORAGE, (True, "ok"), network)
    hf, modelscope = checks[-2:]
    assert (hf.name, hf.ok, hf.required) == ("Hugging Face reachable", False, False)
    assert (modelscope.name, modelscope.ok, modelscope.required) == ("ModelScope reachable", False, False)
    assert not any(c.required and not c.ok for c in checks)  # doctor's exit code stays 0
    text = render(checks, fabricate("cpu"))
    assert ("fix: set HF_ENDPOINT=https://hf-mirror.com for downloads (uploads need huggingface.co: publish with "
            "--hub-provider modelscope)") in text
    assert "fix: check the network or MODELSCOPE_ENDPOINT" in text
    assert "https://huggingface.co: no answer within 3 s" in text

    through_mirror = Reachability("Hugging Face", "HF_ENDPOINT", "https://hf-mirror.com", False, "connection refused")
    (mirror,) = doctor_checks(fabricate("cpu"), STORAGE, (True, "ok"), [through_mirror])[-1:]
    assert mirror.fix == "check the network or HF_ENDPOINT"
    reached = Reachability("Hugging Face", "HF_ENDPOINT", "https://huggingface.co", True, "HTTP 401 in 0.2 s")
    (ok,) = doctor_checks(fabricate("cpu"), STORAGE, (True, "ok"), [reached])[-1:]
    assert ok.ok and "fix:" not in render([ok], fabricate("cpu"))


def test_a_probe_stuck_past_its_timeout_counts_as_no_answer(monkeypatch):
    """A DNS lookup is not bounded by the socket timeout: a probe still running at the deadline is left behind."""
    monkeypatch.setattr(network_checks, "probe", lambda url, timeout: time.sleep(5) or (True, "too late"))
    started = time.monotonic()
    (found,) = collect_reachability([endpoint("Hugging Face", "https://huggingface.co")], timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert (found.reachable, found.detail) == (False, "no answer within 0.5 s")
