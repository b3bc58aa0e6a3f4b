"""Layers import one way (ARCHITECTURE.md): every import in desc_bench, module-level or inside a
function, goes from a higher layer to the same or a lower one; adapters and datasets never import
each other. Function-level imports are allowed only for optional heavy dependencies (third-party)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "desc_bench"
# layer of each top-level module or package of desc_bench, bottom up
LAYERS = {
    "errors": 0,
    "_version": 0,
    "discovery": 0,
    "imaging": 1,
    "geometry": 1,
    "io": 1,
    "records": 2,
    "adapters": 3,
    "datasets": 3,
    "bench": 4,
    "results": 5,
    "api": 6,
    "cli": 7,
    "__init__": 7,
    "__main__": 8,  # python -m desc_bench: runs the cli
}
APART = {frozenset({"adapters", "datasets"})}  # same layer, must not import each other


def _module(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path):
    """(line, imported desc_bench module parts) for every import of desc_bench in the file."""
    here = _module(path)
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "desc_bench":
                target = node.module.split(".")
            else:
                continue
            if node.module is None or len(target) == 1:  # `from . import x` / `from desc_bench import x`
                for alias in node.names:
                    yield node.lineno, [*target, alias.name]
            else:
                yield node.lineno, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "desc_bench":
                    yield node.lineno, alias.name.split(".")


def _layer(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_goes_down():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _layer(_module(path))
        assert source in LAYERS, f"{path}: top-level module {source!r} has no layer; add it to LAYERS"
        for line, target in _imports(path):
            layer = _layer(target)
            if layer == "__init__" and target == ["desc_bench", "__version__"]:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {'.'.join(target)}"
            if LAYERS.get(layer, 99) > LAYERS[source]:
                problems.append(f"{where} (layer {layer} is above {source})")
            elif layer != source and frozenset({layer, source}) in APART:
                problems.append(f"{where} ({source} and {layer} must not import each other)")
    assert not problems, "\n".join(problems)


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    """The check itself: a relative import inside a function is found and resolved."""
    fake = PACKAGE / "adapters" / "base.py"
    found = {".".join(t) for _, t in _imports(fake)}
    assert "desc_bench.errors" in found
    assert any(t.startswith("desc_bench.adapters.prepare") for t in found)  # imported inside methods


def test_no_module_over_450_lines():
    long = [
        f"{p.relative_to(PACKAGE.parent)} ({n})"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    ]
    assert not long, "split these along their sections: " + ", ".join(long)


def _exists(parts: list[str]) -> bool:
    path = PACKAGE.parent.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_relative_import_resolves():
    """A function-level import with one dot too few (``..x`` for ``...x``) only fails when it runs."""
    broken = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {'.'.join(t)}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for line, t in _imports(p)
        if not (_exists(t) or _exists(t[:-1]))
    ]
    assert not broken, "\n".join(broken)
