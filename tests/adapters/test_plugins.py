"""Descriptors from outside the package: --plugin files and modules, DESC_BENCH_PLUGINS, entry points,
and modules that fail to import (listed as unavailable, never hiding the others).

The plugin used end to end is the code block of docs/adding-a-descriptor.md, extracted here, so the
documented example is the one that is tested.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import desc_bench
from desc_bench.adapters import plugins, registry
from desc_bench.adapters.base import Descriptor
from desc_bench.cli import main
from desc_bench.datasets.synth import hpatches_synth as synth
from desc_bench.errors import DescriptorUnavailableError, InputError

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-descriptor.md"


def doc_plugin() -> str:
    """The first ```python block of the docs: the complete plugin file."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, f"no python code block in {DOC}"
    return blocks[0]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts from the built-ins alone and leaves the registry as it found it."""
    monkeypatch.delenv(plugins.ENV, raising=False)
    registry._discover()
    saved_registry, saved_loaded = dict(Descriptor._registry), dict(plugins._LOADED)
    saved_modules = set(sys.modules)
    yield
    Descriptor._registry.clear()
    Descriptor._registry.update(saved_registry)
    plugins._LOADED.clear()
    plugins._LOADED.update(saved_loaded)
    registry._discover.cache_clear()
    for name in set(sys.modules) - saved_modules:
        if name.startswith(("desc_bench_plugin_", "tiny_desc_pkg", "mod_plugin")):
            del sys.modules[name]


@pytest.fixture()
def plugin_file(tmp_path) -> Path:
    path = tmp_path / "my_desc.py"
    path.write_text(doc_plugin())
    return path


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    """A small hpatches-synth (2 sequences x 24 patches) as `--dataset hpatches-synth` opens it."""
    params = synth.SynthParams(sequences=2, patches=24, n_pairs=200, n_queries=10, n_distractors=20)
    root = tmp_path_factory.mktemp("plugin-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "DEFAULT_PARAMS", params)
        synth.ensure_hpatches_synth(root / synth.NAME, progress=False, params=params)
        yield root


def invoke(args, tmp_path):
    env = {"DESC_BENCH_CACHE": str(tmp_path / "cache")}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


# ------------------------------------------------------------------------------- the docs' plugin


def test_the_docs_plugin_is_about_twenty_lines():
    code = [line for line in doc_plugin().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 26, len(code)


def test_docs_plugin_runs_through_desc_bench_run(plugin_file, synth_data, tmp_path):
    out = tmp_path / "runs"
    args = ["run", "-d", "my-desc,my-desc:seed=3", "--plugin", str(plugin_file), "--dataset", "hpatches-synth"]
    args += ["--data-dir", str(synth_data), "--tasks", "matching", "-o", str(out), "-q", "--time-batch", "0"]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert "my-desc" in result.output
    record = json.loads(next(out.glob("*.json")).read_text())
    rows = [r for r in record["results"] if r["task"] == "matching" and r["subset"] == "all" and r["variant"] == ""]
    values = {(r["descriptor"], r["noise"]): r["value"] for r in rows}
    assert {d for d, _ in values} == {"my-desc", "my-desc:seed=3"}
    assert all(0.0 < v <= 1.0 for v in values.values()), values
    # the seed option reaches the network: different weights, different numbers
    assert values[("my-desc", "easy")] != values[("my-desc:seed=3", "easy")]


def test_docs_plugin_runs_through_desc_bench_time(plugin_file, tmp_path, monkeypatch):
    from desc_bench.results import plots

    monkeypatch.setattr(plots, "plot_throughput", lambda rows, path: None)  # the figure is not under test
    out = tmp_path / "timing"
    args = ["time", "-d", "my-desc,sift-torch-mp", "--plugin", str(plugin_file), "--batch-sizes", "1,8"]
    args += ["--repeats", "2", "--warmup", "1", "--no-calibration", "-o", str(out), "-q"]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads(next(out.glob("*.json")).read_text())
    timed = {(t["descriptor"], t["batch"]) for t in record["timings"] if not t.get("error")}
    assert {("my-desc", 1), ("my-desc", 8), ("sift-torch-mp", 8)} <= timed


def test_plugin_through_the_python_api(plugin_file):
    registry.load_plugins([str(plugin_file)])
    desc = desc_bench.descriptor("my-desc:seed=1")
    out = desc.compute_patches(torch.rand(5, 1, 65, 65) * 255)
    assert out.shape == (5, 64) and torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    assert type(desc).__module__.startswith("desc_bench_plugin_my_desc_")
    assert str(plugin_file.parent) not in sys.path
    registry.load_plugins([str(plugin_file)])  # once per process: the class is not redefined
    assert registry.descriptor_class("my-desc") is type(desc)


# ----------------------------------------------------------------------------- ways of loading


def test_list_shows_plugins_from_the_option_and_the_environment(plugin_file, tmp_path, monkeypatch):
    second = tmp_path / "other.py"
    second.write_text(doc_plugin().replace('"my-desc"', '"other-desc"'))
    result = invoke(["list", "--plugin", str(plugin_file), "--plugin", str(second)], tmp_path)
    assert result.exit_code == 0, result.output
    assert re.search(r"\| my-desc +\| +64 \| l2 .*\| ok ", result.output)
    assert re.search(r"\| other-desc +\| +64 ", result.output) and "sift-opencv" in result.output

    for separator in (os.pathsep, ","):
        Descriptor._registry.pop("my-desc", None)
        Descriptor._registry.pop("other-desc", None)
        plugins._LOADED.clear()
        registry._discover.cache_clear()
        monkeypatch.setenv(plugins.ENV, f"{plugin_file}{separator}{second}")
        names = {d.name: d for d in desc_bench.descriptors()}
        assert names["my-desc"].available and names["other-desc"].available


def test_a_missing_environment_plugin_is_a_row_not_an_abort(plugin_file, tmp_path, monkeypatch):
    monkeypatch.setenv(plugins.ENV, f"{tmp_path / 'gone.py'},{plugin_file}")
    registry._discover.cache_clear()
    rows = {d.name: d for d in desc_bench.descriptors()}
    assert rows["my-desc"].available and rows["sift-opencv"].available
    (missing,) = [r for r in rows.values() if r.name.startswith(plugins.ENV)]
    assert not missing.available and "gone.py" in missing.name and "no such file" in missing.status


def test_a_module_plugin(tmp_path, monkeypatch):
    (tmp_path / "mod_plugin.py").write_text(doc_plugin().replace('"my-desc"', '"mod-desc"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke(["list", "--plugin", "mod_plugin"], tmp_path)
    assert result.exit_code == 0, result.output
    assert registry.descriptor_class("mod-desc").__module__ == "mod_plugin"


def test_a_plugin_that_names_nothing_is_a_clear_error(tmp_path):
    result = invoke(["list", "--plugin", str(tmp_path / "nope.py")], tmp_path)
    assert result.exit_code == 2 and "no such file" in result.output
    result = invoke(["run", "-d", "x", "--plugin", "no_such_module_anywhere"], tmp_path)
    assert result.exit_code == 2 and "no module of that name" in result.output
    with pytest.raises(InputError, match="no such file"):
        registry.load_plugins(str(tmp_path / "nope.py"))


def test_a_plugin_may_not_take_a_builtin_name(tmp_path):
    path = tmp_path / "impostor.py"
    path.write_text(doc_plugin().replace('"my-desc"', '"sift-opencv"'))
    builtin = registry.descriptor_class("sift-opencv")
    (problem,) = registry.load_plugins([str(path)])
    assert "already defines" in problem.error and registry.descriptor_class("sift-opencv") is builtin
    rows = {d.name: d for d in desc_bench.descriptors()}
    assert rows["sift-opencv"].available and not rows["plugin impostor.py"].available


# -------------------------------------------------------------------------------- entry points


def _install_fake_distribution(root: Path) -> None:
    """What `pip install` leaves: a package and a .dist-info with entry_points.txt, on sys.path."""
    package = root / "tiny_desc_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "descriptors.py").write_text(doc_plugin().replace('"my-desc"', '"ep-desc"'))
    (package / "broken.py").write_text("import tiny_desc_missing_dependency\n")
    info = root / "tiny_desc-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-desc\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[desc_bench.descriptors]\nep-desc = tiny_desc_pkg.descriptors\nep-broken = tiny_desc_pkg.broken:Thing\n"
    )


def test_an_installed_entry_point_appears_everywhere(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    registry._discover.cache_clear()
    result = invoke(["list"], tmp_path)
    assert result.exit_code == 0, result.output
    assert re.search(r"\| ep-desc +\| +64 \| l2 .*\| ok ", result.output)
    assert re.search(r"\| ep-broken .*unavailable: entry point ep-broken .*tiny_desc_missing_dependency", result.output)
    assert desc_bench.descriptor("ep-desc").compute_patches(torch.zeros(2, 1, 32, 32) + 9).shape == (2, 64)
    with pytest.raises(DescriptorUnavailableError, match="ModuleNotFoundError: No module named 'tiny_desc_missing"):
        desc_bench.descriptor("ep-broken")


# ---------------------------------------------------------------------------- broken modules


def test_a_plugin_failing_to_import_is_listed_and_the_others_work(tmp_path):
    path = tmp_path / "broken_plugin.py"
    path.write_text(
        doc_plugin().replace('"my-desc"', '"half-desc"')
        + '\n\nclass Later(MyDesc):\n    name = "later-desc"\n\n\nraise ImportError("needs libfoo >= 2")\n'
    )
    (problem,) = registry.load_plugins([str(path)])
    assert problem.error == "ImportError: needs libfoo >= 2" and problem.names == ("half-desc", "later-desc")
    rows = {d.name: d for d in desc_bench.descriptors()}
    for name in ("half-desc", "later-desc"):  # registered before the failure: still not usable
        assert not rows[name].available and rows[name].dim is None
        status = "unavailable: plugin broken_plugin.py failed to import: ImportError: needs libfoo >= 2"
        assert rows[name].status == status
    assert rows["sift-torch-mp"].available
    with pytest.raises(DescriptorUnavailableError, match="half-desc is unavailable: .*needs libfoo >= 2"):
        desc_bench.descriptor("half-desc")
    assert desc_bench.descriptor("sift-torch-mp").compute_patches(torch.rand(2, 1, 65, 65) * 255).shape == (2, 128)
    result = invoke(["list", "--plugin", str(path)], tmp_path)
    assert result.exit_code == 0 and "needs libfoo" in result.output and "sift-torch-mp" in result.output

    syntax = tmp_path / "bad_syntax.py"
    syntax.write_text("class X(:\n")
    (problem,) = registry.load_plugins([str(syntax)])
    assert problem.error.startswith("SyntaxError:") and "bad_syntax.py, line 1" in problem.error
    assert not {d.name: d for d in desc_bench.descriptors()}["plugin bad_syntax.py"].available
    with pytest.raises(DescriptorUnavailableError, match="module that failed to import: plugin bad_syntax.py"):
        desc_bench.descriptor("whatever-it-defined")


def test_a_module_plugin_whose_package_fails_to_import(tmp_path, monkeypatch):
    package = tmp_path / "mod_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('package init failed')\n")
    (package / "desc.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    (problem,) = registry.load_plugins("mod_plugin_pkg.desc")
    assert problem.module == "plugin mod_plugin_pkg.desc" and problem.error == "RuntimeError: package init failed"
    assert "sift-opencv" in registry.registered()


def test_a_builtin_module_failing_to_import_hides_nothing_else(monkeypatch, tmp_path):
    """opencv_learned re-imported while `import cv2` fails: its four descriptors become unavailable rows
    naming the module and the error; every other descriptor is listed and runs."""
    module = "desc_bench.adapters.opencv_learned"
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ModuleNotFoundError
    for name in [n for n, cls in Descriptor._registry.items() if cls.__module__ == module]:
        del Descriptor._registry[name]
    registry._discover.cache_clear()

    rows = {d.name: d for d in desc_bench.descriptors()}
    for name in ("vgg-opencv", "boostdesc-opencv", "beblid-opencv", "teblid-opencv"):
        assert not rows[name].available
        assert rows[name].status.startswith(f"unavailable: {module} failed to import: ModuleNotFoundError: ")
    assert rows["sift-torch-mp"].available and rows["hardnet"].dim == 128
    with pytest.raises(DescriptorUnavailableError, match=f"beblid-opencv is unavailable: {module} failed"):
        desc_bench.descriptor("beblid-opencv")
    assert desc_bench.descriptor("sift-torch-mp").compute_patches(torch.rand(3, 1, 65, 65) * 255).shape == (3, 128)
    result = invoke(["list"], tmp_path)
    assert result.exit_code == 0 and "vgg-opencv" in result.output and "sift-flow" in result.output
