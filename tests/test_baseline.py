"""The project's own regression gate: a fresh run of the baseline's descriptors on hpatches-synth
must match the committed baseline (results/baseline.json).

An accuracy change of more than half a point in any row, or a missing row, fails; so does a
normalised slow-down beyond 3x (generous: one CI machine's timings vary between processes, and the
gate is meant to catch accidents such as a descriptor falling back to a slow path).
To refresh the baseline deliberately, see "Regression baseline" in the README.
"""

from __future__ import annotations

from pathlib import Path

from desc_bench.bench.runner import RunConfig, run
from desc_bench.records.store import read_record
from desc_bench.results.regression import compare

BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline.json"


def test_hpatches_synth_matches_the_committed_baseline(hpatches_synth_data, data_dir, tmp_path):
    baseline = read_record(BASELINE)
    config = baseline.metadata["config"]
    output = run(
        RunConfig(
            descriptors=tuple(config["descriptors"]),
            dataset=config["dataset"],
            data_dir=hpatches_synth_data,  # generated once per session (shared with the byte-pin test)
            split=config["split"],
            tasks=tuple(config["tasks"]),
            protocol=config["protocol"],
            time_batch=config["time_batch"],
            output=tmp_path,
            progress=False,
        )
    )
    comparison = compare([baseline], [output.record], accuracy_tolerance=0.005, speed_tolerance=2.0)
    assert not comparison.failed, comparison.markdown()
