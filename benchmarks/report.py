"""The markdown report: the targets' verdicts first, then one table per workload.

``python benchmarks/report.py RUN.json`` prints the report of a run again,
from the runs its JSON holds, with the tables and targets as they are now.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from typing import Any

from catalog import (
    BACKENDS,
    IMPLS,
    IMPORTS,
    TIMES,
    WORKLOADS,
    Point,
    Workload,
)
from results import OTHER_LOAD, Key, Summary, other_load, ratio, table_reference
from targets import TARGETS


def render_markdown(
    meta: dict[str, Any], summary: Summary, verdicts: list[dict[str, Any]]
) -> str:
    lines = [f"# antflow benchmarks ({meta['mode']} mode)", "", _header(meta), ""]
    other = other_load(meta)
    if other is not None and other > OTHER_LOAD:
        lines += [
            f"**Taken under load** (about {other} besides the run's own, by the "
            "1-minute load average): other work shared the CPUs, so read these "
            "numbers as rough.",
            "",
        ]
    if meta["mode"] == "quick":
        lines += [
            f"*Quick mode: {meta['rounds']} round(s), smaller sizes and fewer points "
            "(see each title). The targets are stated for the full sizes.*",
            "",
        ]
    for what, why in meta.get("unavailable", {}).items():
        lines += [f"- Left out, {what}: {why}"]
    for why in meta.get("left_out", []):
        lines += [f"- Left out: {why}"]
    lines += _targets_table(verdicts, meta)
    for workload in WORKLOADS:
        if workload.key in meta["workloads"]:
            lines += _workload_section(summary, workload, meta)
    lines += _first_use_table(summary, meta)
    if meta.get("failures"):
        lines += ["", "## Failed runs", ""]
        lines += [f"- {failure}" for failure in meta["failures"]]
    if meta.get("timed_out"):
        lines += ["", "## Peers that did not finish in time (not failures)", ""]
        lines += [f"- {run}" for run in meta["timed_out"]]
    return "\n".join(lines) + "\n"


def _header(meta: dict[str, Any]) -> str:
    versions = " · ".join(
        f"Python {python}: "
        + ", ".join(f"{k} {v}" for k, v in found.items() if k != "python")
        for python, found in meta["versions"].items()
    )
    return (
        f"{meta['when']} · {meta['platform']} · {meta['cpus']} CPUs · "
        f"{meta['rounds']} round(s), one process per run, medians · {versions} · "
        f"antflow at {meta.get('antflow_revision', 'unknown')} · "
        "load average {} at start, {} at end".format(*meta["load_average"])
        + f" · {meta['seconds']:.0f} s"
    )


def _columns(meta: dict[str, Any]) -> list[str]:
    return [b for b in BACKENDS if b in meta["backends"]]


def _targets_table(verdicts: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    if not verdicts:
        return []
    backends = _columns(meta)
    lines = [
        "",
        "## Targets (antflow, this repo)",
        "",
        "Each number is a ratio measured in this run (same Python and backend) or an "
        "absolute value; `id` names the target in the short JSON summary.",
        "",
        "| id | target | source | Python | " + " | ".join(backends) + " |",
        "|---" * (4 + len(backends)) + "|",
    ]
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for verdict in verdicts:
        rows[verdict["id"], verdict["python"]][verdict["backend"]] = verdict
    for (target_id, python), by_backend in rows.items():
        first = next(iter(by_backend.values()))
        if "-" in by_backend:
            cells = [_verdict_cell(by_backend["-"])] + [""] * (len(backends) - 1)
        else:
            cells = [
                _verdict_cell(by_backend[b]) if b in by_backend else ""
                for b in backends
            ]
        lines.append(
            f"| {target_id} | {first['target']} | {first['source']} | {python} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _verdict_cell(verdict: dict[str, Any]) -> str:
    value = verdict["value"]
    if value is None:
        return "not run"
    shown = f"{value:.2f}{TIMES}" if verdict["relative"] else _absolute(verdict)
    return f"{shown} met" if verdict["met"] else f"**{shown} missed**"


def _absolute(verdict: dict[str, Any]) -> str:
    value = verdict["value"]
    return {
        "peak_rss_mb": f"{value:.1f} MB",
        "t_quick": _seconds(value),
        "us_per_submit": f"{value:.2f} µs",
        "bytes_per_future": f"{value:.0f} B",
        "rate_ratio": f"{value:.3f}{TIMES} r",
    }.get(verdict["metric"], f"{value:.3g}")


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _workload_section(
    summary: Summary, workload: Workload, meta: dict[str, Any]
) -> list[str]:
    size = meta["sizes"][workload.key]
    title = workload.title.format(n=size, ideal=_ideal(workload, size))
    workers = (
        ""
        if workload.key in ("import", "scaling", "offload_cancel")
        else f" ({workload.workers} workers)"
    )
    feeds = [t.id for t in TARGETS if t.workload == workload.key]
    lines = [
        "",
        f"## {workload.letter}. {title}{workers}",
        "",
        workload.how_to_read,
        "",
    ]
    if feeds:
        lines += ["Targets: " + ", ".join(f"`{t}`" for t in feeds), ""]
    pythons = [
        p for p in meta["pythons"] if any(k[:3:2] == (workload.key, p) for k in summary)
    ]
    for python in pythons:
        if len(meta["pythons"]) > 1:
            lines += [f"Python {python}:", ""]
        lines += [*_table(summary, workload, python, meta), ""]
    return lines[:-1]


def _ideal(workload: Workload, size: int) -> float:
    from catalog import ideal_sleep_seconds

    return (
        ideal_sleep_seconds(size, workload.workers) if workload.key == "sleep" else 0.0
    )


def _table(
    summary: Summary, workload: Workload, python: str, meta: dict[str, Any]
) -> list[str]:
    if workload.key == "import":
        lines = ["| import | time |", "|---|---|"]
        for row in IMPORTS:
            cell = _cell(summary, workload, ("import", "", python, "-", row.name))
            if cell:
                lines.append(f"| {row.label} | {cell} |")
        return lines
    backends = _columns(meta)
    points = _points_run(summary, workload, python, meta["mode"] == "quick")
    sweep = len(points) > 1 or points[0].name != ""
    head = "| point | implementation |" if sweep else "| implementation |"
    lines = [
        head + " " + " | ".join(backends) + " |",
        "|---" * (len(backends) + (2 if sweep else 1)) + "|",
    ]
    for point in points:
        for label, impls in _rows(workload):
            cells = [
                next(
                    (
                        c
                        for impl in impls
                        if (
                            c := _cell(
                                summary,
                                workload,
                                (workload.key, point.name, python, b, impl),
                            )
                        )
                    ),
                    "",
                )
                for b in backends
            ]
            if any(cells):
                start = f"| {point.label} | {label} |" if sweep else f"| {label} |"
                lines.append(start + " " + " | ".join(cells) + " |")
    return lines


def _points_run(
    summary: Summary, workload: Workload, python: str, quick: bool
) -> list[Point]:
    ran = {key[1] for key in summary if key[0] == workload.key and key[2] == python}
    points = [p for p in workload.points_for(quick) if p.name in ran]
    if workload.key == "scaling":  # the items axis first, then the workers axis
        points.sort(key=lambda p: p.workers != 100)
    return points


def _rows(workload: Workload) -> list[tuple[str, list[str]]]:
    """(label, implementations whose cell goes there, first one found wins)."""
    if workload.only_reference:
        references = {r for b in BACKENDS for r in workload.references_on(b)}
        return [("**antflow** (this repo)", ["antflow"])] + [
            (impl.label, [impl.name]) for impl in IMPLS if impl.name in references
        ]
    return [
        (impl.label, [impl.name]) for impl in IMPLS if workload.key in impl.workloads
    ]


def _cell(summary: Summary, workload: Workload, key: Key) -> str:
    numbers = summary.get(key)
    if numbers is None:
        return ""
    if not numbers["runs"]:
        return "**failed**"
    cell = _cell_numbers(summary, workload, key, numbers)
    failed = int(numbers["failed"])
    return f"{cell} · **{failed} run(s) failed**" if failed else cell


def _cell_numbers(
    summary: Summary, workload: Workload, key: Key, numbers: dict[str, float]
) -> str:
    if workload.cells == "submit":
        return (
            f"{numbers['us_per_submit']:.2f} µs · {numbers['bytes_per_future']:.0f} B"
        )
    if workload.cells == "import":
        return (
            f"{_seconds(numbers['import_s'])} · {_mark(summary, workload, key, 'import_s')}"
            f" · {numbers['modules_loaded']:.0f} modules"
        )
    rss = f"{numbers['peak_rss_mb']:.0f} MB"
    if workload.cells == "hol":
        return f"{_seconds(numbers['t_quick'])} (all {_seconds(numbers['t_slow'])}) · {rss}"
    if workload.cells == "crawl":
        mark = _mark(summary, workload, key, workload.metric)
        return (
            f"{_seconds(numbers['elapsed'])} · {mark} · fast hosts "
            f"{_seconds(numbers['t_fast'])} · {rss}"
        )
    if workload.cells == "rate":
        return f"{numbers['starts_per_s']:,.0f}/s · {numbers['rate_ratio']:.3f}{TIMES} r · {rss}"
    if workload.cells == "cancel":
        return (
            f"slot free in {_seconds(numbers['freed_s'])} · next result in "
            f"{_seconds(numbers['next_s'])}"
        )
    if workload.cells == "offload":
        start = (
            f" · start {_seconds(numbers['start_s'])}" if "start_s" in numbers else ""
        )
        mark = _mark(summary, workload, key, "work_s")
        return f"{_seconds(numbers['work_s'])} · {mark}{start} · {rss}"
    if workload.cells == "per_item":
        mark = _mark(summary, workload, key, "us_per_item")
        return f"{numbers['us_per_item']:.2f} µs · {mark} · {rss}"
    return f"{_seconds(numbers['elapsed'])} · {_mark(summary, workload, key, workload.metric)} · {rss}"


def _mark(summary: Summary, workload: Workload, key: Key, metric: str) -> str:
    over = table_reference(key, summary)
    if over == key:
        return "*ref*"
    if over is None:
        points = (*workload.points, *(workload.quick_points or ()))
        return "*ref*" if any(p.versus == key[1] for p in points) else "no ref"
    share = ratio(summary, key, metric, over)
    if share is None:
        return "n/a"
    # Two decimals, or three below 0.1, where two would round a batch's 0.007 to 0.01.
    return f"{share:.2f}{TIMES}" if share >= 0.1 else f"{share:.3f}{TIMES}"


def _first_use_table(summary: Summary, meta: dict[str, Any]) -> list[str]:
    """The warm-up each run does before its clock starts, over all workloads."""
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (_, _, python, backend, impl), numbers in summary.items():
        if "first_use_s" in numbers:
            samples[python, backend, impl].append(numbers["first_use_s"])
    if not samples:
        return []
    backends = _columns(meta)
    lines = [
        "",
        "## First use in a process (not in the times above)",
        "",
        "Cells: median time of the warm-up every run does before its clock starts: "
        "one `map` of 100 one-checkpoint tasks (for h, the same point, small). It is "
        "mostly one-time cost: imports a library defers to its first use (anyio loads "
        "most of itself then) and first calls.",
        "",
        "| implementation | Python | " + " | ".join(backends) + " |",
        "|---" * (len(backends) + 2) + "|",
    ]
    for version in meta["pythons"]:
        for row in IMPLS:
            cells = [
                _seconds(statistics.median(samples[version, backend, row.name]))
                if samples.get((version, backend, row.name))
                else ""
                for backend in backends
            ]
            if any(cells):
                lines.append(f"| {row.label} | {version} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from results import judge_targets, summarize

    if len(argv) != 1:
        sys.exit(__doc__)
    document = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    summary = summarize(document["runs"])
    verdicts = judge_targets(summary, document["meta"])
    print(render_markdown(document["meta"], summary, verdicts), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
