"""Shared fixtures: real Chinese text from the embedded demo corpus, a tiny tokenizer trained once
per session, and helpers to run the real command line in a subprocess."""

import atexit
import inspect
import itertools
import locale
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpt2zh.config.schema import DataConfig
from gpt2zh.corpus import CorpusReader
from gpt2zh.corpus.sources import demo_sources
from gpt2zh.hardware.facts import GpuFacts, HardwareFacts

REPO = Path(__file__).resolve().parents[1]
# Corpus digests (pipeline/corpus/digests.py) cached for this session only, never in the user's home, and
# removed when the session ends: a test run leaves nothing in the system's temporary folder.
if "GPT2ZH_CACHE" not in os.environ:
    os.environ["GPT2ZH_CACHE"] = tempfile.mkdtemp(prefix="gpt2zh-digests-")
    atexit.register(shutil.rmtree, os.environ["GPT2ZH_CACHE"], ignore_errors=True)
# Small but real: 3,000 demo documents (~240 k characters) train a 4,000-piece tokenizer in ~0.1 s.
TINY_TOKENIZER = ["--tokenizer-vocab-size", "4000", "--tokenizer-character-coverage", "0.995",
                  "--tokenizer-verify-lines", "400"]


# Fabricated machines for the pure hardware decisions (doctor, plan, presets): the GPUs users train on.
GPUS = {
    "a100-40g": GpuFacts("NVIDIA A100-SXM4-40GB", 39.4, (8, 0)),
    "a100-80g": GpuFacts("NVIDIA A100-SXM4-80GB", 79.2, (8, 0)),
    "rtx4090": GpuFacts("NVIDIA GeForce RTX 4090", 23.6, (8, 9)),
    "rtx5090": GpuFacts("NVIDIA GeForce RTX 5090", 31.4, (12, 0)),
    "t4": GpuFacts("Tesla T4", 14.6, (7, 5)),
    "h100": GpuFacts("NVIDIA H100 80GB HBM3", 79.1, (9, 0)),
}
VERSIONS = {"transformers": "5.23.0", "datasets": "5.2.0"}


def fabricate(device: str, flash: str | None = "2.8.3", count: int = 1) -> HardwareFacts:
    if device == "cpu":
        return HardwareFacts(python_version="3.11.7", cpu_count=2, torch_version="2.13.0", versions=VERSIONS,
                             cxx_compiler=True)
    return HardwareFacts(python_version="3.11.7", cpu_count=16, torch_version="2.13.0", cuda_available=True,
                         cuda_version="12.8", gpus=(GPUS[device],) * count, flash_attn_version=flash,
                         triton_available=True, versions=VERSIONS)


@pytest.fixture(autouse=True)
def _reset_gpt2zh_logger():
    """main() sets propagate=False for its own handler; unit tests read warnings through caplog."""
    logger = logging.getLogger("gpt2zh")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.INFO)
    yield


@pytest.fixture(scope="session")
def demo_documents() -> list[str]:
    """Every cleaned document of the embedded demo corpus, in file order."""
    return [doc.text for doc in CorpusReader(demo_sources(), DataConfig()).documents()]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, demo_documents) -> Path:
    docs = list(demo_documents)
    random.Random(0).shuffle(docs)
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text("\n".join(docs[:3000]) + "\n", encoding="utf-8")
    return path


def one_error_line(stderr: str) -> bool:
    """The error is exactly one line, and the last; a notice (the run's saved settings) or a progress bar
    may come before it."""
    lines = stderr.strip().splitlines()
    return bool(lines) and lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1


def wait_for(predicate, timeout: float = 120) -> None:
    """Poll until predicate() is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


GONE_PID = 2**22 + 1  # above the largest pid Linux hands out (pid_max <= 2**22): never a live process


@pytest.fixture
def live_pid():
    """Another live process, ours to signal: a mutant of pid_alive may send it a real signal."""
    sleeper = subprocess.Popen(["sleep", "300"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


@pytest.fixture
def clock_at_utc_plus_8():
    """Local time 8 hours ahead of UTC (China's), so that a local time written where UTC is meant shows."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "CST-8"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def ascii_locale():
    """A machine whose locale is not UTF-8 (zh_CN.GBK, Latin-1): open() without an encoding writes other
    bytes there, or fails. Python's UTF-8 mode is decided at start-up, so this UTF-8 session switched to the
    C locale (ASCII) stands for one."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    yield
    locale.setlocale(locale.LC_CTYPE, before)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
            executable: list[str] | None = None) -> subprocess.CompletedProcess:
    """The real command line in a fresh interpreter (`python -m gpt2zh ...` unless told otherwise)."""
    full_env = {**os.environ, **(env or {})}
    command = (executable or [sys.executable, "-m", "gpt2zh"]) + list(args)
    return subprocess.run(command, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_corpus) -> Path:
    """A run directory whose stage 1 ran once, through the real CLI, on the small corpus."""
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    result = run_cli("train-tokenizer", "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_TOKENIZER)
    assert result.returncode == 0, result.stderr
    return run_dir


def tree_checksums(folder: Path) -> dict[str, bytes]:
    """Contents of every file under folder, for proving that nothing already written was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# A model small enough to train a dozen steps in a second or two on CPU, on blocks of 64 tokens.
TINY_DATA = [*TINY_TOKENIZER, "--data-block-size", "64", "--model-n-positions", "64"]
TINY_TRAIN = ["--model-n-layer", "2", "--model-n-head", "2", "--model-n-embd", "32",
              "--training-global-batch-size", "4", "--training-per-device-batch-size", "4",
              "--training-max-steps", "12", "--training-eval-steps", "6", "--training-logging-steps", "2",
              "--checkpoint-save-steps", "4", "--checkpoint-save-total-limit", "2", "--training-eval-max-blocks", "8",
              "--training-sample-max-new-tokens", "8", "--optimization-warmup-steps", "2",
              "--training-dataloader-workers", "0"]


@pytest.fixture(scope="session")
def trainable_run(tmp_path_factory, small_corpus) -> Path:
    """Stages 1 and 2 done once on the small corpus with 64-token blocks; tests copy it."""
    run_dir = tmp_path_factory.mktemp("trainable") / "run"
    for stage in ("train-tokenizer", "tokenize"):
        result = run_cli(stage, "--data-files", str(small_corpus), "--run-dir", str(run_dir), *TINY_DATA)
        assert result.returncode == 0, result.stderr
    return run_dir


def pretrain_args(run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--run-dir", str(run_dir), *TINY_DATA, *TINY_TRAIN, *extra]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, trainable_run) -> tuple[Path, subprocess.CompletedProcess]:
    """Stages 1-3 done once: a tiny model trained for 12 steps. Tests that change it copy it first."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    shutil.copytree(trainable_run, run_dir)
    result = run_cli(*pretrain_args(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir, result


def copy_run(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a), "weights differ"


def run_two_processes(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m gpt2zh ...` (gloo on CPU) in its own process group, so that a hang (a rank
    waiting for a collective the other never joins) is killed whole and fails the test."""
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "gpt2zh", *args]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        stdout, stderr = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        pytest.fail("two-process training hung (a rank waited for a collective the other never joined)")
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def _starts_a_child_process(function, seen: set) -> bool:
    """Whether a test (or a helper of the tests it calls) runs the command line or another process."""
    if function in seen:
        return False
    seen.add(function)
    codes = [function.__code__]
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(const for const in code.co_consts if hasattr(const, "co_names"))
    for name in names:
        target = function.__globals__.get(name)
        if target is subprocess or target is run_cli:
            return True
        ours = hasattr(target, "__code__") and getattr(target, "__module__", "").startswith("tests")
        if ours and _starts_a_child_process(target, seen):
            return True
    return False


# Under scripts/mutation.py, mutmut runs every mutant's tests in a new pytest session forked from the one
# that collected its statistics. The session fixtures built there (trained runs: seconds to a minute each)
# are served again instead of rebuilt for each of thousands of mutants, and stay built by the original code.
_MUTATION = bool(os.environ.get("GPT2ZH_MUTATION"))
_FIRST_PROCESS = os.getpid()
_KEPT_FIXTURES: dict[str, object] = {}
_SESSION_NUMBERS = itertools.count()


def _kept(fixturedef) -> bool:
    """One of our session or module fixtures that returns a value (a generator's teardown runs at its end)."""
    return (fixturedef.scope in ("session", "module") and fixturedef.func.__module__.startswith("tests")
            and not inspect.isgeneratorfunction(fixturedef.func))


def _fixture_key(fixturedef) -> str:
    return f"{fixturedef.func.__module__}.{fixturedef.func.__qualname__}"


class _KeptFixtures:
    """A plugin, not conftest hooks: pytest asks a session fixture's hooks of the session, above tests/."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef, request):
        if _kept(fixturedef) and _fixture_key(fixturedef) in _KEPT_FIXTURES:
            result = _KEPT_FIXTURES[_fixture_key(fixturedef)]
            fixturedef.cached_result = (result, fixturedef.cache_key(request), None)
            return result
        return None  # pytest builds it

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_setup(self, item):
        """Remember the fixtures a test's setup built, for the sessions forked after this one."""
        yield
        for definitions in item._fixtureinfo.name2fixturedefs.values():
            for fixturedef in definitions:
                if _kept(fixturedef) and fixturedef.cached_result is not None and fixturedef.cached_result[2] is None:
                    _KEPT_FIXTURES.setdefault(_fixture_key(fixturedef), fixturedef.cached_result[0])


def pytest_configure(config):
    """Under mutation, each session has a temporary folder of its own: the first one's holds the kept
    fixtures, which a later session's clean-up of old folders must not remove; a forked one removes its own."""
    if not _MUTATION:
        return
    config.pluginmanager.register(_KeptFixtures(), "gpt2zh-kept-fixtures")
    if config.option.basetemp is None:
        sessions = Path(tempfile.gettempdir()) / f"gpt2zh-mutation-{_FIRST_PROCESS}"
        sessions.mkdir(exist_ok=True)
        # pytest empties an explicit basetemp when a session starts, and mutmut runs several in one process
        config.option.basetemp = str(sessions / f"session-{os.getpid()}-{next(_SESSION_NUMBERS)}")


def pytest_unconfigure(config):
    if _MUTATION and os.getpid() != _FIRST_PROCESS:
        shutil.rmtree(config.option.basetemp, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Under scripts/mutation.py, only the tests that run our code in the test process judge the mutants:
    mutmut cannot see which functions a child process reaches, so those tests would only cost time."""
    if not _MUTATION:
        return
    kept, deselected = [], []
    for item in items:
        starts = _starts_a_child_process(getattr(item, "function", lambda: None), set())
        (deselected if starts else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
