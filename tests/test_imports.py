"""How the package imports: no heavy backend up front, no cycle between modules."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import skltransfer

PACKAGE = Path(skltransfer.__file__).parent


def _heavy_modules_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; print([m for m in ('torch', 'torchvision', "
        "'transformers', 'timm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip())


def test_package_import_is_light():
    assert _heavy_modules_after("import skltransfer") == []


NON_IMAGE_ESTIMATORS = [
    "PretrainedTextEmbeddings",
    "PretrainedWordVectors",
    "FineTuneClassifier",
]


@pytest.mark.slow  # a fresh interpreter imports torch and transformers
def test_estimators_without_images_do_not_load_torchvision():
    """Text and tabular work never pays for torchvision's import.

    One interpreter (each start imports torch, seconds) imports and builds the
    estimators in turn and reports after each, so a failure names the first
    estimator that pulled torchvision in.
    """
    steps = "; ".join(
        f"from skltransfer import {name}; {name}(); "
        f"seen.append('torchvision' in sys.modules)"
        for name in NON_IMAGE_ESTIMATORS
    )
    code = f"import sys; seen = []; {steps}; print(seen)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seen = ast.literal_eval(out.stdout.strip())
    loaded = [name for name, hit in zip(NON_IMAGE_ESTIMATORS, seen, strict=True) if hit]
    assert not loaded, f"torchvision imported once {loaded[0]} was imported and built"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, modules: set[str]) -> set[str]:
    """skltransfer modules that ``path`` imports, at module level or inside
    functions alike (a function-level import still ties the two modules)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from package import module`` depends on that module, not on
            # everything the package's __init__ gathers.
            candidates = [
                f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle():
    """Every module can be understood from the modules below it."""
    paths = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imported_modules(p, modules) for p in paths}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]


# The layers of docs/architecture.md, top first: a module imports only from
# its own part of the package or from layers below its own.
LAYERS = [
    {"finetune", "distributed", "demo"},
    {"features", "direct", "_image_base"},
    {"base", "freezing", "augmentation", "_compile"},
    {"inputs"},
    {"backbones"},
    {"caching", "_inference", "_engines", "_batch_size", "_process_state"}
    | {"_device"}
    | {"_validation", "_docstring", "_config", "_malloc", "_files", "exceptions"}
    | {"_progress"},
]


def _layer(module: str) -> int:
    part = module.split(".")[1]
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_imports_go_down_the_layers():
    """What docs/architecture.md says of the import order stays true."""
    paths = [
        p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__"
    ]
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    upward = [
        (_module_name(p), target)
        for p in paths
        for target in _imported_modules(p, modules)
        if target != "skltransfer" and _layer(target) < _layer(_module_name(p))
    ]
    assert upward == []


def test_every_module_has_its_test_file():
    """``finetune/_probe.py`` is tested in ``tests/test_finetune_probe.py``
    (docs/architecture.md)."""
    tests = Path(__file__).parent
    missing = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        name = "_".join(part.lstrip("_") for part in parts)
        if not (tests / f"test_{name}.py").exists():
            missing.append(f"{'/'.join(parts)}.py -> tests/test_{name}.py")
    assert missing == []
