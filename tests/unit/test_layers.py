"""The layering the README promises, checked on the source: the core imports no web framework and no AWS
SDK at import time, and no package has import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("video_converter", "api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    return module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]


def imports_at_load(path: Path, package: str) -> set[str]:
    """Absolute names of the modules this file imports when it is loaded: imports inside functions
    (lazy ones) and under ``if TYPE_CHECKING:`` are not run then, so they are left out."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)

    visit(tree.body)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {
        name: {m for m in imports_at_load(path, package_of(path)) if m in files and m != name}
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


def test_the_checks_see_cycles_and_skip_lazy_imports(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nfrom . import sibling\nfrom ..up import thing\n"
        "if TYPE_CHECKING:\n    from .typing_only import T\n"
        "def f():\n    import boto3\n"
    )
    assert imports_at_load(module, "pkg.sub") == {
        "os", "pkg.sub", "pkg.sub.sibling", "pkg.up", "pkg.up.thing"
    }  # fmt: skip
