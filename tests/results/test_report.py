"""``desc-bench report`` (markdown + PNG figures from records alone) and ``desc-bench check`` (the gate).

Records are built here the way the runner writes them (bench/hpatches_tasks score rows: verification
"ap"/"auc" x intra/inter/mean, matching subsets all/i/v, retrieval pool=K and pool=mean, each for
easy/hard/tough/mean) plus timing rows and a calibration, so nothing here needs data or weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from desc_bench.cli import main
from desc_bench.records.schema import Calibration, Record, ResultRow, TimingRow
from desc_bench.records.store import write_record
from desc_bench.results.plots import _hpatches_bars, plot_hpatches
from desc_bench.results.report import build_report
from desc_bench.results.tables import summary_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOISE_FACTOR = {"easy": 1.4, "hard": 0.9, "tough": 0.7}  # mean of the three is 1.0
METADATA = {
    "time": "2025-01-01T00:00:00+00:00",
    "version": "0.1.0",
    "git_commit": "abc",
    "platform": "Linux-test",
    "python": "3.11",
    "torch": "2.13.0",
    "opencv": "5.0.0",
    "device": "cpu",
    "threads": 2,
}


def hpatches_rows(
    descriptor: str,
    verification: float,
    matching: float,
    retrieval: float,
    dataset: str = "hpatches-synth",
    split: str = "full",
    tasks=("verification", "matching", "retrieval"),
    weights: str = "none",
    notes: str = "",
) -> list[ResultRow]:
    """Score rows as the runner writes them; the 'mean' noise row is the mean of easy/hard/tough."""
    out: list[ResultRow] = []

    def add(task, metric, value, variant="", subset="all"):
        for noise, factor in NOISE_FACTOR.items():
            out.append(
                ResultRow(
                    descriptor,
                    weights,
                    dataset,
                    split,
                    "python",
                    task,
                    metric,
                    value * factor,
                    noise=noise,
                    subset=subset,
                    variant=variant,
                    notes=notes,
                )
            )
        out.append(
            ResultRow(
                descriptor,
                weights,
                dataset,
                split,
                "python",
                task,
                metric,
                value,
                noise="mean",
                subset=subset,
                variant=variant,
                notes=notes,
            )
        )

    if "verification" in tasks:
        for variant in ("intra", "inter", "mean"):
            add("verification", "ap", verification, variant)
            add("verification", "auc", min(verification + 0.25, 0.99) / 1.4, variant)
    if "matching" in tasks:
        add("matching", "map", matching)
        add("matching", "map", matching * 1.1, subset="i")
        add("matching", "map", matching * 0.9, subset="v")
    if "retrieval" in tasks:
        for variant in ("pool=100", "pool=20000", "pool=mean"):
            add("retrieval", "map", retrieval * (1.1 if variant == "pool=100" else 1.0), variant)
    return out


def timing_rows(descriptor: str, ms_per_patch: float, batches=(256,)) -> list[TimingRow]:
    return [
        TimingRow(
            descriptor,
            "none",
            "cpu",
            b,
            "65",
            "patch",
            ms_per_patch,
            ms_per_patch * 0.05,
            1000.0 / ms_per_patch,
            12.0,
            threads=2,
            repeats=10,
        )
        for b in batches
    ]


def make_record(shift: float = 0.0, slow: float = 1.0, calibration_ms: float = 40.0) -> Record:
    """Two descriptors; ``shift`` is added to every accuracy value, ``slow`` multiplies the times."""
    results = hpatches_rows("sift-opencv", 0.60, 0.2615, 0.50) + hpatches_rows("rootsift-opencv", 0.62, 0.2722, 0.52)
    results = [dataclasses.replace(r, value=r.value + shift) for r in results]
    timings = timing_rows("sift-opencv", 0.25 * slow, batches=(16, 256)) + timing_rows(
        "rootsift-opencv", 0.27 * slow, batches=(16, 256)
    )
    return Record(dict(METADATA), results, timings, Calibration("conv+matmul on cpu, threads=2", calibration_ms))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("report")
    write_record(root / "runs" / "run-1.json", make_record())
    written = build_report([root / "runs"], root / "out")
    return root / "out", written


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


# ---- build_report ----------------------------------------------------------------------------------
def test_report_markdown_has_summary_task_tables_and_figure_links(report_dir):
    out, written = report_dir
    text = (out / "report.md").read_text()
    assert written[0] == out / "report.md"
    assert "## Summary" in text and "## Per task (Easy / Hard / Tough)" in text
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert summary.index("rootsift-opencv") < summary.index("sift-opencv |")  # sorted by matching mAP
    assert "27.22" in summary and "26.15" in summary  # matching headline, in percent
    assert "0.250" in summary  # per-patch time (ms) of sift-opencv at the record's first batch
    per_task = text.split("## Per task (Easy / Hard / Tough)", 1)[1]
    for task in ("verification", "matching", "retrieval"):
        assert f"sift-opencv: {task} (hpatches-synth, split full, python protocol, %)" in per_task
    assert "| Easy" in per_task and "36.61" in per_task  # matching easy = 26.15 x 1.4
    assert "![HPatches: verification, matching and retrieval](hpatches.png)" in text
    assert "(throughput.png)" in text


def test_report_figures_are_valid_pngs_at_readme_width(report_dir):
    out, written = report_dir
    for name in ("hpatches.png", "throughput.png"):
        assert out / name in written and is_png(out / name), name
    width, height = png_size(out / "hpatches.png")
    assert width >= 1200 and 300 <= height < width  # rendered at 2x README width, wide and short
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temporaries


def test_summary_has_the_runner_headlines_of_all_three_tasks(report_dir):
    out, _ = report_dir
    summary = (out / "report.md").read_text().split("## Summary", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in summary.splitlines() if line.startswith("| rootsift-opencv"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # verification = imbalanced AP (not AUC), matching = subset all, retrieval = pool=mean (not pool=100)
    assert cells == ["rootsift-opencv", "hpatches-synth", "full", "62.00", "27.22", "52.00", "0.270"]


# ---- plot_hpatches ---------------------------------------------------------------------------------
def test_bars_use_the_headline_rows_and_easy_hard_tough_markers():
    rows = hpatches_rows("sift-opencv", 0.60, 0.26, 0.50) + hpatches_rows("hardnet", 0.88, 0.52, 0.70)
    bars = _hpatches_bars(rows)
    verification = bars["verification"]
    assert [b.label for b in verification] == ["sift-opencv", "hardnet"]  # bottom-up: best on top
    assert verification[1].mean == pytest.approx(0.88)  # imbalanced AP, not the balanced AUC
    assert dict(verification[1].noise) == pytest.approx({"easy": 0.88 * 1.4, "hard": 0.88 * 0.9, "tough": 0.88 * 0.7})
    assert bars["retrieval"][1].mean == pytest.approx(0.70)  # pool=mean, not pool=100
    assert dict(bars["retrieval"][1].noise)["easy"] == pytest.approx(0.70 * 1.4)
    assert [b.mean for b in bars["matching"]] == pytest.approx([0.26, 0.52])  # subset all, not i/v


def test_bars_accept_plain_headline_rows_and_skip_errors():
    rows = [
        ResultRow("d", "none", "x", "full", "python", task, "map", value, noise=noise)
        for task in ("verification", "matching")
        for noise, value in (("easy", 0.5), ("mean", 0.4))
    ]
    rows.append(ResultRow("broken", "none", "x", "full", "python", "matching", "skipped", None, error="no weights"))
    bars = _hpatches_bars(rows)
    assert [(b.label, b.mean, b.noise) for b in bars["matching"]] == [("d", 0.4, (("easy", 0.5),))]
    assert len(bars["verification"]) == 1 and bars["retrieval"] == []


def test_labels_name_dataset_and_split_only_when_several():
    rows = hpatches_rows("sift-opencv", 0.6, 0.26, 0.5) + hpatches_rows("sift-opencv", 0.5, 0.2, 0.4, split="a")
    labels = sorted(b.label for b in _hpatches_bars(rows)["matching"])
    assert labels == ["sift-opencv\n(hpatches-synth/a)", "sift-opencv\n(hpatches-synth/full)"]
    rows = hpatches_rows("hardnet", 0.9, 0.5, 0.7, weights="liberty", notes="weights saw HPatches")
    assert [b.label for b in _hpatches_bars(rows)["matching"]] == ["hardnet [liberty] *"]


def test_plot_with_a_missing_task_still_draws(tmp_path):
    rows = hpatches_rows("sift-opencv", 0.6, 0.26, 0.5, tasks=("matching",))
    path = plot_hpatches(rows, tmp_path / "fig" / "hpatches.png")
    assert path == tmp_path / "fig" / "hpatches.png" and is_png(path)


# ---- the CLI: report and check ---------------------------------------------------------------------
def test_cli_report(tmp_path):
    write_record(tmp_path / "runs" / "a.json", make_record())
    result = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'out' / 'report.md'}" in result.output
    assert is_png(tmp_path / "out" / "hpatches.png")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "--output", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "no JSON records" in result.output


@pytest.fixture()
def baseline(tmp_path) -> Path:
    return write_record(tmp_path / "results" / "baseline.json", make_record())


def failing_rows(markdown: str, status: str) -> list[str]:
    """The 'row' cells of the diff table lines with this status, in table order."""
    cells = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]
    return [c[1] for c in cells if c[-1] == status]


def check(baseline: Path, current: Record, tmp_path: Path, *options: str):
    path = write_record(tmp_path / "runs" / "current.json", current)
    return CliRunner().invoke(main, ["check", "--baseline", str(baseline), str(path.parent), *options])


def test_check_passes_against_its_own_record(baseline, tmp_path):
    result = CliRunner().invoke(main, ["check", "--baseline", str(baseline), str(baseline)])
    assert result.exit_code == 0, result.output
    assert "desc-bench check: passed" in result.output and "WORSE" not in result.output


def test_check_fails_when_accuracy_drops_five_points(baseline, tmp_path):
    result = check(baseline, make_record(shift=-0.05), tmp_path)
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    worse = failing_rows(result.output, "WORSE")
    assert "rootsift-opencv / hpatches-synth / full / python / matching / map / mean" in worse
    assert len(worse) == len(make_record().results)  # every accuracy row, named, and nothing else
    assert "-5.00" in result.output and "SLOWER" not in result.output


def test_check_fails_when_twice_slower(baseline, tmp_path):
    result = check(baseline, make_record(slow=2.0), tmp_path)
    assert result.exit_code == 1, result.output
    assert failing_rows(result.output, "SLOWER") == [
        f"{d} / cpu / batch {b} / 65 per patch" for d in ("rootsift-opencv", "sift-opencv") for b in (16, 256)
    ]
    assert "WORSE" not in result.output


def test_check_normalises_speed_by_the_calibration(baseline, tmp_path):
    # a machine twice slower overall: descriptor and calibration workload both take twice as long
    result = check(baseline, make_record(slow=2.0, calibration_ms=80.0), tmp_path)
    assert result.exit_code == 0, result.output


def test_check_tolerance_is_absolute_in_fractions(baseline, tmp_path):
    result = check(baseline, make_record(shift=-0.004), tmp_path)  # 0.4 points: within the default 0.005
    assert result.exit_code == 0, result.output
    result = check(baseline, make_record(shift=-0.004), tmp_path, "--accuracy-tolerance", "0.003")
    assert result.exit_code == 1 and "WORSE" in result.output


def test_check_fails_when_a_row_disappears(baseline, tmp_path):
    current = make_record()
    current = dataclasses.replace(current, results=[r for r in current.results if r.task != "retrieval"])
    result = check(baseline, current, tmp_path)
    assert result.exit_code == 1 and "MISSING" in result.output


# ---- merged run and time records; figure titles, lines, bands and legends --------------------------
@pytest.fixture()
def figures(monkeypatch) -> list:
    """Every matplotlib Figure saved during the test (they are built without pyplot)."""
    from matplotlib.figure import Figure

    saved, original = [], Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def run_record(time_batch=256, device="cpu") -> Record:
    """A run of beblid-opencv timed at its --time-batch, as `desc-bench run` writes it."""
    meta = dict(METADATA, device=device, command="run", config={"time_batch": time_batch})
    results = hpatches_rows("beblid-opencv", 0.72, 0.47, 0.58)
    return Record(meta, results, timing_rows("beblid-opencv", 0.105, batches=(time_batch,)), None)


def time_record(device="cpu") -> Record:
    """A `desc-bench time` record of the same descriptor at batches 1..1024 (7.918 ms/patch at batch 1)."""
    rows = [
        dataclasses.replace(t, device=device, median_ms=ms, per_second=1000 / ms)
        for t, ms in zip(timing_rows("beblid-opencv", 1.0, batches=(1, 16, 256, 1024)), (7.918, 0.6, 0.2, 0.19))
    ]
    return Record(dict(METADATA, device=device, command="time"), [], rows, Calibration("c", 20.0))


def summary_cells(records) -> tuple[list[str], list[str]]:
    lines = [line for line in summary_table(records).splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [c.strip() for c in lines[2].strip("|").split("|")]


def test_summary_time_is_the_runs_own_batch_never_another():
    for records in ([time_record(), run_record()], [run_record(), time_record()]):
        header, cells = summary_cells(records)
        assert header[-1] == "ms/patch (batch 256)" and cells[-1] == "0.105"
    # a run timed at batch 16 whose own row is missing takes the time record's batch-16 row, not batch 1
    run = dataclasses.replace(run_record(time_batch=16), timings=[])
    header, cells = summary_cells([time_record(), run])
    assert header[-1] == "ms/patch (batch 16)" and cells[-1] == "0.600"
    # another device's timing is not this run's
    run = dataclasses.replace(run_record(), timings=[])
    assert summary_cells([time_record(device="cuda"), run])[1][-1] == "-"
    # runs at different batches: each cell says its batch
    other = run_record(time_batch=16)
    other = dataclasses.replace(other, results=[dataclasses.replace(r, split="a") for r in other.results])
    header, _ = summary_cells([run_record(), other])
    assert header[-1] == "ms/patch" and "0.105 (batch 16)" in summary_table([run_record(), other])


def test_throughput_lines_are_per_record_sorted_and_the_band_is_clipped(tmp_path, figures):
    from desc_bench.results.plots import BAND_CLIP, _iqr_band, plot_throughput

    first = time_record().timings
    again = [dataclasses.replace(t, median_ms=t.median_ms * 1.3) for t in reversed(first)]  # another day, reversed
    loaded = dataclasses.replace(first[1], iqr_ms=first[1].median_ms * 4)  # IQR 4x the median
    rows = [first[0], loaded, *first[2:], *again]
    plot_throughput(rows, tmp_path / "t.png", sources=["time-1"] * 4 + ["time-2"] * 4)
    [figure] = figures
    [ax] = figure.axes
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert len(lines) == 2  # one per record, not one zig-zag through both
    for line in lines:
        assert list(line.get_xdata()) == [1, 16, 256, 1024]
    low, high, clipped = _iqr_band(loaded)
    rate = 1000 / loaded.median_ms
    assert clipped and low == pytest.approx(rate / BAND_CLIP) and high == pytest.approx(rate * BAND_CLIP)
    assert not _iqr_band(first[0])[2]
    title = figure._suptitle.get_text()
    assert "random inputs, no dataset (cpu, 2 threads)" in title and "1 band(s) wider than x2 clipped" in title
    labels = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert labels == ["beblid-opencv (cpu, 65)", "time-1", "time-2"]


def test_every_figure_names_its_dataset(tmp_path, figures):
    from desc_bench.results.plots import plot_mma

    rows = hpatches_rows("sift-opencv", 0.6, 0.26, 0.5) + hpatches_rows("hardnet", 0.88, 0.52, 0.7)
    plot_hpatches(rows, tmp_path / "h.png")
    mma = [
        ResultRow(d, "none", "hpatches-seq", "all", "mma", "mma", f"mma@{t}", top - 0.3 / t, subset=s)
        for d, top in (("sift-opencv", 0.8), ("hardnet", 0.9))
        for s in ("all", "i", "v")
        for t in range(1, 11)
    ]
    plot_mma(mma, tmp_path / "m.png")
    hpatches, curves = figures
    assert "HPatches tasks on hpatches-synth (split full, python protocol)" in hpatches._suptitle.get_text()
    assert curves._suptitle.get_text().startswith("MMA on hpatches-seq (D2-Net protocol")
    # MMA: the y axis fits the data (0.5..0.87 here) instead of 0..1; one legend for all panels, best first
    for ax in curves.axes:
        low, high = ax.get_ylim()
        assert 0.4 < low < 0.5 and 0.87 < high < 0.95
        assert ax.get_legend() is None
    [legend] = curves.legends
    assert [t.get_text() for t in legend.get_texts()] == ["hardnet", "sift-opencv"]
    assert legend.get_texts()[0].get_fontsize() >= 9
    # several datasets: all named
    two = rows + hpatches_rows("sift-opencv", 0.5, 0.2, 0.4, dataset="hpatches", split="a")
    from desc_bench.results.plots import hpatches_title

    assert "hpatches/a, hpatches-synth/full (python protocol)" in hpatches_title(two)


def test_summary_ranks_lower_is_better_ascending_and_keeps_settings_apart():
    """FPR95 ranks the lowest first; pck-msnet rows of two matchers are two lines, not one."""

    def row(descriptor, protocol, task, metric, value, subset, variant=""):
        return ResultRow(descriptor, "none", "d", "all", protocol, task, metric, value, subset=subset, variant=variant)

    rows = [
        row("good", "fpr95", "verification", "fpr95", 0.05, "mean"),
        row("bad", "fpr95", "verification", "fpr95", 0.40, "mean"),
        row("sift", "pck-msnet", "pck", "pck@3", 0.61, "all", "det=harris:budget=1000:matcher=exact"),
        row("sift", "pck-msnet", "pck", "pck@3", 0.58, "all", "det=harris:budget=1000:matcher=flann"),
    ]
    table = summary_table([Record(dict(METADATA), rows, [], None)])
    fpr, pck = table.split("**pck-msnet**")
    assert fpr.index("| good") < fpr.index("| bad")
    assert "matcher=exact" in pck and "matcher=flann" in pck and "| variant" in pck
    assert pck.index("matcher=exact") < pck.index("matcher=flann")  # higher PCK first
