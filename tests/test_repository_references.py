"""Nothing in the repository cites what a user or contributor does not have, and every PITFALLS.md row
it cites exists (PITFALLS.md RF1).

The files are those `git ls-files` lists (tracked, and untracked but not ignored: what the next commit
can hold). Where the repository is not a git checkout (the temporary copy `scripts/check_guards.py`
tests a sabotage in, which holds exactly those files), every file but environments, caches and build
outputs is read instead. Rows are cited as `PITFALLS.md G10` (messages, help texts, documentation) or
`(G10)`, `(G3, G5, F7)`, `(TK1–TK3)` (code comments); PITFALLS.md's introduction describes the ids.

The patterns below are written so that this file does not match them itself.
"""

import posixpath
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

# The troubleshooting guides PITFALLS.md's first rows were collected from were numbered documents of
# the development machine ("seed" and three digits), kept in a folder of that name; a user has neither.
SEED_DOCUMENT = re.compile(r"(?<![a-z])seeds?[ _-]?0[0-9][0-9](?![0-9])|(?<![\w.-])seed[s]/", re.IGNORECASE)
# Absolute paths into the machine the code was written on.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/wor[k]/")
# A relative path with `..` segments, resolved from the folder of the file that holds it.
PARENT_PATH = re.compile(r"(?<![\w.-])(?:\./)?(?:\.\./)+[^\s'\"`)\]>,;*]*")

ROW_ID = r"[A-Z]{1,2}[1-9][0-9]*"
ID_LIST = rf"{ROW_ID}(?:(?:, | and | or |–|-){ROW_ID})*"
CITED_AFTER_NAME = re.compile(rf"\bPITFALLS(?:\.md)? (?:rows? )?({ID_LIST})")
CITED_IN_SABOTAGE = re.compile(rf'^row = "({ROW_ID})"$', re.MULTILINE)
TABLE_ID = re.compile(r"^\| ([^|]+?) \|")
SABOTAGES = "scripts/guard_sabotages.toml"
# What check_guards.py never copies either: environments, history, caches and build outputs.
NOT_SCANNED = {".venv", ".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}


def repository_files(repo: Path = REPO) -> list[str]:
    """Paths relative to repo of the files the repository holds."""
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == repo.resolve():
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                                capture_output=True, text=True, check=True)
        names = dict.fromkeys(filter(None, listed.stdout.split("\0")))
    else:  # not a checkout of its own
        names = {path.relative_to(repo).as_posix(): None for path in repo.rglob("*")
                 if not NOT_SCANNED & set(path.relative_to(repo).parts)}
    return sorted(name for name in names if (repo / name).is_file())


def text_of(path: Path) -> str | None:
    """The file's text; None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def without_sabotage_breaks(text: str) -> str:
    """guard_sabotages.toml with its `new = '''...'''` texts blanked (line numbers kept): they are the
    deliberate breaks that scripts/check_guards.py applies in a throw-away copy, a citation of a seed
    document among them (RF1's own sabotage)."""
    return re.sub(r"^new = '''(.*?)'''", lambda m: "new = ''" + "\n" * m.group(1).count("\n") + "''", text,
                  flags=re.MULTILINE | re.DOTALL)


def parent_path_problem(folder: str, path: str, repo: Path) -> str:
    """Why a `..` path in a file of folder points outside the repository, or ''."""
    resolved = posixpath.normpath(posixpath.join(folder, path))
    if resolved.split("/")[0] == "..":
        return f"relative path {path!r} above the repository root"
    if not (repo / resolved).exists():
        return f"relative path {path!r} to {resolved!r}, which the repository does not have"
    return ""


def references_outside(name: str, text: str, repo: Path = REPO) -> list[str]:
    """`file:line: what` for each citation in text (the file `name`, relative to the repository) of
    something outside the repository: a seed document, a path on the development machine, or a
    relative path with `..` that climbs above the repository root or names nothing in it."""
    hits, folder = [], posixpath.dirname(name)
    for number, line in enumerate(text.splitlines(), start=1):
        found = [f"seed document {m.group(0)!r}" for m in SEED_DOCUMENT.finditer(line)]
        found += [f"absolute path {line[m.start():].split()[0]!r}" for m in MACHINE_PATH.finditer(line)]
        found += list(filter(None, (parent_path_problem(folder, m.group(0), repo) for m in PARENT_PATH.finditer(line))))
        hits += [f"{name}:{number}: {what}" for what in found]
    return hits


def expand(ids: str) -> list[str]:
    """'G3, G5 and F7' -> [G3, G5, F7]; 'TK1–TK3' -> [TK1, TK2, TK3] (a range of one section)."""
    cited = []
    for part in re.split(r", | and | or ", ids):
        ends = re.split(r"[–-]", part)
        if len(ends) == 2 and ends[0].rstrip("0123456789") == ends[1].rstrip("0123456789"):
            prefix = ends[0].rstrip("0123456789")
            first, last = int(ends[0][len(prefix):]), int(ends[1][len(prefix):])
            cited += [f"{prefix}{n}" for n in range(first, last + 1)]
        else:
            cited += ends
    return cited


def pitfall_ids(text: str) -> list[tuple[int, str]]:
    """(line, id) of every table row of PITFALLS.md (the first cell; headers and rules left out)."""
    ids, in_table = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        match = TABLE_ID.match(line)
        if not line.startswith("|"):
            in_table = False
        elif not in_table:
            in_table = True  # the header
        elif match and not set(match.group(1)) <= set("-: "):
            ids.append((number, match.group(1)))
    return ids


def cited_ids(name: str, text: str, sections: set[str]) -> list[tuple[int, str]]:
    """(line, id) of each PITFALLS.md row cited in text: after `PITFALLS.md`, as `row = "G10"` in the
    sabotage file, or in parentheses as `(G10)`, `(G3, G5, F7)`, `(G13: ...)`. The parenthesised form
    counts only ids of the sections PITFALLS.md has, so `(A100)` or `(T4)` are GPUs, not citations."""
    letters = "|".join(sorted(sections, key=len, reverse=True))
    section_id = rf"(?:{letters})[1-9][0-9]*"
    in_parentheses = re.compile(rf"\(({section_id}(?:(?:, | and | or |–|-){section_id})*)[):;,]")
    cited = []
    for pattern in (CITED_AFTER_NAME, in_parentheses) + ((CITED_IN_SABOTAGE,) if name == SABOTAGES else ()):
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            cited += [(line, row_id) for row_id in expand(match.group(1))]
    return cited


def scanned(repo: Path = REPO) -> dict[str, str]:
    texts = {}
    for name in repository_files(repo):
        text = text_of(repo / name)
        if text is not None:
            texts[name] = without_sabotage_breaks(text) if name == SABOTAGES else text
    return texts


def test_no_file_cites_a_document_outside_the_repository():
    texts = scanned()
    assert "PITFALLS.md" in texts and "pipeline/cli.py" in texts and len(texts) > 50, sorted(texts)[:10]
    hits = [hit for name, text in texts.items() for hit in references_outside(name, text)]
    assert not hits, ("cites a document outside the repository (cite a PITFALLS.md id instead, "
                      "PITFALLS.md RF1):\n" + "\n".join(hits))


def test_every_cited_pitfalls_id_exists_and_every_row_id_is_used_once():
    texts = scanned()
    rows = pitfall_ids(texts["PITFALLS.md"])
    assert len(rows) > 100
    malformed = [f"PITFALLS.md:{line}: {row_id!r}" for line, row_id in rows if not re.fullmatch(ROW_ID, row_id)]
    assert not malformed, "row ids that are not one or two capitals and a number:\n" + "\n".join(malformed)
    first = {}
    twice = [f"PITFALLS.md:{line}: {row_id} (first on line {first[row_id]})" for line, row_id in rows
             if first.setdefault(row_id, line) != line]
    assert not twice, "row ids used twice:\n" + "\n".join(twice)
    sections = {row_id.rstrip("0123456789") for _, row_id in rows}
    unknown = [f"{name}:{line}: {row_id}" for name, text in texts.items()
               for line, row_id in cited_ids(name, text, sections) if row_id not in first]
    assert not unknown, "cites PITFALLS.md rows that do not exist:\n" + "\n".join(unknown)


def test_the_checks_catch_each_kind_of_reference_and_leave_lookalikes_alone():
    seed, machine, up = "Se" + "ed 002 §10", "/wo" + "rk/main/PITFALLS.md", ".." + "/"
    text = "\n".join([f"see {seed} for the fix", f"read {machine}", f"cat {up}shared/x.txt",
                      f"ok: torch.manual_seed(0), --training-seed 42, {up}pipeline/cli.py from tests/",
                      "test_x_is_the_se" + "ed_001_message", f"{up}{up}foo"])
    assert references_outside("tests/test_x.py", text) == [
        f"tests/test_x.py:1: seed document {seed[:8]!r}", f"tests/test_x.py:2: absolute path {machine!r}",
        f"tests/test_x.py:3: relative path '{up}shared/x.txt' to 'shared/x.txt', which the repository does not have",
        "tests/test_x.py:5: seed document 'se" + "ed_001'",
        f"tests/test_x.py:6: relative path '{up}{up}foo' above the repository root"]
    assert references_outside("README.md", f"cat {up}shared/x.txt") == [
        f"README.md:1: relative path '{up}shared/x.txt' above the repository root"]
    cites = "PITFALLS.md G10, (G3, G5 and F7), (TK1–TK3), on a T4 (A100), (H100) (G9" + "9: gone) PITFALLS.md Z" + "Z4"
    assert [row_id for _, row_id in cited_ids("x.py", cites, {"G", "F", "TK"})] == [
        "G10", "ZZ4", "G3", "G5", "F7", "TK1", "TK2", "TK3", "G99"]
    quotes = "'" * 3
    toml = (f'[[sabotage]]\nkey = "G1"\nrow = "G1"\nold = {quotes}x{quotes}\n'
            f'new = {quotes}a\n{seed}{quotes}\nfast = true\n')
    assert references_outside(SABOTAGES, without_sabotage_breaks(toml)) == []
    assert without_sabotage_breaks(toml).count("\n") == toml.count("\n")
    assert [row_id for _, row_id in cited_ids(SABOTAGES, toml, {"G"})] == ["G1"]
