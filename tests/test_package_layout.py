"""The package's modules import each other without cycles (function-level imports included),
and the tests' files can all be collected in one run."""

from __future__ import annotations

import ast
from pathlib import Path

import captum_gmar

PACKAGE = Path(captum_gmar.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Modules of the package that ``path`` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("captum_gmar"))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules lazily is not a cycle through them
            if nxt in _lazy_exports():
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _lazy_exports() -> set[str]:
    return {"captum_gmar"}  # its __getattr__ imports on first use; no module runs it at import time


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_model_state_imports_nothing_of_the_package():
    assert import_graph()["captum_gmar.vit.model_state"] == set()


def test_the_old_paths_of_moved_modules_import_the_modules_themselves():
    import importlib

    from captum_gmar._moved import MOVED

    for old, new in MOVED.items():
        module = importlib.import_module(old)
        assert module is importlib.import_module(new) and module.__spec__.name == new, old


#: the package's layers, lowest first: a module imports its own layer's and lower layers'
#: modules only (the layout of docs/extending.md)
LAYERS = [
    ("captum_gmar.names", "captum_gmar.errors", "captum_gmar._moved", "captum_gmar.files", "captum_gmar._lazy"),
    ("captum_gmar.core",),
    ("captum_gmar.vit",),
    ("captum_gmar.methods",),
    ("captum_gmar.imagedata", "captum_gmar.reference", "captum_gmar.visualization", "captum_gmar.pages"),
    ("captum_gmar.evaluation",),
    ("captum_gmar.loading", "captum_gmar.dataset_maps"),
    ("captum_gmar.exploration", "captum_gmar.heads"),
    ("captum_gmar.repair",),  # a confirmed shortcut's repair: the heads, the transplant
    ("captum_gmar.cli", "captum_gmar.__main__"),
]


def layer_of(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer of LAYERS")


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module != "captum_gmar"  # its lazy exports are imported on first use, by the caller
        for target in targets
        if target != "captum_gmar" and layer_of(target) > layer_of(module)
    ]
    assert not upward, upward


def test_no_two_test_files_share_a_name():
    """pytest imports each test folder's files as top-level modules (no ``__init__.py``), so
    two files of one name in different folders stop the collection of the whole suite."""
    tests = Path(__file__).resolve().parent
    by_name: dict[str, list[str]] = {}
    for path in tests.rglob("*.py"):
        by_name.setdefault(path.name, []).append(str(path.relative_to(tests)))
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1 and name != "conftest.py"}
    assert not shared, f"rename one of each: {shared}"
