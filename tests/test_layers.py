"""The import picture: rooms in layers, every import pointing down, no circle (README "Architecture").

A room is a subpackage of gpt2zh (gpt2zh.training, gpt2zh.tokenizer) or a top-level module (gpt2zh.rundir).
Every `import` counts, the ones inside functions too: an import deferred to keep start-up light still ties
the two rooms together.
"""

import ast
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
# Bottom first. A room may import the rooms listed before it, never one after it.
LAYERS = {
    "foundation": ["__init__", "errors", "faults", "console", "report", "memory", "stop_signals", "input_changes",
                   "hf_env", "config", "configs"],
    "facts and the run directory": ["manifests", "hardware", "remote", "corpus", "rundir", "runlock", "fingerprints",
                                    "run_settings", "network_checks", "resolution", "stages"],
    "existing models": ["models"],
    "stage 1": ["tokenizer"],
    "stage 2": ["dataset"],
    "stage 3": ["training"],
    "stage 4": ["hub"],
    "commands": ["request", "preflight", "run_all", "plan_command", "bench", "show_config", "inference", "diagnose",
                 "doctor"],
    "entry points": ["cli", "__main__"],
}
ORDER = [room for rooms in LAYERS.values() for room in rooms]


def package_folders() -> dict[str, Path]:
    """Import name -> folder, as pyproject.toml installs them."""
    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in settings["package-dir"].items()}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in package_folders().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def _dotted(node: ast.AST) -> str:
    """`gpt2zh.training.plan` for the attribute chain gpt2zh.training.plan(.Name...), else ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _dynamic(node: ast.Call) -> str:
    """The module of `importlib.import_module("gpt2zh.x")` or `__import__("gpt2zh.x")`, else ""."""
    called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
        return str(node.args[0].value)
    return ""


def _longest_module(dotted: str, known: dict[str, Path]) -> str:
    parts = dotted.split(".")
    return next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known), "")


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gpt2zh modules `name` imports (a `from package import module` names the module), also through
    importlib.import_module("gpt2zh.x") and an attribute chain gpt2zh.x.y after `import gpt2zh`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and _dynamic(node).startswith("gpt2zh"):
            targets = [_longest_module(_dynamic(node), known)]
        elif isinstance(node, ast.Attribute) and _dotted(node).startswith("gpt2zh."):
            targets = [_longest_module(_dotted(node), known)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [node.module])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target.split(".")[0] == "gpt2zh")
    return {target for target in found if target in known} - {name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{importer} -> {imported} ({room(importer)} is below {room(imported)})"
                  for importer, targets in graph.items() for imported in targets
                  if ORDER.index(room(imported)) > ORDER.index(room(importer)))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_room_has_a_place_in_the_layers():
    unplaced = sorted({room(module) for module in modules()} - set(ORDER))
    assert not unplaced, f"add these rooms to LAYERS (and README's Architecture section): {unplaced}"


def test_no_import_climbs_from_a_lower_layer_to_a_higher_one():
    climbing = upward_imports(import_graph())
    assert climbing == [], "\n".join(climbing)


def test_no_modules_import_each_other_in_a_circle():
    found = circles(import_graph())
    assert found == [], "\n".join(" <-> ".join(group) for group in found)


@pytest.mark.parametrize(("importer", "imported", "broken"), [
    ("gpt2zh.rundir", "gpt2zh.training.plan", "climbs"),  # a run-directory helper reaching into stage 3
    ("gpt2zh.tokenizer.sampling", "gpt2zh.tokenizer.stage", "circle"),  # stage imports sampling already
])
def test_the_check_sees_an_added_climb_or_circle(importer, imported, broken):
    graph = import_graph()
    assert imported not in graph[importer]
    graph[importer] = graph[importer] | {imported}
    if broken == "climbs":
        assert any(line.startswith(f"{importer} -> {imported}") for line in upward_imports(graph))
    else:
        assert any(importer in group and imported in group for group in circles(graph))


def test_the_import_reader_follows_relative_deferred_and_package_imports(tmp_path):
    known = {"gpt2zh.a": tmp_path / "a.py", "gpt2zh.b": tmp_path / "b.py", "gpt2zh.c": tmp_path / "c.py",
             "gpt2zh.d": tmp_path / "d" / "__init__.py", "gpt2zh.d.e": tmp_path / "d" / "e.py"}
    source = ("from . import b\ndef later():\n    import gpt2zh.c\n    from gpt2zh.d import e\n"
              "import json\nfrom gpt2zh.d import something_in_d\n")
    assert imports_of("gpt2zh.a", _written(tmp_path / "a.py", source), known) == \
        {"gpt2zh.b", "gpt2zh.c", "gpt2zh.d.e", "gpt2zh.d"}
    dynamic = 'import importlib\nimport gpt2zh\nimportlib.import_module("gpt2zh.d.e")\nx = gpt2zh.c.thing\n'
    assert imports_of("gpt2zh.a", _written(tmp_path / "a.py", dynamic), known) == {"gpt2zh.d.e", "gpt2zh.c"}


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
