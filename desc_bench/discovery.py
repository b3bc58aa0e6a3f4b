"""Registration by subclassing: import modules once, so that the classes they define register themselves.

Used by the descriptor and dataset registries (no central name lists). A module that fails to import
need not take the others down: :func:`try_import_modules` and :func:`import_file` report an
:class:`ImportFailure` (the module, its file, the error in one line, and the registry names its
source declares) and the caller decides what to show; :func:`import_modules` keeps the strict
behaviour (the first failure is raised).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class ImportFailure:
    """A module that could not be imported (or an entry point that could not be loaded)."""

    module: str  # the module name, or how the user named it (a file path, an entry point)
    error: str  # the exception in one line: "ModuleNotFoundError: No module named 'cv2'"
    path: str | None = None  # its source file, when known
    names: tuple[str, ...] = ()  # the `name = "..."` its classes declare (read from the source, not run)
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def message(self) -> str:
        return f"{self.module} failed to import: {self.error}"


def one_line(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (a SyntaxError also gives its file and line)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        text = f"{exc.msg} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NAME = re.compile(r"\S+")


def declared_names(path: Path | str | None) -> tuple[str, ...]:
    """The string literals assigned to ``name`` in the class bodies of a source file, without running it.

    How the registries list what a broken module *would* have registered. () when the file cannot be
    read or parsed (then the module itself is listed)."""
    if path is None:
        return ()
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return ()
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            targets, value = [], None
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets, value = [statement.target], statement.value
            if (
                any(isinstance(t, ast.Name) and t.id == "name" for t in targets)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and _NAME.fullmatch(value.value)
            ):
                names.append(value.value)
    return tuple(dict.fromkeys(names))


def module_file(name: str) -> str | None:
    """The source file of module ``name`` without importing it (its parent packages may be imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # noqa: BLE001 - a parent package that fails to import: no file to show
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def failure(module: str, exc: BaseException, path: str | None) -> ImportFailure:
    return ImportFailure(module=module, error=one_line(exc), path=path, names=declared_names(path), exception=exc)


def _forget(name: str) -> None:
    """Drop a half-imported module (and its submodules) so that nothing uses it."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def try_import_modules(package: str, skip: frozenset[str] = frozenset()) -> tuple[ImportFailure, ...]:
    """Import every module of ``package`` except those in ``skip`` and private ones; return the failures."""
    failures = []
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name in skip or module.name.startswith("_"):
            continue
        name = f"{package}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a broken module is reported, the others still load
            _forget(name)
            failures.append(failure(name, exc, module_file(name)))
    return tuple(failures)


def import_modules(package: str, skip: frozenset[str] = frozenset()) -> None:
    """Import every module of ``package`` except those in ``skip`` and private ones; raise the first failure."""
    for problem in try_import_modules(package, skip):
        raise problem.exception


def import_file(path: Path | str, module_name: str) -> ModuleType:
    """Import the Python file ``path`` as module ``module_name`` (raising what the module raises).

    The module goes into ``sys.modules`` (dataclasses and pickling look classes up there) and is
    removed again if it fails; ``sys.path`` is not changed.
    """
    path = Path(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} (not a Python source file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        _forget(module_name)
        raise
    return module
