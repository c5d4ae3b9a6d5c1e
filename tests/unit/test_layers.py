"""The layering the README promises, checked on the source: the core imports no web framework and no AWS
SDK at import time, and no package has import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("video_converter", "api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    return module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    base = node.module or ""
    if not node.level:
        return base
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*anchor, base] if base else anchor)


def _names(node: ast.stmt, package: str) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        base = _absolute(node, package)
        return {base} | {f"{base}.{alias.name}" for alias in node.names}
    return set()


def every_import(path: Path, package: str) -> set[str]:
    """Absolute names of every module this file imports, wherever: at module level, under
    ``if TYPE_CHECKING:``, in function and class bodies, under ``else:``, ``with``, ``try``, anything.
    A circle through any of them is a circle (a lazy or type-only import only hides it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _names(node, package)
    return found


def imports_at_load(path: Path, package: str) -> set[str]:
    """Absolute names of the modules this file imports when it is loaded: every import but those inside
    functions (lazy ones) and under ``if TYPE_CHECKING:``, which are not run then."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            found.update(_names(node, package))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []):
                    visit(child.body if isinstance(child, ast.ExceptHandler | ast.match_case) else [child])

    visit(ast.parse(path.read_text()).body)
    return found


def graph() -> dict[str, set[str]]:
    """Which of the project's modules each one imports, by any kind of import."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {
        name: {m for m in every_import(path, package_of(path)) if m in files and m != name}
        for name, path in files.items()
    }


def test_the_core_loads_without_a_web_framework_or_the_aws_sdk() -> None:
    banned = ("fastapi", "starlette", "uvicorn", "jinja2", "boto3", "botocore", "api")
    for path in (ROOT / "video_converter").rglob("*.py"):
        offending = {m for m in imports_at_load(path, package_of(path)) if m.split(".")[0] in banned}
        assert not offending, f"{path.relative_to(ROOT)} imports {sorted(offending)}"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_cycles(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


HIDDEN_IMPORTS = {
    "type-only": "if TYPE_CHECKING:\n    from .hidden import T\n",
    "in a function": "def f():\n    from .hidden import T\n",
    "in a method": "class C:\n    def f(self):\n        from . import hidden\n",
    "in a class body": "class C:\n    import pkg.sub.hidden\n",
    "under else": "if X:\n    pass\nelse:\n    from .hidden import T\n",
    "under with": "with x:\n    from .hidden import T\n",
    "under try/except": "try:\n    pass\nexcept ImportError:\n    from .hidden import T\n",
    "under match": "match x:\n    case 1:\n        from .hidden import T\n",
}


@pytest.mark.parametrize("source", HIDDEN_IMPORTS.values(), ids=HIDDEN_IMPORTS.keys())
def test_every_kind_of_import_is_an_edge(tmp_path: Path, source: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert "pkg.sub.hidden" in every_import(module, "pkg.sub")
    # ...and so a circle through it is found.
    edges = {"pkg.sub.m": {m for m in every_import(module, "pkg.sub") if m == "pkg.sub.hidden"}}
    assert find_cycle({**edges, "pkg.sub.hidden": {"pkg.sub.m"}}) == ["pkg.sub.hidden", "pkg.sub.m", "pkg.sub.hidden"]


def test_the_load_time_check_skips_only_lazy_and_type_only_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom . import sibling\nfrom ..up import thing\n"
        "if TYPE_CHECKING:\n    from .typing_only import T\n"
        "def f():\n    import boto3\n"
        "with x:\n    import fastapi\n"
        "class C:\n    import starlette\n"
        "if X:\n    pass\nelse:\n    import jinja2\n"
    )
    assert imports_at_load(module, "pkg.sub") == {
        "os", "pkg.sub", "pkg.sub.sibling", "pkg.up", "pkg.up.thing", "fastapi", "starlette", "jinja2"
    }  # fmt: skip


MAX_FUNCTION_LINES = 60
PRODUCT = ("video_converter", "api", "functions")


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """The functions (methods and nested ones too) of a file longer than ``limit`` lines."""
    return [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_of_the_product_is_longer_than_60_lines() -> None:
    found = [entry for pkg in PRODUCT for path in sorted((ROOT / pkg).rglob("*.py")) for entry in long_functions(path)]
    assert not found, "split these: " + "; ".join(found)


def test_the_length_check_sees_a_long_method(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class C:\n    def f(self):\n" + "        x = 1\n" * 60)
    assert [entry.split(" ")[1] for entry in long_functions(module, 60)] == ["f"]
