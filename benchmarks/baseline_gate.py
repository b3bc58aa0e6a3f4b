"""The full regression gate: all five descriptors of results/baseline.json on a fresh hpatches-synth.

    python benchmarks/baseline_gate.py [--data-dir DIR]

tests/test_baseline.py runs three of them (one per code path) to keep the suite short; this runs
the whole baseline, as before a release or after changing a descriptor. Exit status 1 on a regression.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_baseline import baseline_of, gate  # noqa: E402

from desc_bench.datasets.registry import download  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="data root holding hpatches-synth (default: a fresh one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DESC_BENCH_CACHE"] = str(Path(tmp) / "cache")  # fresh features, as in the test
        data = args.data_dir or Path(tmp) / "data"
        download("hpatches-synth", data_dir=data, progress=True)
        comparison = gate(baseline_of(), data, Path(tmp) / "runs")
    print(comparison.markdown())
    return 1 if comparison.failed else 0


if __name__ == "__main__":
    sys.exit(main())
