"""Descriptors from outside the package: plugin files and modules, and installed packages.

Three ways in, all ending in an ordinary import (a ``Descriptor`` subclass registers itself):

- ``--plugin FILE.py`` or ``--plugin some.module`` on ``desc-bench list/run/time/export`` (repeatable);
- ``DESC_BENCH_PLUGINS``: the same specs, separated by ``os.pathsep`` or commas, read at discovery;
- an installed distribution declaring an entry point in the group ``desc_bench.descriptors``
  (``my-desc = my_package.descriptors``, a module, or ``my_package.descriptors:MyDesc``, a class).

A plugin file is imported by path as module ``desc_bench_plugin_<stem>_<hash of its path>`` (stable,
so another process loading the same file gets the same module name); ``sys.path`` is not changed,
so a plugin spread over several files should be an importable package (``--plugin my_package``).
Each spec is loaded once per process. A spec that names no file and no module is a user error
(InputError); a module that fails to import, or an entry point that fails to load, becomes an
:class:`~desc_bench.discovery.ImportFailure` that ``desc-bench list`` shows as an unavailable row. A
plugin may not redefine a descriptor that another module defines (rows would carry the wrong name).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..discovery import ImportFailure, failure, import_file, module_file
from ..errors import InputError
from .base import Descriptor

GROUP = "desc_bench.descriptors"
ENV = "DESC_BENCH_PLUGINS"

_LOADED: dict[str, tuple[ImportFailure, ...]] = {}  # spec key -> its failures (empty: loaded)


def split_specs(values: str | Iterable[str]) -> tuple[str, ...]:
    """Specs from ``"a.py:b.py"``, ``"a.py,pkg.mod"`` or a list of such strings; empty parts dropped."""
    if isinstance(values, str):
        values = [values]
    specs = []
    for value in values:
        specs.extend(part.strip() for part in re.split(f"[,{re.escape(os.pathsep)}]", value) if part.strip())
    return tuple(specs)


def _is_file_spec(spec: str) -> bool:
    seps = {os.sep, os.altsep} - {None}
    return spec.endswith(".py") or any(s in spec for s in seps) or Path(spec).is_file()


def module_name_for(path: Path) -> str:
    """The module name a plugin file is imported as: its stem plus a short hash of its absolute path."""
    stem = re.sub(r"\W", "_", path.stem) or "plugin"
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"desc_bench_plugin_{stem}_{digest}"


def _guarded(
    key: str, label: str, path: str | None, load: Callable[[], object], fallback: tuple[str, ...] = ()
) -> tuple[ImportFailure, ...]:
    """Run ``load`` once per ``key``; undo what a failed load registered; refuse redefinitions.

    A failure is listed under the names the source declares, else under ``fallback``."""
    if key in _LOADED:
        return _LOADED[key]
    before = dict(Descriptor._registry)
    try:
        loaded = load()
    except Exception as exc:  # noqa: BLE001 - reported as an unavailable row; the others keep working
        _restore(before)
        found = failure(label, exc, path)
        if not found.names and fallback:
            found = ImportFailure(found.module, found.error, path, fallback, exc)
        result = (found,)
    else:
        result = _check_loaded(label, path, loaded, before)
    _LOADED[key] = result
    return result


def _restore(before: dict[str, type[Descriptor]]) -> None:
    Descriptor._registry.clear()
    Descriptor._registry.update(before)


def _check_loaded(label: str, path: str | None, loaded: object, before: dict) -> tuple[ImportFailure, ...]:
    if not inspect.ismodule(loaded) and not (inspect.isclass(loaded) and issubclass(loaded, Descriptor)):
        error = TypeError(f"it is a {type(loaded).__name__}, not a module or a Descriptor subclass")
        return (failure(label, error, path),)
    problems = []
    for name, old in before.items():
        if Descriptor._registry.get(name) is not old:
            Descriptor._registry[name] = old
            problems.append(
                failure(
                    label,
                    ValueError(
                        f"it defines descriptor {name!r}, which {old.__module__} already defines; give it another name"
                    ),
                    None,
                )
            )
    return tuple(problems)


def load_spec(spec: str) -> tuple[ImportFailure, ...]:
    """Import one plugin (a ``.py`` file or a module name); return its failures (empty when it loaded).

    Raises InputError when ``spec`` names no existing file and no importable module.
    """
    if _is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError(f"plugin {spec!r}: no such file; give a Python file (.py) or an importable module name")
        path = path.resolve()
        return _guarded(str(path), f"plugin {path.name}", str(path), lambda: import_file(path, module_name_for(path)))
    try:
        found = importlib.util.find_spec(spec)
    except ModuleNotFoundError:
        found = None
    except Exception as exc:  # noqa: BLE001 - a parent package that fails to import
        error = exc  # `exc` is unbound after the except block; the load below raises it again
        return _guarded(spec, f"plugin {spec}", None, lambda: _reraise(error))
    if found is None:
        raise InputError(
            f"plugin {spec!r}: no module of that name can be imported and no such file exists; give a path to a "
            ".py file, or install the module (or add its folder to PYTHONPATH)"
        )
    return _guarded(spec, f"plugin {spec}", module_file(spec), lambda: importlib.import_module(spec))


def _reraise(exc: BaseException) -> None:
    raise exc


def load_specs(specs: str | Iterable[str]) -> tuple[ImportFailure, ...]:
    """Load every spec (see :func:`split_specs`); raise InputError for one that names nothing."""
    failures: list[ImportFailure] = []
    for spec in split_specs(specs):
        failures.extend(load_spec(spec))
    return tuple(failures)


def load_env() -> tuple[ImportFailure, ...]:
    """Load the specs in ``$DESC_BENCH_PLUGINS``; a spec naming nothing becomes a failure, never an abort."""
    failures: list[ImportFailure] = []
    for spec in split_specs(os.environ.get(ENV, "")):
        try:
            failures.extend(load_spec(spec))
        except InputError as exc:
            _LOADED[f"{ENV} {spec}"] = (ImportFailure(f"{ENV} entry {spec!r}", f"InputError: {exc}"),)
            failures.extend(_LOADED[f"{ENV} {spec}"])
    return tuple(failures)


def load_entry_points() -> tuple[ImportFailure, ...]:
    """Load every entry point of the group ``desc_bench.descriptors`` of the installed distributions.

    An entry point whose module fails to import is listed under the descriptor names its source
    declares, or else under the entry point's name (so name the entry point after the descriptor).
    """
    failures: list[ImportFailure] = []
    for point in importlib.metadata.entry_points(group=GROUP):
        key = f"entry point {point.name} {point.value}"
        label = f"entry point {point.name} ({point.value})"
        failures.extend(_guarded(key, label, module_file(point.module), point.load, fallback=(point.name,)))
    return tuple(failures)


def loaded_failures() -> tuple[ImportFailure, ...]:
    """Every failure of every plugin and entry point loaded so far in this process."""
    return tuple(f for failures in _LOADED.values() for f in failures)
