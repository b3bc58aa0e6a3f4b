"""PNG plots made from result records only (matplotlib, Agg canvas, no global backend switch).

``plot_hpatches(rows, path)``: the HPatches paper's three panels (Patch Verification, Image Matching,
Patch Retrieval; Balntas et al., CVPR 2017): one horizontal bar per descriptor at the headline mAP
(mean of Easy / Hard / Tough), markers at the Easy, Hard and Tough values, best on top.

``plot_throughput(rows, path, sources=...)``: throughput (patches/s or images/s, log scale) against
batch size (log2 scale), one line per record and descriptor setting, with the interquartile range
shaded (clipped, so that a loaded machine's spread does not swamp the lines).
Each function builds its own ``matplotlib.figure.Figure`` and writes the file atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io.atomic import atomic_path
from ..records.schema import ResultRow, TimingRow
from .tables import _descriptor_label, is_headline

BAND_CLIP = 2.0  # the IQR band is drawn within [rate / 2, rate x 2]: a loaded machine's spread would swamp the plot


@dataclass(frozen=True)
class _Series:
    """One line of the throughput plot: one descriptor setting of one record, one row per batch size."""

    unit: str
    label: str  # the descriptor setting: one colour per setting
    source: str  # the record: one line style per record
    rows: tuple[TimingRow, ...]  # sorted by batch


def _throughput_series(rows: Sequence[TimingRow], sources: Sequence[str] | None) -> list[_Series]:
    """Rows grouped per (record, unit, descriptor, weights, device, fp16, input size, threads)."""
    sources = list(sources) if sources is not None else [""] * len(rows)
    if len(sources) != len(rows):
        raise ValueError(f"{len(sources)} sources for {len(rows)} timing rows")
    several = len(set(sources)) > 1
    threads = {r.threads for r in rows}
    groups: dict[tuple, dict[int, TimingRow]] = {}
    for r, source in zip(rows, sources):
        if r.error is None and r.median_ms and r.per_second:
            key = (source, r.unit, r.descriptor, r.weights, r.device, r.fp16, r.input_size, r.threads)
            groups.setdefault(key, {}).setdefault(r.batch, r)  # a repeated batch size is drawn once
    out = []
    for (source, unit, descriptor, weights, device, fp16, size, n_threads), by_batch in groups.items():
        how = [device] + (["fp16"] if fp16 else []) + [size] + ([f"{n_threads} threads"] if len(threads) > 1 else [])
        label = f"{descriptor}{f' [{weights}]' if weights not in ('none', '') else ''} ({', '.join(how)})"
        out.append(_Series(unit, label, source if several else "", tuple(by_batch[b] for b in sorted(by_batch))))
    return sorted(out, key=lambda s: (s.unit, s.label, s.source))


_LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # per record: line style, marker


def _iqr_band(row: TimingRow) -> tuple[float, float, bool]:
    """(low, high) rate of the IQR band around ``1000 / median`` units/s, clipped within a factor
    ``BAND_CLIP`` of the median rate, and whether it was clipped (an IQR near or above the median
    would reach 0 ms: an infinite rate)."""
    rate, half = 1000.0 / row.median_ms, (row.iqr_ms or 0.0) / 2
    low = 1000.0 / (row.median_ms + half)
    high = 1000.0 / (row.median_ms - half) if row.median_ms > half else math.inf
    clipped = low < rate / BAND_CLIP or high > rate * BAND_CLIP
    return max(low, rate / BAND_CLIP), min(high, rate * BAND_CLIP), clipped


def _throughput_title(rows: Sequence[TimingRow]) -> str:
    good = [r for r in rows if r.error is None]
    devices = ", ".join(sorted({r.device for r in good})) or "-"
    threads = sorted({r.threads for r in good if r.threads})
    where = devices + (f", {'/'.join(map(str, threads))} threads" if threads else "")
    return f"Descriptor throughput on random inputs, no dataset ({where})"


def plot_throughput(
    rows: Sequence[TimingRow], path: Path | str, title: str | None = None, sources: Sequence[str] | None = None
) -> Path:
    """Throughput against batch size; rows with an error are left out. Returns the PNG path.

    One panel per unit ("patch", "image"); one line per descriptor setting and record (``sources``:
    a record label for each row, e.g. its file name; rows of different records are never joined
    into one line), its points sorted by batch size. Shaded: the interquartile range, clipped to
    within a factor ``BAND_CLIP`` of the median rate (a note says how many points were clipped).
    Axes: batch size (log2) and units per second (log). The title names the inputs and device.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    series = _throughput_series(rows, sources)
    units = sorted({s.unit for s in series}) or ["patch"]
    colours = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(s.label for s in series))}
    styles = {src: _LINE_STYLES[i % len(_LINE_STYLES)] for i, src in enumerate(dict.fromkeys(s.source for s in series))}
    fig = Figure(
        figsize=(max(9.0, 6.4 * len(units)), 5.2 + 0.22 * (len(colours) + 2) / 3), dpi=120, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(units), squeeze=False)[0]
    clipped = 0
    for ax, unit in zip(axes, units):
        mine = [s for s in series if s.unit == unit]
        for s in mine:
            batches = [r.batch for r in s.rows]
            rates = [1000.0 / r.median_ms for r in s.rows]
            style, marker = styles[s.source]
            (line,) = ax.plot(batches, rates, linestyle=style, marker=marker, color=colours[s.label], linewidth=1.8)
            low, high, cut = zip(*(_iqr_band(r) for r in s.rows))
            clipped += sum(cut)
            ax.fill_between(batches, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size", fontsize=11)
        ax.set_ylabel(f"{unit}es per second" if unit == "patch" else f"{unit}s per second", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if mine:
            batches = sorted({r.batch for s in mine for r in s.rows})
            ax.set_xticks(batches, [str(b) for b in batches])
        else:
            ax.text(0.5, 0.5, "no successful timings", ha="center", va="center", transform=ax.transAxes)
        if len(units) > 1:
            ax.set_title(f"per {unit}", fontsize=11)
    handles = [Line2D([], [], color=c, linewidth=2.5, label=label) for label, c in colours.items()]
    if len(styles) > 1:  # one entry per record: its line style
        handles += [Line2D([], [], color="0.3", linestyle=ls, marker=m, label=src) for src, (ls, m) in styles.items()]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=10, frameon=False)
    note = "shaded: interquartile range"
    if clipped:
        note += f"; {clipped} band(s) wider than x{BAND_CLIP:g} clipped (a loaded machine?)"
    fig.suptitle(f"{title or _throughput_title(rows)}\n{note}", fontsize=12)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# ---- HPatches three-panel figure (Balntas et al., CVPR 2017, figure of the three tasks) ----------

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
    interval: tuple[float, float] | None = None  # confidence interval of the mean: an error bar


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
        bars[r.task].append(_Bar(label, r.value, marks, r.interval))
    for task in bars:
        bars[task].sort(key=lambda b: (b.mean, b.label))
    return bars


def hpatches_title(rows: Sequence[ResultRow]) -> str:
    """'HPatches tasks on hpatches-synth (split full, python protocol): ...': what the figure shows."""
    tasks = {t for t, *_ in _HPATCHES_PANELS}
    good = [r for r in rows if r.error is None and r.task in tasks]
    sources = sorted({(r.dataset, r.split) for r in good})
    protocols = ", ".join(sorted({r.protocol for r in good})) or "-"
    if len(sources) == 1:
        where = f"{sources[0][0]} (split {sources[0][1]}, {protocols} protocol)"
    else:
        where = ", ".join(f"{d}/{s}" for d, s in sources) + f" ({protocols} protocol)"
    return f"HPatches tasks on {where}: bars = mean of Easy / Hard / Tough"


def plot_hpatches(rows: Sequence[ResultRow], path: Path | str, title: str | None = None) -> Path:
    """The three HPatches task panels as the HPatches paper draws them; returns the PNG path.

    Panels (left to right): Patch Verification (imbalanced AP), Image Matching and Patch Retrieval
    mAP. Each panel has one horizontal bar per descriptor at its headline value (noise "mean",
    subset "all"; see ``tables.is_headline`` and ``bench.hpatches_tasks.headline``), sorted best
    on top, the value printed beside it, and markers at the Easy / Hard / Tough values of the same
    metric and variant. Labels gain "(dataset/split)" when the rows come from more than one, and
    the protocol when more than one is present. Rows with an error are left out; a task without
    rows says so in its panel. Values are drawn as percentages (x 100). The title names the
    dataset, split and protocol (:func:`hpatches_title`) unless ``title`` is given.
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
            xerr=[
                [(b.mean - b.interval[0]) * 100 if b.interval else 0 for b in group],
                [(b.interval[1] - b.mean) * 100 if b.interval else 0 for b in group],
            ],
            error_kw={"elinewidth": 1.0, "capsize": 3, "ecolor": "0.2", "zorder": 4},
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
        right = max(max([b.mean, *(b.interval or ())] + [v for _, v in b.noise]) for b in group) * 100
        for b, y in zip(group, ys):
            end = max([b.mean, *(b.interval or ())] + [v for _, v in b.noise]) * 100
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
    fig.suptitle(title or hpatches_title(rows), fontsize=11)
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
    one line per descriptor (and dataset when several), the same colour in every panel, the legend
    best first.

    Readable at a glance: the y axis (shared) is fitted to the data with a margin instead of 0..1,
    one legend for all panels sits below them, and the title names the dataset(s) and protocol.
    No global pyplot state is touched; the file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen = [r for r in _pair_aggregates(rows, ("mma",), ("all", "i", "v")) if r.metric.startswith("mma@")]
    datasets = list(dict.fromkeys(r.dataset for r in chosen))
    curves: dict[tuple[str, str], list[tuple]] = {}  # (subset, label) -> (threshold, value, low, high)
    for r in chosen:
        label = _pair_label(r) + (f" [{r.dataset}]" if len(datasets) > 1 else "")
        low, high = r.interval or (r.value, r.value)
        curves.setdefault((r.subset, label), []).append((float(r.metric.split("@")[1]), r.value, low, high))
    labels = list(dict.fromkeys(label for _, label in curves))
    labels.sort(key=lambda label: -max(p[1] for (_, other), pts in curves.items() if other == label for p in pts))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    values = [v for points in curves.values() for p in points for v in p[1:]]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    margin = max(0.03, 0.08 * (high - low))
    figure = Figure(figsize=(13, 4.6 + 0.3 * ((len(labels) + 3) // 4)), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3, sharey=True)
    titles = {"all": "Overall", "i": "Illumination", "v": "Viewpoint"}
    for ax, subset in zip(axes, ("all", "i", "v")):
        for label in labels:
            points = sorted(curves.get((subset, label), []))
            if points:
                t, v, lo, hi = zip(*points)
                ax.plot(t, v, marker="o", markersize=4, linewidth=1.8, color=colours[label], label=label)
                ax.fill_between(t, lo, hi, color=colours[label], alpha=0.15, linewidth=0)  # the intervals
        ax.set_title(titles[subset], fontsize=12)
        ax.set_xlabel("threshold [px]", fontsize=11)
        ax.set_xlim(0.5, 10.5)
        ax.set_xticks(range(1, 11))
        ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        if not any(s == subset for s, _ in curves):
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes, color="0.4")
    axes[0].set_ylabel("MMA (mean matching accuracy)", fontsize=11)
    if labels:
        handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
        figure.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 4),
            fontsize=10,
            frameon=False,
        )
    where = ", ".join(datasets) or "no dataset"
    bands = "; bands: confidence intervals over sequences" if any(r.interval for r in chosen) else ""
    figure.suptitle(f"MMA on {where} (D2-Net protocol: mutual nearest neighbours{bands})", fontsize=13)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path
