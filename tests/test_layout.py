"""The package layout: no import cycles, every module importable on its own, and the dependency rules
between folders (models never import data; the model factory never imports a model file; benchmarks never
import the command line)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ccnet

PACKAGE = Path(ccnet.__file__).parent
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations, never run)."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return nodes


def _imported(path: Path, package: str) -> set[str]:
    """ccnet modules that ``path`` imports when it runs, deferred imports included (not those for type
    checkers only); ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``."""
    found = set()
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in MODULES else origin)
    return {name for name in found if name in MODULES}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imported(path, package) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_walk_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package():
    assert _cycles(_graph()) == []


def test_dependency_rules_between_folders():
    graph = _graph()

    def inside(module: str, package: str) -> bool:
        return module == package or module.startswith(f"{package}.")

    def reaches(source_package: str, target_package: str) -> list[str]:
        return sorted(
            f"{source} -> {target}"
            for source, targets in graph.items()
            if inside(source, source_package)
            for target in targets
            if inside(target, target_package)
        )

    assert reaches("ccnet.models", "ccnet.data") == []
    assert reaches("ccnet.models", "ccnet.engine") == []
    assert reaches("ccnet.ops", "ccnet.models") == reaches("ccnet.ops", "ccnet.engine") == []
    assert reaches("ccnet.engine", "ccnet.reproduce") == reaches("ccnet.engine", "ccnet.cli") == []
    model_files = {"ccnet.models.ccnet", "ccnet.models.video", "ccnet.models.catalog", "ccnet.models.heads"}
    assert graph["ccnet.models.factory"] & model_files == set()
    assert graph["ccnet.models.registry"] - {"ccnet.models.architecture"} == set()


def test_benchmarks_do_not_import_the_command_line():
    offenders = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith("ccnet.cli")]
    assert offenders == []


# Third-party libraries are imported once before forking, so each child only pays for its ccnet module.
_IMPORT_EACH_ALONE = """
import os, sys, traceback
import numpy, PIL.Image, timm, torch, torchvision, tqdm, yaml  # noqa: F401
failures = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures.append(name)
print("FAILED:", failures)
sys.exit(1 if failures else 0)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_alone_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, *MODULES], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

