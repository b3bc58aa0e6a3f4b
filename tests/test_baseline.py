"""The project's own regression gate: a fresh run on hpatches-synth must match the committed
baseline (results/baseline.json).

An accuracy change of more than half a point in any row, or a missing row, fails; so does a
normalised slow-down beyond 3x (generous: one CI machine's timings vary between processes, and the
gate is meant to catch accidents such as a descriptor falling back to a slow path).

To keep the suite short, the test runs three of the baseline's five descriptors, one per code path:
OpenCV float (sift-opencv), torch (sift-torch-vlfeat) and binary / Hamming (beblid-opencv).
``python benchmarks/baseline_gate.py`` runs all five (rootsift-opencv and sift-torch-mp too).
To refresh the baseline deliberately, see "Regression baseline" in the README.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from desc_bench.bench.runner import RunConfig, run
from desc_bench.records.schema import Record
from desc_bench.records.store import read_record
from desc_bench.results.regression import compare

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline.json"
IN_SUITE = ("sift-opencv", "sift-torch-vlfeat", "beblid-opencv")


def baseline_of(descriptors: tuple[str, ...] | None = None) -> Record:
    """The committed baseline, restricted to ``descriptors`` (all of them when None)."""
    baseline = read_record(BASELINE)
    if descriptors is None:
        return baseline
    return dataclasses.replace(
        baseline,
        results=[r for r in baseline.results if r.descriptor in descriptors],
        timings=[t for t in baseline.timings if t.descriptor in descriptors],
    )


def gate(baseline: Record, data_dir: Path, output: Path):
    """Run the baseline's configuration for its descriptors and compare with it."""
    config = baseline.metadata["config"]
    descriptors = tuple(d for d in config["descriptors"] if any(r.descriptor == d for r in baseline.results))
    record = run(
        RunConfig(
            descriptors=descriptors,
            dataset=config["dataset"],
            data_dir=data_dir,
            split=config["split"],
            tasks=tuple(config["tasks"]),
            protocol=config["protocol"],
            time_batch=config["time_batch"],
            output=output,
            progress=False,
        )
    ).record
    return compare([baseline], [record], accuracy_tolerance=0.005, speed_tolerance=2.0)


def test_hpatches_synth_matches_the_committed_baseline(hpatches_synth_data, data_dir, tmp_path):
    baseline = baseline_of(IN_SUITE)
    assert {r.descriptor for r in baseline.results} == set(IN_SUITE)
    comparison = gate(baseline, hpatches_synth_data, tmp_path)  # data generated once per session
    assert not comparison.failed, comparison.markdown()
