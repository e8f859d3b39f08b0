"""README's Architecture section stays true: its layers are the ones tests/test_layers.py holds the code to,
every file it names exists, and every name it places in a file is in that file."""

import re

from tests.conftest import REPO
from tests.test_layers import LAYERS

PATH = re.compile(r"`((?:pipeline|tokenizer|configs|tests|scripts)/[\w/.]*)`")
BARE_PATH = re.compile(r"(?<![\w/.])((?:pipeline|tokenizer|configs|tests|scripts)/[\w/]*[\w]\.(?:py|yaml|sh))")
# a code name: CamelCase, snake_case or UPPER_CASE, possibly dotted (StageInfo.contract); not a path or a flag
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)`")


def architecture() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Architecture\n")
    return readme[start: readme.index("\n## ", start + 1) if "\n## " in readme[start + 1:] else len(readme)]


def paragraphs(section: str) -> list[str]:
    """Paragraphs and list items, each the unit in which a name and its file are given together."""
    return [part for part in re.split(r"\n\s*\n|\n(?=- )", section) if part.strip()]


def test_the_layers_table_is_the_one_the_import_check_enforces():
    rows = re.findall(r"^\| ([a-z0-9 ]+) \| (`.+`) \|$", architecture(), re.MULTILINE)
    documented = [(layer, re.findall(r"`([\w_]+)`", rooms)) for layer, rooms in rows]
    assert documented == list(LAYERS.items())  # in order: bottom first


def test_every_file_the_section_names_exists():
    named = set(PATH.findall(architecture())) | set(BARE_PATH.findall(architecture()))
    assert named, "the section names no file: the pattern no longer matches it"
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert missing == []


def test_every_name_the_section_places_in_a_file_is_in_that_file():
    checked, wrong = 0, []
    for paragraph in paragraphs(architecture()):
        files = [REPO / path for path in PATH.findall(paragraph) if path.endswith(".py")]
        texts = "\n".join(path.read_text(encoding="utf-8") for path in files if path.is_file())
        names = [name for name in NAME.findall(paragraph) if "_" in name or name[:1].isupper()]
        if not files or "| " in paragraph:
            continue
        for name in names:
            checked += 1
            if not all(re.search(rf"\b{re.escape(part)}\b", texts) for part in name.split(".")):
                wrong.append(f"{name} (named with {', '.join(p.name for p in files)})")
    assert checked >= 10, "the check reads too few names: the section's form changed"
    assert wrong == []
