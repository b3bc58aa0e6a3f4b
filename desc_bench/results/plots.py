"""PNG plots made from result records only (matplotlib, Agg canvas, no global backend switch).

``plot_hpatches(rows, path)``: the HPatches paper's three panels (Patch Verification, Image Matching,
Patch Retrieval; Balntas et al., CVPR 2017): one horizontal bar per descriptor at the headline mAP
(mean of Easy / Hard / Tough), markers at the Easy, Hard and Tough values, best on top.

``plot_throughput(rows, path)``: throughput (patches/s or images/s, log scale) against batch size
(log2 scale), one line per descriptor, device and precision, with the interquartile range shaded.
Each function builds its own ``matplotlib.figure.Figure`` and writes the file atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..io.atomic import atomic_path
from ..records.schema import TimingRow


def plot_throughput(rows: Sequence[TimingRow], path: Path | str, title: str = "Descriptor throughput") -> Path:
    """Throughput against batch size per descriptor; rows with an error are left out.

    One panel per unit ("patch", "image"). Returns the path of the PNG written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    good = [r for r in rows if r.error is None and r.median_ms and r.per_second]
    units = sorted({r.unit for r in good}) or ["patch"]
    fig = Figure(figsize=(6.4 * len(units), 4.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(units), squeeze=False)[0]
    for ax, unit in zip(axes, units):
        series: dict[str, list[TimingRow]] = {}
        for r in good:
            if r.unit == unit:
                label = f"{r.descriptor} ({r.device}{', fp16' if r.fp16 else ''}, {r.input_size})"
                series.setdefault(label, []).append(r)
        for label, group in sorted(series.items()):
            group = sorted(group, key=lambda r: r.batch)
            batches = [r.batch for r in group]
            rates = [1000.0 / r.median_ms for r in group]
            (line,) = ax.plot(batches, rates, marker="o", label=label)
            spread = [r.iqr_ms or 0.0 for r in group]
            low = [1000.0 / (r.median_ms + s / 2) for r, s in zip(group, spread)]
            high = [1000.0 / max(r.median_ms - s / 2, r.median_ms * 1e-3) for r, s in zip(group, spread)]
            ax.fill_between(batches, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{unit}es per second" if unit == "patch" else f"{unit}s per second")
        ax.grid(True, which="both", alpha=0.3)
        if series:
            ax.legend(fontsize="small")
            batches = sorted({r.batch for r in good if r.unit == unit})
            ax.set_xticks(batches, [str(b) for b in batches])
        else:
            ax.text(0.5, 0.5, "no successful timings", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{title}: per {unit}" if len(units) > 1 else title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# ---- HPatches three-panel figure (Balntas et al., CVPR 2017, figure of the three tasks) ----------
from dataclasses import dataclass  # noqa: E402

from ..records.schema import ResultRow  # noqa: E402
from .tables import _descriptor_label, is_headline  # noqa: E402

_HPATCHES_PANELS = (  # task, panel title, x label
    ("verification", "Patch Verification", "mAP (imbalanced AP) [%]"),
    ("matching", "Image Matching", "mAP [%]"),
    ("retrieval", "Patch Retrieval", "mAP [%]"),
)
# (metric, variant) of each task's headline row, best first: the runner's rows (hpatches_tasks:
# verification "ap"/"mean" = imbalanced AP over e/h/t x intra/inter, retrieval "pool=mean" or the
# matlab protocol's "pool=all"), then the plain is_headline rows of tables.py (variant "").
_HEADLINE_PREFERENCE = {
    "verification": (("ap", "mean"), ("ap", ""), ("map", "")),
    "matching": (("map", ""),),
    "retrieval": (("map", "pool=mean"), ("map", "pool=all"), ("map", "")),
}
_MARKERS = (  # noise, legend label, marker, face colour
    ("easy", "Easy", "o", "white"),
    ("hard", "Hard", "s", "0.55"),
    ("tough", "Tough", "^", "black"),
)
_BAR_COLOURS = (
    "#8fb8de",
    "#f4b183",
    "#a9d18e",
    "#c9a0dc",
    "#ffe699",
    "#9dc3c1",
    "#d9a5a5",
    "#bfbfbf",
    "#b4c7e7",
    "#c5e0b4",
    "#e2b0d0",
    "#f8cbad",
)


@dataclass(frozen=True)
class _Bar:
    """One descriptor in one panel: the headline value and its Easy/Hard/Tough values (fractions)."""

    label: str
    mean: float
    noise: tuple[tuple[str, float], ...]


def _headline_rank(row: ResultRow) -> int | None:
    """Position of ``row`` in its task's headline preference (lower is better); None: not a headline."""
    if row.error is not None or row.value is None or row.noise != "mean" or row.subset != "all":
        return None
    preference = _HEADLINE_PREFERENCE.get(row.task, ())
    if (row.metric, row.variant) in preference:
        return preference.index((row.metric, row.variant))
    if is_headline(row) and row.metric != "auc":
        return len(preference)
    return None


def _hpatches_bars(rows: Sequence[ResultRow]) -> dict[str, list[_Bar]]:
    """Per task, one bar per (descriptor, weights, dataset, split, protocol), in ascending order
    (``barh`` draws the first at the bottom, so the best ends on top)."""
    good = [r for r in rows if r.error is None and r.value is not None]
    chosen: dict[tuple, tuple[int, ResultRow]] = {}
    for r in good:
        rank = _headline_rank(r) if r.task in _HEADLINE_PREFERENCE else None
        key = (r.task, r.descriptor, r.weights, r.dataset, r.split, r.protocol)
        if rank is not None and (key not in chosen or rank <= chosen[key][0]):
            chosen[key] = (rank, r)
    noise_values: dict[tuple, float] = {}
    for r in good:
        if r.noise in ("easy", "hard", "tough"):
            noise_values[
                (
                    r.task,
                    r.descriptor,
                    r.weights,
                    r.dataset,
                    r.split,
                    r.protocol,
                    r.metric,
                    r.variant,
                    r.subset,
                    r.noise,
                )
            ] = r.value
    sources = {(r.dataset, r.split) for _, r in chosen.values()}
    protocols = {r.protocol for _, r in chosen.values()}
    bars: dict[str, list[_Bar]] = {task: [] for task, *_ in _HPATCHES_PANELS}
    for key, (_, r) in chosen.items():
        label = _descriptor_label(r)
        extra = ([f"{r.dataset}/{r.split}"] if len(sources) > 1 else []) + ([r.protocol] if len(protocols) > 1 else [])
        if extra:
            label += f"\n({', '.join(extra)})"  # second line: keeps the panels wide enough at README width
        marks = tuple(
            (noise, noise_values[key + (r.metric, r.variant, r.subset, noise)])
            for noise, *_ in _MARKERS
            if key + (r.metric, r.variant, r.subset, noise) in noise_values
        )
        bars[r.task].append(_Bar(label, r.value, marks))
    for task in bars:
        bars[task].sort(key=lambda b: (b.mean, b.label))
    return bars


def plot_hpatches(
    rows: Sequence[ResultRow], path: Path | str, title: str = "HPatches (mean of Easy / Hard / Tough)"
) -> Path:
    """The three HPatches task panels as the HPatches paper draws them; returns the PNG path.

    Panels (left to right): Patch Verification (imbalanced AP), Image Matching and Patch Retrieval
    mAP. Each panel has one horizontal bar per descriptor at its headline value (noise "mean",
    subset "all"; see ``tables.is_headline`` and ``bench.hpatches_tasks.headline``), sorted best
    on top, the value printed beside it, and markers at the Easy / Hard / Tough values of the same
    metric and variant. Labels gain "(dataset/split)" when the rows come from more than one, and
    the protocol when more than one is present. Rows with an error are left out; a task without
    rows says so in its panel. Values are drawn as percentages (x 100).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bars = _hpatches_bars(rows)
    labels = sorted({b.label for group in bars.values() for b in group})
    colour = {label: _BAR_COLOURS[i % len(_BAR_COLOURS)] for i, label in enumerate(labels)}
    n = max([len(group) for group in bars.values()] + [1])
    longest = max([len(line) for label in labels for line in label.split("\n")] + [8])
    row_height = 0.44 if any("\n" in label for label in labels) else 0.34  # inches per bar
    width = min(max(9.0, 3 * (1.6 + 0.068 * longest) + 0.4), 15.0)  # inches; 9 in = README width at 100 dpi
    fig = Figure(figsize=(width, 1.6 + row_height * n), dpi=200, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(_HPATCHES_PANELS), squeeze=False)[0]
    for ax, (task, panel_title, xlabel) in zip(axes, _HPATCHES_PANELS):
        group = bars.get(task, [])
        ax.set_title(panel_title, fontsize=10, fontweight="bold")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(labelsize=9)
        if not group:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ys = list(range(len(group)))
        ax.barh(
            ys,
            [b.mean * 100 for b in group],
            height=0.72,
            color=[colour[b.label] for b in group],
            edgecolor="0.35",
            linewidth=0.6,
            zorder=2,
        )
        for noise, _, marker, face in _MARKERS:
            points = [(dict(b.noise)[noise] * 100, y) for b, y in zip(group, ys) if noise in dict(b.noise)]
            if points:
                ax.scatter(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker=marker,
                    s=30,
                    facecolor=face,
                    edgecolor="black",
                    linewidth=0.8,
                    zorder=3,
                )
        right = max(max([b.mean] + [v for _, v in b.noise]) for b in group) * 100
        for b, y in zip(group, ys):
            end = max([b.mean] + [v for _, v in b.noise]) * 100
            ax.text(end + right * 0.06, y, f"{b.mean * 100:.2f}", va="center", ha="left", fontsize=9, zorder=4)
        ax.set_xlim(0, max(right * 1.3, 1.0))  # room for the value text
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_yticks(ys, [b.label for b in group])
        ax.grid(True, axis="x", alpha=0.3, zorder=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    handles = [Patch(facecolor="#dddddd", edgecolor="0.35", label="mean (bar)")]
    handles += [
        Line2D(
            [], [], linestyle="", marker=marker, markerfacecolor=face, markeredgecolor="black", markersize=7, label=name
        )
        for _, name, marker, face in _MARKERS
    ]
    notes = sorted(
        {r.notes for r in rows if r.notes and r.error is None and r.task in {t for t, *_ in _HPATCHES_PANELS}}
    )
    if notes:
        handles.append(Patch(visible=False, label="* " + "; ".join(notes)))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=9,
        frameon=False,
        handletextpad=0.4,
        columnspacing=1.4,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# ---- MMA curves over the thresholds (D2-Net figure) --------------------------------------------


def _pair_aggregates(rows, protocols, subsets=("all",)):
    """Aggregate rows of the given protocols (no per-pair rows, no errors)."""
    return [
        r
        for r in rows
        if r.protocol in protocols and r.error is None and ":pair=" not in r.variant and r.subset in subsets
    ]


def _pair_label(row: ResultRow) -> str:
    return (
        row.descriptor
        if not row.variant
        else f"{row.descriptor} ({row.variant.replace('det=', '').replace(':budget=', ':')})"
    )


def plot_mma(rows, path) -> Path:
    """PNG of MMA curves over the thresholds (1..10 px): panels overall / illumination / viewpoint,
    one line per descriptor (and dataset when several). No global pyplot state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen = _pair_aggregates(rows, ("mma",), ("all", "i", "v"))
    chosen = [r for r in chosen if r.metric.startswith("mma@")]
    datasets = list(dict.fromkeys(r.dataset for r in chosen))
    figure = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(figure)
    titles = {"all": "Overall", "i": "Illumination", "v": "Viewpoint"}
    for n, subset in enumerate(("all", "i", "v")):
        ax = figure.add_subplot(1, 3, n + 1)
        lines = {}
        for r in chosen:
            if r.subset == subset:
                label = _pair_label(r) + (f" [{r.dataset}]" if len(datasets) > 1 else "")
                lines.setdefault(label, []).append((float(r.metric.split("@")[1]), r.value))
        for label, points in lines.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
        ax.set_title(titles[subset])
        ax.set_xlabel("threshold [px]")
        ax.set_xlim(1, 10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if n == 0:
            ax.set_ylabel("MMA")
        if lines and n == 2:
            ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
