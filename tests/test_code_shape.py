"""The size rules of the project's style, read from the code with `ast`: a function of stage 3's orchestration
(pipeline/training/, pipeline/preflight.py) is at most 60 lines long and takes at most 6 parameters.

Lines: from `def` to the function's last line, docstring and comments inside included. Parameters: every named
one, keyword-only ones too; `self` and `cls` of a method are not counted, nor `*args` and `**kwargs`, which pass
on the parameters of the function they forward to (transformers' Trainer and callbacks): those are not ours to
shape. Dataclass constructors are generated, so they never appear here.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = sorted((REPO / "pipeline" / "training").rglob("*.py")) + [REPO / "pipeline" / "preflight.py"]
MAX_LINES, MAX_PARAMETERS = 60, 6


def _functions(tree: ast.AST):
    """(qualified name, node, is a method) for every function, nested ones included."""
    def visit(node: ast.AST, prefix: str, in_class: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{prefix}{child.name}", child, in_class
                yield from visit(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.", True)
            else:
                yield from visit(child, prefix, in_class)

    yield from visit(tree, "", False)


def parameter_count(node: ast.FunctionDef, method: bool) -> int:
    arguments = node.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    if method and named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return len(named)


def oversized(path: Path, root: Path = REPO) -> list[str]:
    found, where = [], path.relative_to(root)
    for name, node, method in _functions(ast.parse(path.read_text(encoding="utf-8"))):
        lines, parameters = node.end_lineno - node.lineno + 1, parameter_count(node, method)
        if lines > MAX_LINES:
            found.append(f"{where}:{name} has {lines} lines (at most {MAX_LINES})")
        if parameters > MAX_PARAMETERS:
            found.append(f"{where}:{name} takes {parameters} parameters (at most {MAX_PARAMETERS})")
    return found


def test_no_function_of_stage_3s_orchestration_is_over_60_lines_or_6_parameters():
    assert CHECKED and all(path.is_file() for path in CHECKED)
    problems = [problem for path in CHECKED for problem in oversized(path)]
    assert not problems, "\n".join(problems)


def test_the_shape_check_counts_lines_and_parameters_as_it_says(tmp_path):
    """A long function and a wide one are found; self, *args and **kwargs are not counted."""
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    source = (f"def long():\n{body}\n    return x0\n\n"
              "def wide(a, b, c, d, /, e, *, f, g):\n    pass\n\n"
              "class C:\n    def fine(self, a, b, c, d, e, f, *args, **kwargs):\n        pass\n")
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    assert oversized(path, tmp_path) == ["probe.py:long has 61 lines (at most 60)",
                                         "probe.py:wide takes 7 parameters (at most 6)"]
