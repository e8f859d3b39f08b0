#!/usr/bin/env python3
"""Mutation testing of the modules that make decisions, with mutmut 3, scored per area.

mutmut rewrites each function of the chosen modules into a trampoline that calls the original or one
of its mutants (a flipped comparison, an off-by-one, a dropped argument, a changed string ...), records
which tests reach which function, then for every mutant forks a warm interpreter and runs only those
tests. A mutant is killed when one of them fails. The repository keeps pipeline/ and tokenizer/ under
other names than the import name gpt2zh, so the run works in a staged copy laid out as the installed
package is (build/mutation/gpt2zh/...), where mutmut's file paths and the module names agree.

    scripts/mutation.py                  every area, one after another (README: Mutation testing says how long)
    scripts/mutation.py --area hub       one area
    scripts/mutation.py --missed         try the missed mutants again (after writing tests for them)
    scripts/mutation.py --sample         the fixed quick sample CI runs
    scripts/mutation.py --report         score the last runs again (after editing the equivalents file)

Each area runs in a folder of its own (build/mutation/<area>) and keeps its verdicts between runs: mutmut
decides again only the mutants of functions that changed, and maps new tests to functions as it finds them.
--fresh starts an area over.

A surviving mutant gets a test, or a line in tests/equivalent_mutants.toml saying why no test can
tell it from the original (its key, the mutated line as `mutmut show` prints it, and the reason).
The run fails when an area scores under 85 % of its non-equivalent mutants, or when an equivalent's
line no longer matches its mutant (the code changed: review it again).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from check_guards import package_folders  # scripts/ is on the path of a script run from it

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "build" / "mutation"
SAMPLE_STAGE = REPO / "build" / "mutation-sample"
EQUIVALENTS = REPO / "tests" / "equivalent_mutants.toml"
RECORDED = REPO / "tests" / "mutation_scores.toml"
GOAL = 0.85
# A mutant's tests that time out on a loaded machine count as caught, on an idle one they may not: a
# sample module may score this much below its record before CI fails.
SAMPLE_SLACK = 0.02

# The modules that make decisions, by area (paths inside the gpt2zh package).
AREAS: dict[str, list[str]] = {
    "corpus": ["corpus/formats.py", "corpus/json_array.py", "corpus/blank_lines.py", "corpus/compression.py",
               "corpus/hub_files.py", "corpus/normalization.py", "corpus/cleaning.py", "corpus/digests.py",
               "corpus/encoding.py"],
    "run directory": ["rundir.py", "run_settings.py", "preflight.py", "fingerprints.py", "runlock.py"],
    "training": ["training/plan.py", "training/batch_fit.py", "training/memory_model.py", "training/schedule.py",
                 "training/continuation.py", "training/checkpoints.py", "training/guards.py"],
    "hub": ["remote/upload.py", "remote/checkpoints.py", "hub/card.py"],
    "inference": ["inference/documents.py", "inference/scoring.py", "inference/generate_command.py"],
}
# What CI runs: one small module of each area, a few minutes on 2 cores.
SAMPLE = ["corpus/json_array.py", "fingerprints.py", "training/batch_fit.py", "remote/upload.py",
          "inference/documents.py"]
# The test files that reach the sample's modules (a whole run lets mutmut find them in every file).
SAMPLE_TESTS = ["test_corpus_layouts.py", "test_corpus_reading.py", "test_run_settings.py", "test_manifests.py",
                "test_fingerprints.py", "test_training_plan.py", "test_memory_model.py", "test_hub.py",
                "test_evaluate.py"]

# Tests that read the repository's own files (layout, docs, guard proofs, packaging) rather than run
# its code: in the staged copy they would fail or only slow every mutant down.
NOT_BEHAVIOUR_TESTS = ["test_architecture_doc.py", "test_check_guards.py", "test_code_shape.py",
                       "test_layers.py", "test_mutation_script.py", "test_packaging.py", "test_pitfall_rows.py",
                       "test_repository_references.py", "test_setup_script.py", "test_suite_hygiene.py"]
# In-process runs of whole stages reach nearly every function and cost seconds for each mutant they reach:
# mutants are judged by the tests of the modules themselves, where a mistake should be caught first.
STAGE_RUN_TESTS = ["test_faults.py", "test_stage_checks.py", "test_stage_dataset.py", "test_stage_pretrain.py",
                   "test_stage_tokenizer.py"]
# bitsandbytes' 8-bit step fails in a forked child (mutmut runs every mutant in one); the probe these test is
# in no mutated module.
FORK_UNSAFE = ["--deselect", "tests/test_doctor.py::test_8bit_adam_probe_takes_a_real_step_on_cpu",
               "--deselect", "tests/test_stage_pretrain.py::test_8bit_adam_trains_for_real_when_the_probe_passes"]
# The wording of progress and summary lines is not mutated (their figures are computed, and mutated, in the
# code that feeds them); warnings and errors are.
DO_NOT_MUTATE = [r"^\s*log\.(info|debug)\("]
# A mutant is caught when a test fails, hangs past its timeout, or crashes the interpreter.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass
class Score:
    caught: int = 0
    missed: list[str] = field(default_factory=list)
    equivalent: int = 0
    not_run: int = 0  # a run stopped early (Ctrl-C) leaves mutants unchecked: they are not scored

    @property
    def counted(self) -> int:
        return self.caught + len(self.missed)

    @property
    def ratio(self) -> float:
        return self.caught / self.counted if self.counted else 1.0


def stage_of(area: str) -> Path:
    return STAGES / area.replace(" ", "-")


def stage(folder: Path, modules: list[str], test_files: list[str] | None, fresh: bool) -> None:
    """A copy laid out as the installed package, its mutmut configuration, and the verdicts of the last run.

    Only mutmut's verdicts (mutants/**/*.meta) and its map of tests to functions (mutmut-stats.json) are
    kept: mutmut regenerates the mutants and keeps a verdict while its function's hash is unchanged.
    """
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.name != "mutants":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted((folder / "mutants").rglob("*"), reverse=True):
        if path.is_file() and path.suffix != ".meta" and path.name != "mutmut-stats.json":
            path.unlink()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, source in sorted(package_folders(REPO).items()):
        shutil.copytree(source, folder / name.replace(".", "/"), ignore=ignore, dirs_exist_ok=True)
    for extra in ["tests", "configs", "scripts"]:
        shutil.copytree(REPO / extra, folder / extra, ignore=ignore)
    for extra in ["README.md", "PITFALLS.md"]:
        shutil.copy2(REPO / extra, folder / extra)
    # The selection stays the same when test files are added (a changed selection makes mutmut start over).
    left_out = [] if test_files else [arg for name in NOT_BEHAVIOUR_TESTS + STAGE_RUN_TESTS
                                      for arg in ("--ignore", f"tests/{name}")]
    mutmut = {
        "source_paths": ["gpt2zh"],
        "only_mutate": [f"gpt2zh/{module}" for module in modules],
        "do_not_mutate_patterns": DO_NOT_MUTATE,
        "also_copy": ["configs", "scripts", "README.md", "PITFALLS.md"],
        "pytest_add_cli_args_test_selection": sorted(f"tests/{name}" for name in test_files or []) or ["tests"],
        # End-to-end runs cost seconds to a minute each, for every mutant they reach.
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not slow", *left_out, *FORK_UNSAFE],
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in mutmut.items()]
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(pyproject + "\n".join(lines) + "\n", encoding="utf-8")


def mutmut(folder: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mutmut", *args]
    # GPT2ZH_MUTATION: tests/conftest.py leaves out the tests that run the command line in a child process
    # One thread a worker: GNU OpenMP's pool does not survive the fork of each mutant's worker, and mutmut
    # runs --jobs workers at once anyway. Temporary folders stay inside the staged copy.
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "GPT2ZH_MUTATION": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TMPDIR": str(folder / "tmp")}
    env.pop("GPT2ZH_CACHE", None)
    return subprocess.run(command, cwd=folder, env=env, text=True, capture_output=capture, check=False)


def statuses(folder: Path) -> dict[str, str]:
    """Each mutant's status from a staged run: `mutmut results --all true` prints `key: status`."""
    if not (folder / "mutants").is_dir():
        return {}
    result = mutmut(folder, "results", "--all", "true", capture=True)
    return dict(re.findall(r"^\s*(\S+__mutmut_\d+): (.+?)\s*$", result.stdout, flags=re.MULTILINE))


def module_of(key: str) -> str:
    """`gpt2zh.corpus.formats.x_read__mutmut_3` -> `corpus/formats.py`."""
    return key.split(".x_")[0].split(".xǁ")[0].removeprefix("gpt2zh.").replace(".", "/") + ".py"


def area_of(key: str) -> str:
    return area_of_module(module_of(key))


def area_of_module(path: str) -> str:
    return next((area for area, modules in AREAS.items() if path in modules), "other")


def mutated_line(folder: Path, key: str) -> str:
    """The first added line of `mutmut show KEY`: what an equivalent records to be found again."""
    shown = mutmut(folder, "show", key, capture=True).stdout
    return next((line[1:].strip() for line in shown.splitlines() if line.startswith("+") and not
                 line.startswith("+++")), "")


def load_equivalents() -> dict[str, dict]:
    if not EQUIVALENTS.exists():
        return {}
    return tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8")).get("mutant", {})


def score(found: dict[str, tuple[Path, str]]) -> tuple[dict[str, Score], list[str]]:
    """Each module's score, and the equivalents whose mutant changed since they were reviewed."""
    equivalents = load_equivalents()
    scores: dict[str, Score] = {}
    stale = []
    for key, (folder, status) in sorted(found.items()):
        module = scores.setdefault(module_of(key), Score())
        if status == "not checked":
            module.not_run += 1
        elif status in CAUGHT:
            module.caught += 1
        elif key in equivalents:
            if mutated_line(folder, key) != equivalents[key]["line"].strip():
                stale.append(f"{key}: its mutated line is no longer `{equivalents[key]['line']}`: review it again")
                module.missed.append(key)
            else:
                module.equivalent += 1
        else:
            module.missed.append(key)
    return scores, stale


def by_area(modules: dict[str, Score]) -> dict[str, Score]:
    areas: dict[str, Score] = {}
    for path, s in modules.items():
        area = areas.setdefault(area_of_module(path), Score())
        area.caught += s.caught
        area.equivalent += s.equivalent
        area.not_run += s.not_run
        area.missed += s.missed
    return areas


def recorded_scores() -> dict[str, float]:
    if not RECORDED.exists():
        return {}
    return {path: entry["score"] for path, entry in tomllib.loads(RECORDED.read_text(encoding="utf-8")).items()}


def record(modules: dict[str, Score]) -> None:
    """Each module's score, beside the recorded scores of the modules this run left out."""
    kept = tomllib.loads(RECORDED.read_text(encoding="utf-8")) if RECORDED.exists() else {}
    entries = {**kept, **{path: {"caught": s.caught, "counted": s.counted, "score": round(s.ratio, 3)}
                          for path, s in modules.items()}}
    lines = ["# Each module's mutation score in the last run of scripts/mutation.py --record (caught of the",
             "# non-equivalent mutants). CI's sample fails when a module of it scores lower than here."]
    for path, entry in sorted(entries.items()):
        lines += ["", f'["{path}"]', f"caught = {entry['caught']}", f"counted = {entry['counted']}",
                  f"score = {entry['score']:.3f}"]
    RECORDED.write_text("\n".join(lines) + "\n", encoding="utf-8")


def table(title: str, scores: dict[str, Score]) -> None:
    print(f"\n{title:<32}{'mutants':>9}{'caught':>8}{'equivalent':>12}{'missed':>8}{'not run':>9}{'score':>8}")
    for name, s in scores.items():
        print(f"{name:<32}{s.counted + s.equivalent + s.not_run:>9}{s.caught:>8}{s.equivalent:>12}"
              f"{len(s.missed):>8}{s.not_run:>9}{f'{s.ratio:.1%}' if s.counted else '-':>8}")


def report(modules: dict[str, Score], stale: list[str], show: int, sample: bool) -> bool:
    """The full run passes when every area reaches the goal; the sample, when no module fell below its record."""
    areas = by_area(modules)
    table("area", areas)
    table("module", modules)
    for path, s in modules.items():
        for key in s.missed[:show]:
            print(f"  missed ({path}): {key}")
    for line in stale:
        print(f"  stale equivalent: {line}")
    if sample:
        recorded = recorded_scores()
        fell = [f"{path} {s.ratio:.1%} < {recorded[path]:.1%}" for path, s in modules.items()
                if s.ratio < min(GOAL, recorded.get(path, 0.0) - SAMPLE_SLACK)]
        passed = not stale and not fell
        print(f"\n{'PASSED' if passed else 'FAILED'}: no module of the sample below its recorded score"
              f"{': ' + '; '.join(fell) if fell else ''}")
        return passed
    unchecked = [area for area, s in areas.items() if s.not_run]
    passed = not stale and not unchecked and all(s.ratio >= GOAL for s in areas.values())
    print(f"\n{'PASSED' if passed else 'FAILED'}: goal {GOAL:.0%} of the non-equivalent mutants of each area "
          f"caught{' (not every mutant checked: ' + ', '.join(unchecked) + ')' if unchecked else ''} "
          f"(`cd {STAGES.relative_to(REPO)}/<area> && mutmut show KEY` shows a mutant)")
    return passed


def missed(folder: Path) -> list[str]:
    """The mutants of a staged run that no test caught and nobody found equivalent."""
    equivalents = load_equivalents()
    return [key for key, status in statuses(folder).items()
            if status not in CAUGHT and status != "not checked" and key not in equivalents]


def run(folder: Path, modules: list[str], test_files: list[str] | None, args: argparse.Namespace) -> int:
    start = time.monotonic()
    again = missed(folder) if args.missed else []
    stage(folder, modules, test_files, args.fresh)
    what = f"{len(again)} missed mutants again" if args.missed else "mutmut"
    print(f"mutation: {len(modules)} modules staged in {folder.relative_to(REPO)}; running {what} ...", flush=True)
    if args.missed and not again:
        return 0
    result = mutmut(folder, "run", "--max-children", str(args.jobs), *again)
    if result.returncode != 0:
        print(f"mutation: mutmut stopped with exit code {result.returncode}", file=sys.stderr)
        return result.returncode
    print(f"mutation: {folder.relative_to(REPO)} ran in {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--area", choices=list(AREAS), action="append", help="only this area (repeatable)")
    choice.add_argument("--sample", action="store_true", help="the quick fixed sample CI runs")
    choice.add_argument("--report", action="store_true", help="score the last runs again, without running")
    parser.add_argument("--missed", action="store_true", help="run only the mutants the last run missed")
    parser.add_argument("--fresh", action="store_true", help="forget the verdicts of earlier runs")
    parser.add_argument("--record", action="store_true", help=f"write each module's score to {RECORDED.name}")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument("--show", type=int, default=20, help="missed mutants listed per module")
    args = parser.parse_args(argv)
    # The sample has a folder of its own: CI's sample never replaces the verdicts of a full run.
    runs = ([(SAMPLE_STAGE, SAMPLE, SAMPLE_TESTS)] if args.sample else
            [(stage_of(area), AREAS[area], None) for area in (args.area or AREAS)])
    if not args.report:
        for folder, modules, test_files in runs:
            if code := run(folder, modules, test_files, args):
                return code
    found = {key: (folder, status) for folder, _, _ in runs for key, status in statuses(folder).items()}
    if not found:
        sys.exit(f"mutation: no results in {STAGES.relative_to(REPO)}: run scripts/mutation.py first")
    modules, stale = score(found)
    if args.record:
        record(modules)
        print(f"mutation: scores recorded in {RECORDED.relative_to(REPO)}")
    return 0 if report(modules, stale, args.show, args.sample) else 1


if __name__ == "__main__":
    sys.exit(main())
