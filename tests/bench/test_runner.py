"""The one-loop runner, registered benchmarks and the feature store: a benchmark defined here runs
through `desc-bench run` with no other edit; --re-eval calls no descriptor; edited data or adapter
code recomputes exactly what it should; damaged cache files are misses; several benchmarks share
features; exit status says when something asked for was not measured."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from desc_bench.adapters.base import Descriptor
from desc_bench.bench.benchmarks.base import Benchmark, Headline, TableSpec
from desc_bench.bench.benchmarks.hpatches import describe_sequence, sequence_files
from desc_bench.bench.features import FeatureStore, code_fingerprint, feature_key
from desc_bench.bench.runner import RunConfig, run
from desc_bench.cli import main
from desc_bench.datasets import sequences as S
from desc_bench.datasets.base import DatasetSource
from desc_bench.records.schema import ResultRow

CALLS: dict[str, int] = {}


class Counting(Descriptor):
    """Mean and spread of each patch (or a keypoint's coordinates), counting every hook call."""

    name = "test-counting"
    dim = 2

    def describe_patches(self, prepared):
        CALLS["patches"] = CALLS.get("patches", 0) + 1
        flat = prepared.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1)], 1)

    def describe_keypoints(self, image, frames):
        CALLS["keypoints"] = CALLS.get("keypoints", 0) + 1
        return torch.from_numpy(frames.xy / 100.0).float()


@dataclasses.dataclass(frozen=True)
class MeanOptions:
    scale: float = 1.0


class MeanNorm(Benchmark):
    """A benchmark defined in a test file: the mean descriptor norm over the split's ref patches."""

    name = "test-mean-norm"
    summary = "mean descriptor norm (test benchmark)"
    accepts = ("patches",)
    Options = MeanOptions
    tasks = ("norm",)
    uses_splits = True
    headlines = (Headline("mean norm", "norm", "norm", percent=False),)
    tables = (TableSpec("Mean norm", metrics=("norm",), columns="metric"),)

    def features(self, descriptor, dataset, store, context):
        """The same items as the HPatches benchmarks, so a run of both describes each sequence once."""
        return {
            seq: store.arrays(
                seq, sequence_files(dataset, seq), lambda seq=seq: describe_sequence(descriptor, dataset.load(seq))
            )
            for seq in dataset.split(context.split).test
        }

    def evaluate(self, features, dataset, subject, context):
        norms = np.concatenate([np.linalg.norm(f["ref"], axis=1) for f in features.values()])
        return [
            self.row(
                subject,
                dataset.name,
                context.split,
                task="norm",
                metric="norm",
                value=float(norms.mean()) * self.options.scale,
            )
        ]


class TinyPairs(DatasetSource):
    """Two synthetic sequences (10 pairs) as a registered image-pair dataset."""

    name = "test-tiny-pairs"
    kind = "pairs"
    default_protocol = "mma"

    def open(self, data_dir):
        return dataclasses.replace(
            S.SyntheticSequences().open(data_dir).subset(["i_coffee", "v_astronaut"]), name=self.name
        )


@pytest.fixture(scope="module")
def tiny(tiny_hpatches_factory):
    return tiny_hpatches_factory(sequences=4, patches=40)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))
    CALLS.clear()
    return tmp_path


def _run(**kw) -> list[ResultRow]:
    return run(RunConfig(output=None, progress=False, time_batch=0, **kw)).record.results


def test_a_benchmark_defined_in_a_test_file_runs_through_the_cli(tiny, env):
    args = [
        "run",
        "-d",
        "test-counting",
        "--dataset",
        "hpatches",
        "--data-dir",
        str(tiny),
        "--protocol",
        "test-mean-norm:scale=2",
        "-o",
        str(env / "runs"),
        "-q",
        "--time-batch",
        "0",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Mean norm" in result.output and "mean norm" in result.output
    bad = CliRunner().invoke(main, [*args[:-5], "--protocol", "test-mean-norm:scal=2"], catch_exceptions=False)
    assert bad.exit_code == 2 and "scale" in bad.output  # unknown option refused with the valid ones


def test_several_benchmarks_share_features_and_re_eval_calls_no_descriptor(tiny, env):
    rows = _run(
        descriptors=("test-counting",),
        dataset="hpatches",
        data_dir=tiny,
        protocol="python,test-mean-norm",
        tasks=("matching",),
    )
    assert {r.protocol for r in rows} == {"python", "test-mean-norm"}
    first = CALLS["patches"]
    assert first == 4  # one call per sequence (16 patch files stacked), shared by both
    _run(descriptors=("test-counting",), dataset="hpatches", data_dir=tiny, tasks=("matching",), re_eval=True)
    assert CALLS["patches"] == first  # --re-eval: metrics recomputed from stored features


def test_editing_a_patch_file_recomputes_that_sequence_only(tiny, env, tmp_path):
    import shutil

    data = tmp_path / "copy"
    shutil.copytree(tiny, data)
    before = _run(descriptors=("test-counting",), dataset="hpatches", data_dir=data, tasks=("matching",))
    calls = CALLS["patches"]
    seq = sorted(p for p in (data / "hpatches" / "hpatches-release").iterdir() if p.is_dir())[0]
    import cv2

    image = cv2.imread(str(seq / "e1.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(seq / "e1.png"), 255 - image)
    after = _run(descriptors=("test-counting",), dataset="hpatches", data_dir=data, tasks=("matching",))
    assert CALLS["patches"] == calls + 1  # that sequence, not the three others
    value = {r.key(): r.value for r in before}
    assert any(abs(r.value - value[r.key()]) > 1e-6 for r in after)  # and the numbers moved


def test_editing_an_adapter_recomputes_that_descriptor(tmp_path):
    source = tmp_path / "my_adapter.py"
    body = (
        "import torch\nfrom desc_bench.adapters.base import Descriptor\n\n"
        "class Mine(Descriptor):\n    name = 'test-edited-adapter'\n    dim = 1\n\n"
        "    def describe_patches(self, prepared):\n        return prepared.flatten(1).mean(1, keepdim=True){}\n"
    )

    def load(suffix):
        source.write_text(body.format(suffix))
        spec = importlib.util.spec_from_file_location(f"my_adapter_{len(suffix)}", source)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        cls = Descriptor._registry.pop("test-edited-adapter")
        return cls

    a = load("")
    before = code_fingerprint(a)
    assert code_fingerprint(load(" * 2")) != before  # the edited source, as the next run reads it
    assert code_fingerprint(Counting) == code_fingerprint(Counting)
    assert feature_key(Counting(), "d", "v", "cpu") != feature_key(a(), "d", "v", "cpu")
    # a native backend's version is part of the key (sift-vlfeat: another libvl build recomputes)
    counting = Counting()
    plain = feature_key(counting, "d", "v", "cpu")
    counting.backend_versions = lambda: ("libvl 0.9.22",)
    assert feature_key(counting, "d", "v", "cpu") != plain


def test_damaged_store_and_score_files_are_misses(tiny, env):
    logs = []
    config = RunConfig(
        descriptors=("test-counting",),
        dataset="hpatches",
        data_dir=tiny,
        tasks=("matching",),
        output=None,
        progress=False,
        time_batch=0,
    )
    good = run(config).record.results
    for path in (env / "cache").rglob("*"):
        if path.suffix in (".npz", ".json") and path.name != "manifest.json":
            path.write_bytes(b"not a valid file")
    again = run(config, log=logs.append).record.results
    assert [r.value for r in again] == [r.value for r in good]
    assert any("damaged" in m for m in logs)


def test_re_eval_on_image_pairs_makes_zero_descriptor_calls(env, tmp_path, monkeypatch):
    monkeypatch.setenv("DESC_BENCH_DATA", str(tmp_path / "data"))
    rows = _run(descriptors=("test-counting",), dataset="test-tiny-pairs", protocol="mma,oxford-ms")
    assert {r.protocol for r in rows} == {"mma", "oxford-ms"}
    calls = CALLS["keypoints"]
    assert calls == 12  # 2 sequences x 6 images, shared by both benchmarks (same detector and budget)
    again = _run(descriptors=("test-counting",), dataset="test-tiny-pairs", protocol="mma,oxford-ms", re_eval=True)
    assert CALLS["keypoints"] == calls
    assert [r.value for r in again] == [r.value for r in rows]


def test_exit_status_when_something_asked_for_was_not_measured(tiny, env):
    class Failing(Descriptor):
        name = "test-failing-index"
        dim = 2

        def describe_patches(self, prepared):
            raise IndexError("an adapter bug")

    try:
        args = [
            "run",
            "-d",
            "test-failing-index,test-counting",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny),
            "--tasks",
            "matching",
            "-o",
            str(env / "runs"),
            "-q",
            "--time-batch",
            "0",
        ]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        Descriptor._registry.pop("test-failing-index", None)
    assert result.exit_code == 3, result.output
    assert "IndexError" in result.output and "test-counting" in result.output  # the other one was measured
    typo = CliRunner().invoke(
        main,
        ["run", "-d", "sift-torch-mp:patchsize=32", "--data-dir", str(tiny), "--dataset", "hpatches"],
        catch_exceptions=False,
    )
    assert typo.exit_code == 2 and "patch_size" in typo.output
    unwritable = env / "file"
    unwritable.write_text("")
    result = CliRunner().invoke(
        main,
        ["run", "-d", "test-counting", "--data-dir", str(tiny), "-o", str(unwritable / "x")],
        catch_exceptions=False,
    )
    assert result.exit_code == 2 and "output folder" in result.output


def test_store_without_a_root_computes_everything(tmp_path):
    store = FeatureStore(None, feature_key(Counting(), "d", "v", "cpu"))
    out = store.arrays("a", [], lambda: {"x": np.zeros(3)})
    assert store.computed == 1 and out["x"].shape == (3,)
    assert not any(tmp_path.iterdir())
    assert Path(store.key.folder(tmp_path, "features")).name.startswith("test-counting-")


def test_the_adding_a_benchmark_example_runs(tiny, env):
    text = (Path(__file__).resolve().parents[2] / "docs" / "adding-a-benchmark.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    try:
        module = types.ModuleType("docs_benchmark_example")
        sys.modules[module.__name__] = module
        exec(compile(code, "adding-a-benchmark.md", "exec"), module.__dict__)
        rows = _run(
            descriptors=("test-counting",),
            dataset="hpatches",
            data_dir=tiny,
            protocol="python,mean-norm:scale=2",
            tasks=("matching",),
        )
    finally:
        Benchmark._registry.pop("mean-norm", None)
    assert {r.protocol for r in rows} == {"python", "mean-norm"} and CALLS["patches"] == 4
    assert [r.value > 0 for r in rows if r.protocol == "mean-norm"] == [True]
