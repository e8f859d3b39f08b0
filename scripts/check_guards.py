#!/usr/bin/env python3
"""Prove that every guard in PITFALLS.md is held by its tests: break the guard, the tests must fail.

For each sabotage in scripts/guard_sabotages.toml (one or more per PITFALLS.md row that names a guard
as `file:function`), in a fresh temporary copy of the repository: replace the sabotage's exact `old`
text (it must occur exactly once, inside the function it names) with `new`, run the row's tests there
with this interpreter, and expect them to fail. One line per sabotage, then `N of M guards proven`.
Exit 1 if a sabotage no longer applies, a guard row has no sabotage, a sabotage's row is gone, a row
names a test or guard that does not exist, or any row's tests still pass with its guard broken.
First the selected tests run once in an unsabotaged copy: a test that fails there proves nothing and
is left out of every row (--no-baseline skips that run, e.g. right after the suite passed).

    .venv/bin/python scripts/check_guards.py            # every sabotage (tens of minutes on 2 cores)
    .venv/bin/python scripts/check_guards.py --fast     # those marked fast = true (for CI)
    .venv/bin/python scripts/check_guards.py --list     # consistency only, no tests (a second)
    .venv/bin/python scripts/check_guards.py --only G5 --only 'PT*' -j 2 -v

A sabotage names its row by the row's stable id (`row = "G10"`, the ID cell of PITFALLS.md), and its
key starts with that id (`G10`, `G10-inflight`), so edits to other rows never move a sabotage. Every
table row of PITFALLS.md must have an id of one or two capital letters and a number, used once. The
diagnose table (D1-D11) has no Status column and names checks, not guards; it is not covered here.
"""

import argparse
import ast
import contextlib
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        sys.exit("check_guards.py reads TOML: use Python 3.11+, or `pip install tomli` on 3.10")

REPO = Path(__file__).resolve().parents[1]
PITFALLS = REPO / "PITFALLS.md"
SABOTAGES = Path(__file__).resolve().with_name("guard_sabotages.toml")
# Never copied: the environment (the copy runs with this interpreter), history and build outputs.
NOT_COPIED = {".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
GUARD = re.compile(r"[\w./-]+\.(?:py|sh):[A-Za-z_][\w.]*")  # a Python definition or a shell function
TEST_REF = re.compile(r"(tests/[\w/]+\.py)(?:::([\w\[\]\-.]+))?|::([\w\[\]\-]+)")
SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)
ROW_ID = re.compile(r"[A-Z]{1,2}[1-9][0-9]*")  # the ID cell of a PITFALLS.md row: G10, TK3, D12


@dataclass
class Row:
    section: str
    id: str  # the ID cell: G10, TK3
    symptom: str
    guard: str
    tests: list[str]
    status: str
    line: int

    @property
    def label(self) -> str:
        return f"{self.id} {self.symptom[:50]!r} (PITFALLS.md line {self.line})"

    @property
    def names_guard(self) -> bool:
        return self.status.strip().lower() == "done" and bool(GUARD.search(self.guard))


@dataclass
class Sabotage:
    key: str
    row_id: str  # the id of its PITFALLS.md row
    file: str
    function: str
    breaks: str  # words of the row's Guard cell this sabotage makes false
    old: str
    new: str
    tests: list[str]
    fast: bool
    why: str
    row: Row | None = None

    @property
    def run_tests(self) -> list[str]:
        return self.tests or (self.row.tests if self.row else [])


@dataclass
class Outcome:
    sabotage: Sabotage
    verdict: str  # proven | NOT PROVEN | ERROR
    detail: str
    seconds: float
    output: str = ""


# ---------------------------------------------------------------------------------------- PITFALLS.md
def split_cells(line: str) -> list[str]:
    """Cells of a table line; a `|` inside backticks (`<|endoftext|>`) does not end a cell."""
    cells, current, in_code = [], [], False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    cells.append("".join(current).strip())
    return cells


def named_tests(cell: str) -> list[str]:
    """`tests/a.py::t1`, `::t2`, `tests/b.py` -> [tests/a.py::t1, tests/a.py::t2, tests/b.py]."""
    refs, current_file = [], None
    for match in TEST_REF.finditer(cell):
        path, name, continued = match.groups()
        if path:
            current_file = path
            refs.append(f"{path}::{name}" if name else path)
        elif current_file:
            refs.append(f"{current_file}::{continued}")
    return list(dict.fromkeys(refs))


def table_rows(path: Path):
    """(line number, section heading, header, cells) of every table row of PITFALLS.md; a table whose
    first column is not `ID` is an error."""
    section, header = "", None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("#"):
            section, header = line.lstrip("#").strip(), None
            continue
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = split_cells(line)
        if header is None:
            header = [cell.lower() for cell in cells]
            if header[0] != "id":
                raise SystemExit(f"{path.name} line {number}: a table whose first column is not ID "
                                 f"(every row has a stable id; see the top of {path.name})")
            continue
        if all(set(cell) <= set("-: ") for cell in cells):
            continue  # the |---|---| line
        if len(cells) != len(header):
            # An odd backtick made the cell split unreliable; cells are also always " | "-separated.
            cells = [c.strip() for c in re.split(r"(?<=\s)\|(?=\s)", line.strip().strip("|"))]
        if len(cells) != len(header):
            raise SystemExit(f"{path.name} line {number}: {len(cells)} cells where the header has {len(header)}")
        yield number, section, header, cells


def parse_pitfalls(path: Path) -> list[Row]:
    """The rows of the tables that have Guard and Status columns (the diagnose table has neither)."""
    rows = []
    for number, section, header, cells in table_rows(path):
        if "guard" not in header or "status" not in header:
            continue
        cell = dict(zip(header, cells, strict=True))
        rows.append(Row(section=section, id=cell["id"], symptom=cell["symptom"], guard=cell["guard"],
                        tests=named_tests(cell.get("test", "")), status=cell["status"], line=number))
    return rows


def id_problems(path: Path) -> list[str]:
    """Ids of every table row (the diagnose table's too) that are malformed or used twice."""
    problems, first_seen = [], {}
    for number, _, _, cells in table_rows(path):
        row_id = cells[0]
        if not ROW_ID.fullmatch(row_id):
            problems.append(f"{path.name} line {number}: row id {row_id!r} is not one or two capital letters "
                            f"and a number (G10)")
        elif row_id in first_seen:
            problems.append(f"{path.name} line {number}: row id {row_id} is already used on line "
                            f"{first_seen[row_id]}")
        else:
            first_seen[row_id] = number
    return problems


def missing_guards(row: Row, repo: Path) -> list[str]:
    """`file:function` references of a row's Guard cell whose file or definition does not exist."""
    missing = []
    for ref in GUARD.findall(row.guard):
        path, _, name = ref.partition(":")
        file = repo / path
        if not file.is_file() or (file.suffix in (".py", ".sh")
                                  and function_lines(file, file.read_text(encoding="utf-8"), name.rstrip(".")) is None):
            missing.append(ref)
    return missing


def missing_tests(row: Row, repo: Path) -> list[str]:
    """Test references of a row whose file or top-level function does not exist (checked statically)."""
    missing = []
    for ref in row.tests:
        path, _, name = ref.partition("::")
        file = repo / path
        if not file.is_file():
            missing.append(ref)
            continue
        if name:
            defined = {node.name for node in ast.parse(file.read_text(encoding="utf-8")).body
                       if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
            if name.split("[")[0] not in defined:
                missing.append(ref)
    return missing


# -------------------------------------------------------------------------------------------- sabotages
def load_sabotages(path: Path) -> list[Sabotage]:
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("sabotage", [])
    sabotages, seen = [], set()
    for index, entry in enumerate(entries):
        key = entry.get("key") or f"#{index + 1}"
        required = ("key", "row", "file", "function", "old", "new", "fast")
        absent = [name for name in required if name not in entry]
        outdated = [name for name in ("section", "number", "symptom") if name in entry]
        if outdated:
            raise SystemExit(f"{path.name}: sabotage {key} names its row by {', '.join(outdated)}; name it by "
                             f"its PITFALLS.md id instead: row = \"G10\"")
        if absent:
            raise SystemExit(f"{path.name}: sabotage {key} lacks {', '.join(absent)}")
        if key in seen:
            raise SystemExit(f"{path.name}: key {key} is used twice")
        seen.add(key)
        sabotages.append(Sabotage(key=key, row_id=str(entry["row"]), file=entry["file"],
                                  function=entry["function"],
                                  breaks=entry.get("breaks") or entry["function"].split(".")[-1],
                                  old=entry["old"], new=entry["new"],
                                  tests=list(entry.get("tests", [])), fast=bool(entry["fast"]),
                                  why=entry.get("why", "")))
    return sabotages


def find_row(sabotage: Sabotage, rows: list[Row]) -> tuple[Row | None, str]:
    found = [row for row in rows if row.id == sabotage.row_id]
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, f"{sabotage.key}: its row no longer exists (row {sabotage.row_id} of PITFALLS.md)"
    return None, f"{sabotage.key}: row {sabotage.row_id} is the id of {len(found)} rows of PITFALLS.md"


def definition_lines(source: str, dotted: str) -> tuple[int, int] | None:
    """First and last line of `Class.method`, `function` or a module-level `NAME = ...`."""
    def names(node) -> set:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            return {getattr(target, "id", None) for target in getattr(node, "targets", [getattr(node, "target", None)])}
        return {getattr(node, "name", None)}

    body = ast.parse(source).body
    node = None
    for part in dotted.split("."):
        node = next((n for n in body if part in names(n)), None)
        if node is None:
            return None
        body = getattr(node, "body", [])
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno


def shell_function_lines(source: str, name: str) -> tuple[int, int] | None:
    """First and last line of the shell function `name() {` (or `function name {`): the line that starts
    it, to the first `}` alone on a line, or that line alone when its braces close on it."""
    lines = source.splitlines()
    start = re.compile(rf"\s*(?:function\s+)?{re.escape(name)}\s*(?:\(\s*\))?\s*\{{")
    first = next((number for number, line in enumerate(lines) if start.match(line)), None)
    if first is None:
        return None
    if lines[first].count("{") <= lines[first].count("}"):
        return first + 1, first + 1
    last = next((number for number in range(first + 1, len(lines)) if lines[number].rstrip() == "}"), None)
    return None if last is None else (first + 1, last + 1)


def function_lines(file: Path, source: str, name: str) -> tuple[int, int] | None:
    """First and last line of the definition `name` in a Python file or a shell script."""
    return shell_function_lines(source, name) if file.suffix == ".sh" else definition_lines(source, name)


def applies(sabotage: Sabotage, repo: Path) -> str:
    """'' when the sabotage applies to repo as it is now, else why not."""
    file = repo / sabotage.file
    if not file.is_file():
        return f"{sabotage.key}: no longer applies: {sabotage.file} does not exist"
    source = file.read_text(encoding="utf-8")
    count = source.count(sabotage.old)
    if count != 1:
        return f"{sabotage.key}: no longer applies: the old text occurs {count} times in {sabotage.file} (needs 1)"
    if sabotage.old == sabotage.new:
        return f"{sabotage.key}: old and new text are the same"
    if sabotage.function and file.suffix in (".py", ".sh"):
        span = function_lines(file, source, sabotage.function)
        if span is None:
            return f"{sabotage.key}: no longer applies: {sabotage.function} is not defined in {sabotage.file}"
        start = source[:source.index(sabotage.old)].count("\n") + 1
        end = start + sabotage.old.count("\n")
        if not (span[0] <= start and end <= span[1]):
            return (f"{sabotage.key}: no longer applies: the old text (lines {start}-{end}) is outside "
                    f"{sabotage.function} (lines {span[0]}-{span[1]}) in {sabotage.file}")
    return ""


def consistency(rows: list[Row], sabotages: list[Sabotage], repo: Path) -> list[str]:
    problems = []
    for sabotage in sabotages:
        if not (sabotage.key == sabotage.row_id or sabotage.key.startswith(sabotage.row_id + "-")):
            problems.append(f"{sabotage.key}: its key does not start with its row's id "
                            f"({sabotage.row_id}, or {sabotage.row_id}-<what it breaks>)")
        sabotage.row, problem = find_row(sabotage, rows)
        problems += [problem] if problem else []
        if sabotage.row is None:
            continue
        if sabotage.breaks not in sabotage.row.guard:
            problems.append(f"{sabotage.key}: breaks {sabotage.breaks!r}, which its row's Guard cell does not name")
        unknown = [t for t in sabotage.tests if t not in sabotage.row.tests]
        if unknown:
            problems.append(f"{sabotage.key}: runs {', '.join(unknown)}, which its row does not name")
        if not sabotage.run_tests:
            problems.append(f"{sabotage.key}: its row names no tests/file.py test to run")
        problem = applies(sabotage, repo)
        problems += [problem] if problem else []
    covered = {id(s.row) for s in sabotages if s.row is not None}
    for row in rows:
        if row.names_guard and id(row) not in covered:
            problems.append(f"row {row.label} names a guard but has no sabotage")
        if row.status.strip().lower().startswith("planned"):
            continue  # its guard and test come with a later issue
        missing = missing_tests(row, repo)
        if missing:
            problems.append(f"row {row.label} names tests that do not exist: {', '.join(missing)}")
        gone = missing_guards(row, repo)
        if gone:
            problems.append(f"row {row.label} names guards that do not exist: {', '.join(gone)}")
    return problems


def unguarded_rows(rows: list[Row]) -> list[Row]:
    """Rows marked done whose Guard cell names no `file:function` (a sabotage is optional for them)."""
    return [row for row in rows if row.status.strip().lower() == "done" and not row.names_guard]


# ------------------------------------------------------------------------------------------- running
def copy_repository(repo: Path, target: Path) -> None:
    """Tracked and untracked-but-not-ignored files as they are in the working tree now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in dict.fromkeys(filter(None, listed.stdout.split("\0"))):
            source = repo / name
            if source.is_file() and not NOT_COPIED & set(Path(name).parts):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
    else:  # not a git checkout
        shutil.copytree(repo, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*NOT_COPIED))


# Imported first by every interpreter the copy's tests start (PYTHONPATH, then site): the copy's folders
# under the import names pyproject.toml's package-dir gives them, ahead of the editable install of the
# original (whose finder sits at the end of sys.meta_path).
IMPORT_HOOK = """import importlib.util, sys
MAPPING = {mapping!r}
class CopyFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        folder = MAPPING.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(name, folder + "/__init__.py",
                                                      submodule_search_locations=[folder])
sys.meta_path.insert(0, CopyFinder)
"""


def package_folders(copy: Path) -> dict[str, str]:
    """Import name -> the copy's folder, from pyproject.toml's [tool.setuptools] package-dir."""
    pyproject = copy / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    folders = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("setuptools", {})
    return {name: str(copy / folder) for name, folder in folders.get("package-dir", {}).items()}


def copy_environment(copy: Path) -> dict[str, str]:
    """The copy's own packages first: PYTHONPATH names the copy (packages at its top) and a sitecustomize
    that maps the copy's package-dir folders to their import names."""
    hook = copy.parent / "import-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(IMPORT_HOOK.format(mapping=package_folders(copy)), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(hook), str(copy), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def verify_imports(copy: Path, env: dict[str, str]) -> str:
    names = list(package_folders(copy)) or ["pipeline"]
    probe = f"import importlib\nfor name in {names!r}: print(importlib.import_module(name).__file__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=copy, env=env, capture_output=True, text=True)
    paths = result.stdout.split()
    if result.returncode != 0 or len(paths) != len(names) or not all(Path(p).is_relative_to(copy) for p in paths):
        return f"the copy does not import its own packages: {result.stdout.strip() or result.stderr.strip()}"
    return ""


_running: set[subprocess.Popen] = set()  # pytest runs in flight, each in its own process group


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # pytest and the stages, trainings and servers it started


def run_pytest(copy: Path, env: dict[str, str], arguments: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit status or None after the timeout, output)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments]
    process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    _running.add(process)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        _kill(process)
        return None, process.communicate()[0]
    finally:
        _running.discard(process)


def covers(reference: str, node: str) -> bool:
    """Whether the test reference (a file, a test, a parametrised test) selects the node id."""
    return node == reference or node.startswith(reference + ("::" if "::" not in reference else "["))


def baseline_failures(sabotages: list[Sabotage], repo: Path, timeout: float) -> tuple[set[str], str]:
    """Node ids that fail in an unsabotaged copy: a test that fails anyway proves nothing."""
    absent = {ref for s in sabotages if s.row is not None for ref in missing_tests(s.row, repo)}
    references = [ref for ref in dict.fromkeys(ref for s in sabotages for ref in s.run_tests) if ref not in absent]
    if not references:
        return set(), ""
    with tempfile.TemporaryDirectory(prefix="gpt2zh-guard-baseline-") as folder:
        copy = Path(folder) / "repo"
        copy_repository(repo, copy)
        env = copy_environment(copy)
        problem = verify_imports(copy, env)
        if problem:
            raise SystemExit(f"error: {problem}")
        code, output = run_pytest(copy, env, references, timeout)
    if code is None:
        raise SystemExit(f"error: the unsabotaged tests ran past {timeout:.0f} s")
    if code not in (0, 1):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SystemExit(f"error: the unsabotaged tests could not run (pytest exit {code}):\n{tail}")
    return {node for _, node in SUMMARY.findall(output)}, output


def prove(sabotage: Sabotage, repo: Path, timeout: float, failing_anyway: set[str]) -> Outcome:
    started = time.monotonic()
    left_out = sorted(n for n in failing_anyway if any(covers(ref, n) for ref in sabotage.run_tests))
    note = f"; {len(left_out)} test(s) that fail without the sabotage left out" if left_out else ""
    with tempfile.TemporaryDirectory(prefix=f"gpt2zh-guard-{sabotage.key}-") as folder:
        copy = Path(folder) / "repo"
        copy_repository(repo, copy)
        env = copy_environment(copy)

        def outcome(verdict: str, detail: str, output: str = "") -> Outcome:
            return Outcome(sabotage, verdict, detail + note, time.monotonic() - started, output)

        problem = applies(sabotage, copy) or verify_imports(copy, env)
        if problem:
            return outcome("ERROR", problem)
        target = copy / sabotage.file
        target.write_text(target.read_text(encoding="utf-8").replace(sabotage.old, sabotage.new), encoding="utf-8")
        deselected = [argument for node in left_out for argument in ("--deselect", node)]
        code, output = run_pytest(copy, env, ["-x", *deselected, *sabotage.run_tests], timeout)
    flagged = SUMMARY.findall(output)
    failed = [node for kind, node in flagged if kind == "FAILED"]
    errored = [node for kind, node in flagged if kind == "ERROR"]
    if code is None:
        return outcome("NOT PROVEN", f"tests ran past {timeout:.0f} s", output)
    if code == 0:
        return outcome("NOT PROVEN", f"{len(sabotage.run_tests)} test reference(s) still pass", output)
    if code == 1 and failed:
        return outcome("proven", f"{failed[0]} failed", output)
    if code == 1 and errored:
        return outcome("proven", f"{errored[0]} errored in its setup", output)
    if code == 5:
        return outcome("ERROR", "no test left to run: not proven", output)
    if code == 4 and "ERROR: not found" in output:
        return outcome("ERROR", "a test it runs does not exist: not proven", output)
    if code == 2 and "error during collection" in output:
        return outcome("ERROR", "collection failed (the sabotage or a test does not import): not proven", output)
    return outcome("ERROR", f"pytest exited with {code}: not proven", output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="only sabotages marked fast = true")
    parser.add_argument("--only", action="append", default=[], metavar="KEY",
                        help="only this key (a glob such as 'G10*'); repeatable")
    parser.add_argument("--list", action="store_true",
                        help="check that every sabotage applies and every guard row is covered; run no tests")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="sabotaged copies tested at once (default 1)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the first run of the selected tests without any sabotage")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output for unproven rows")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one pytest run (default 1800)")
    parser.add_argument("--pitfalls", type=Path, default=PITFALLS)
    parser.add_argument("--sabotages", type=Path, default=SABOTAGES)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args(argv)
    repo = args.repo.resolve()

    rows, sabotages = parse_pitfalls(args.pitfalls), load_sabotages(args.sabotages)
    problems = consistency(rows, sabotages, repo) + id_problems(args.pitfalls)
    selected = [s for s in sabotages
                if (not args.fast or s.fast) and (not args.only or any(fnmatch.fnmatch(s.key, k) for k in args.only))]
    keys = {s.key for s in sabotages}
    broken = {problem.split(":")[0] for problem in problems} & keys
    # Problems of sabotages left out by --only / --fast do not count; those of rows always do.
    problems = [p for p in problems if p.split(":")[0] not in keys - {s.key for s in selected}]
    if args.only and not selected:
        problems.append(f"--only {' '.join(args.only)} matches no key")

    if args.list:
        for sabotage in selected:
            state = "BROKEN " if sabotage.key in broken else "applies"
            speed = "fast" if sabotage.fast else "slow"
            print(f"{state}  {sabotage.key:<28} {sabotage.row_id:<4} {speed}  {sabotage.file}:{sabotage.function}  "
                  f"({len(sabotage.run_tests)} test reference(s))")
        for row in unguarded_rows(rows):
            covered = any(s.row is row for s in sabotages)
            print(f"note: row {row.label} names no file:function guard"
                  + (" (it has a sabotage anyway)" if covered else " (no sabotage needed)"))
        for problem in problems:
            print(f"error: {problem}")
        guarded = sum(row.names_guard for row in rows)
        print(f"{len(selected)} sabotage(s) listed; {guarded} guard row(s) in {args.pitfalls.name}; "
              f"{len(problems)} problem(s)")
        return 1 if problems else 0

    for problem in problems:
        print(f"error: {problem}", flush=True)
    runnable = [s for s in selected if s.key not in broken and s.row is not None]
    failing_anyway: set[str] = set()
    if runnable and not args.no_baseline:
        started = time.monotonic()
        try:
            failing_anyway, _ = baseline_failures(runnable, repo, args.timeout)
        except KeyboardInterrupt:
            for process in list(_running):
                _kill(process)
            return 130
        listed = f": {', '.join(sorted(failing_anyway))}" if failing_anyway else ""
        print(f"baseline   {len(failing_anyway)} of the selected tests fail without any sabotage{listed} "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    lock, outcomes = threading.Lock(), []

    def run(sabotage: Sabotage) -> None:
        result = prove(sabotage, repo, args.timeout, failing_anyway)
        with lock:
            outcomes.append(result)
            print(f"{result.verdict:<10} {sabotage.key:<28} {sabotage.file}  ({result.detail}; "
                  f"{result.seconds:.0f} s)", flush=True)
            if args.verbose and result.verdict != "proven":
                print("\n".join("    " + line for line in result.output.strip().splitlines()[-40:]), flush=True)

    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        list(pool.map(run, runnable))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(_running):
            _kill(process)
        print("interrupted", file=sys.stderr)
        return 130
    pool.shutdown()
    proven = sum(o.verdict == "proven" for o in outcomes)
    skipped = len(selected) - len(runnable)
    print(f"{proven} of {len(selected)} guards proven" + (f" ({skipped} could not be applied)" if skipped else ""))
    return 0 if proven == len(selected) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
