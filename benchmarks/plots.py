"""Draw the Performance page's figures from a run's JSON.

Usage::

    nox -s bench_plots                                   # latest run -> docs/images/
    python benchmarks/plots.py benchmarks/results/latest.json --out docs/images

Reads the ``summary`` a run of ``run.py`` wrote and draws, one row of plots
per Python in it:

- ``bench-scaling.png`` (workload i): µs per item as items grow (100
  workers) and as workers grow, antflow beside the hand-written ordered
  window (the faster of the two where both ran), and antflow's peak RSS as
  items grow;
- ``bench-features.png`` (workload h): each feature's cost as a ratio to
  plain ``map``, against the 1.3x target;
- ``bench-rate.png`` (workload j): the rate a ``RateLimiter(r)`` delivered,
  divided by r, against the 5 % band.

A figure whose workload is not in the run is not drawn (an old one stays).
Each figure's caption names the run it shows: its date, mode, the antflow
commit, and the load average, since a number from a busy machine should never
pass for a clean one. matplotlib is needed here only, never by antflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from catalog import WORKLOADS_BY_KEY
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from results import OTHER_LOAD, other_load

HERE = Path(__file__).resolve().parent
BACKENDS = ("asyncio", "uvloop", "trio")
COLORS = {"asyncio": "tab:blue", "uvloop": "tab:green", "trio": "tab:red"}
WINDOWS = ("window-asyncio", "window-anyio")
Rows = list[dict[str, Any]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "json", type=Path, nargs="?", default=HERE / "results" / "latest.json"
    )
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images")
    args = parser.parse_args(argv)
    document = json.loads(args.json.read_text(encoding="utf-8"))
    rows: Rows = document["summary"]
    meta: dict[str, Any] = document["meta"]
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, draw in (
        ("bench-scaling.png", scaling),
        ("bench-features.png", features),
        ("bench-rate.png", rate),
    ):
        figure = draw(rows, meta)
        if figure is None:
            continue
        figure.text(0.5, 0.005, caption(meta), ha="center", va="bottom", fontsize=8)
        figure.savefig(args.out / name, dpi=110)
        plt.close(figure)
        drawn.append(name)
    print(f"wrote {', '.join(drawn) or 'nothing'} to {args.out}", file=sys.stderr)
    return 0


def caption(meta: dict[str, Any]) -> str:
    low, high = meta["load_average"]
    other = other_load(meta)
    load = f"load average {low} to {high}" + (
        " (busy machine)" if other is not None and other > OTHER_LOAD else ""
    )
    return (
        f"{meta['mode']} run of {meta['when']}, antflow at {meta['antflow_revision']}, "
        f"{meta['rounds']} round(s), medians, {meta['cpus']} CPUs, {load}"
    )


def _pick(rows: Rows, **match: Any) -> Rows:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _pythons(rows: Rows, workload: str) -> list[str]:
    return sorted({r["python"] for r in _pick(rows, workload=workload)})


def _grid(
    pythons: list[str], columns: int, title: str
) -> tuple[Figure, list[list[Axes]]]:
    figure, axes = plt.subplots(
        len(pythons),
        columns,
        figsize=(4.6 * columns, 3.4 * len(pythons) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    figure.suptitle(title)
    engine = figure.get_layout_engine()
    if engine is not None:
        engine.set(rect=(0, 0.03, 1, 0.97))  # type: ignore[call-arg]  # room for the caption
    return figure, [list(row) for row in axes]


def scaling(rows: Rows, meta: dict[str, Any]) -> Figure | None:
    pythons = _pythons(rows, "scaling")
    if not pythons:
        return None
    figure, grid = _grid(pythons, 3, "i. Cost per item of ordered map_iter as it grows")
    for python, (by_items, by_workers, memory) in zip(pythons, grid, strict=True):
        cases = _pick(rows, workload="scaling", python=python)
        items_axis = [r for r in cases if r["workers"] == 100]
        at = max((r["n"] for r in cases if r["workers"] != 100), default=None)
        workers_axis = [r for r in cases if r["n"] == at]
        for backend in BACKENDS:
            for impl, style, label in (
                ("antflow", "-", "antflow"),
                (WINDOWS, "--", "hand-written window"),
            ):
                _line(
                    by_items,
                    items_axis,
                    backend,
                    impl,
                    "n",
                    "us_per_item",
                    style,
                    label,
                )
                _line(
                    by_workers,
                    workers_axis,
                    backend,
                    impl,
                    "workers",
                    "us_per_item",
                    style,
                    label,
                )
            _line(
                memory,
                items_axis,
                backend,
                "antflow",
                "n",
                "peak_rss_mb",
                "-",
                "antflow",
            )
        by_items.set(
            xscale="log",
            xlabel="items (100 workers)",
            ylabel="µs per item",
            title=f"Python {python}: items",
        )
        by_workers.set(
            xscale="log",
            xlabel=f"workers ({at:,} items)" if at else "workers",
            ylabel="µs per item",
            title=f"Python {python}: workers",
        )
        memory.set(
            xscale="log",
            xlabel="items (100 workers)",
            ylabel="peak RSS, MB",
            title=f"Python {python}: antflow's memory",
        )
        for axes in (by_items, by_workers, memory):
            axes.set_ylim(bottom=0)
            axes.grid(True, alpha=0.3)
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=7)
    return figure  # fmt: skip


def _line(
    axes: Axes,
    cases: Rows,
    backend: str,
    impl: str | tuple[str, ...],
    x: str,
    y: str,
    style: str,
    label: str,
) -> None:
    impls = (impl,) if isinstance(impl, str) else impl
    best: dict[float, float] = {}  # several implementations: the fastest at each x
    for r in cases:
        if r["backend"] == backend and r["impl"] in impls and r.get(y) is not None:
            best[r[x]] = min(best.get(r[x], r[y]), r[y])
    if best:
        xs, ys = zip(*sorted(best.items()), strict=True)
        axes.plot(
            xs,
            ys,
            style,
            marker="o",
            markersize=3,
            color=COLORS[backend],
            label=f"{label}, {backend}",
        )


def features(rows: Rows, meta: dict[str, Any]) -> Figure | None:
    pythons = _pythons(rows, "features")
    if not pythons:
        return None
    figure, grid = _grid(
        pythons, 1, "h. What each feature costs, as a ratio to the plain path"
    )
    figure.set_size_inches(12, 3.9 * len(pythons) + 0.9)
    for python, (axes,) in zip(pythons, grid, strict=True):
        cases = _pick(rows, workload="features", python=python, impl="antflow")
        ran = {r["point"] for r in cases}
        points = [
            p for p in WORKLOADS_BY_KEY["features"].points if p.versus and p.name in ran
        ]
        width = 0.8 / len(BACKENDS)
        for b, backend in enumerate(BACKENDS):
            ratios = []
            for point in points:
                base = _value(cases, point.versus or "plain", backend)
                value = _value(cases, point.name, backend)
                ratios.append(value / base if value and base else 0)
            xs = [i + (b - 1) * width for i in range(len(points))]
            bars = axes.bar(xs, ratios, width, color=COLORS[backend], label=backend)
            axes.bar_label(
                bars, labels=[f"{r:.1f}" if r else "" for r in ratios], fontsize=6
            )
        axes.axhline(
            1.3,
            color="black",
            linestyle="--",
            linewidth=1,
            label="target 1.3\N{MULTIPLICATION SIGN}",
        )
        axes.axhline(1.0, color="grey", linewidth=0.8)
        axes.set_yscale("log")
        axes.set_xticks(
            range(len(points)), [p.short or p.name for p in points], fontsize=8
        )
        axes.set(ylabel="µs per item ÷ plain map's", title=f"Python {python}")
        axes.legend(fontsize=7, ncols=4)
        axes.grid(True, axis="y", alpha=0.3)
    return figure  # fmt: skip


def _value(cases: Rows, point: str, backend: str) -> float | None:
    found = [
        r["us_per_item"]
        for r in cases
        if r["point"] == point and r["backend"] == backend
    ]
    return found[0] if found else None


def rate(rows: Rows, meta: dict[str, Any]) -> Figure | None:
    pythons = _pythons(rows, "rate")
    if not pythons:
        return None
    figure, grid = _grid(
        pythons, 1, "j. Starts per second a RateLimiter(r) delivered, ÷ r"
    )
    figure.set_size_inches(7, 3.6 * len(pythons) + 0.9)
    for python, (axes,) in zip(pythons, grid, strict=True):
        cases = _pick(rows, workload="rate", python=python, impl="antflow")
        for backend in BACKENDS:
            points = sorted(
                (r["starts_per_s"] / r["rate_ratio"], r["rate_ratio"])
                for r in cases
                if r["backend"] == backend and r.get("rate_ratio")
            )
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(
                    xs, ys, "-o", markersize=3, color=COLORS[backend], label=backend
                )
        axes.axhspan(0.95, 1.05, color="grey", alpha=0.25, label="target: r ± 5 %")
        axes.set(
            xscale="log",
            yscale="log",
            xlabel="r, starts per second asked for",
            ylabel="delivered ÷ r",
            title=f"Python {python}",
        )
        axes.legend(fontsize=7)
        axes.grid(True, which="both", alpha=0.3)
    return figure  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
