"""The house's layers: no module imports one above it (nor the package face), no import circle,
and the command line calls only the public API."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent / "onnx2snn"
# bottom to top; a module may import its own layer and those below it
LAYERS = [
    {"errors", "version", "graph", "files", "neuron", "neurons", "limits"},
    {"artifact", "checks", "data", "export", "demo", "report", "plot"},
    {"passes"},
    {"build"},
    {"runtime"},
    {"calibration"},
    {"convert"},
    {"train"},  # torch, imported inside its functions
    {"distributed"},
    {"nir"},  # NIR graphs out of and into artifacts (reads, builds and runs them)
    {""},  # the package face, __init__.py
    {"tools"},
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (inside functions too), relative to it."""
    here = _module(path).split(".") if _module(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "onnx2snn":
                base = node.module.split(".")[1:]
            else:
                continue
            found.add(".".join(base))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "onnx2snn":
                    found.add(".".join(alias.name.split(".")[1:]))
    return found - {_module(path)}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


MODULES = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_a_higher_layer_or_the_package_face():
    wrong = [
        f"{module} imports {target or 'onnx2snn'}"
        for module, targets in MODULES.items()
        for target in targets
        if _layer(target) > _layer(module) or (target == "" and not module.startswith("tools"))
    ]
    assert not wrong, wrong


def test_the_command_line_calls_only_the_public_api():
    wrong = [
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if module.startswith("tools")
        for target in targets
        if target != "" and not target.startswith("tools")
    ]
    assert not wrong, wrong


def test_no_import_circles():
    edges = {m: {t for t in ts if t in MODULES} for m, ts in MODULES.items()}
    edges = {m: {t for t in ts if not (t and m.startswith(t + "."))} for m, ts in edges.items()}  # own package face

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), list(edges[start])
        while stack:
            m = stack.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                stack.extend(edges[m])
        return False

    circles = sorted(m for m in MODULES if reaches(m, m))
    assert not circles, circles


def test_passes_hold_rewrites_only():
    """Calibration (which runs the ANN or the SNN) never sits among the rewrites."""
    for module, targets in MODULES.items():
        if module.startswith("passes"):
            assert not any(t.split(".")[0] in ("runtime", "calibration", "build") for t in targets), module
