"""Turn the runs into medians, ratios, the targets' verdicts and a markdown report."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from catalog import (
    BACKENDS,
    IMPLS,
    IMPORTS,
    TARGETS,
    TIMES,
    WORKLOADS,
    Target,
    Workload,
    ideal_sleep_seconds,
)

Key = tuple[str, str, str]
"""(workload, backend, implementation)"""


def summarize(runs: Iterable[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    """Per case: the median of every number its successful runs reported,
    how many runs succeeded ("runs") and how many failed ("failed")."""
    samples: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    outcomes: dict[Key, list[bool]] = defaultdict(list)
    for run in runs:
        key = run["workload"], run["backend"], run["impl"]
        ok = run.get("error") is None
        outcomes[key].append(ok)
        if ok:
            for name, value in run["numbers"].items():
                if isinstance(value, int | float):
                    samples[key][name].append(float(value))
    summary: dict[Key, dict[str, float]] = {}
    for key, results in outcomes.items():
        numbers = {name: statistics.median(v) for name, v in samples[key].items()}
        numbers["runs"] = sum(results)
        numbers["failed"] = len(results) - sum(results)
        if "peak_rss" in numbers:
            numbers["peak_rss_mb"] = numbers["peak_rss"] / 1e6
        summary[key] = numbers
    return summary


def reference_value(
    summary: dict[Key, dict[str, float]],
    workload: Workload,
    backend: str,
    size: int,
    metric: str,
) -> float | None:
    """What a ratio divides by for ``workload`` on ``backend``, or None."""
    reference = workload.references.get(backend)
    if reference == "ideal":
        return (
            ideal_sleep_seconds(size, workload.workers) if metric == "elapsed" else None
        )
    if reference is None:
        return None
    return summary.get((workload.key, backend, reference), {}).get(metric)


def ratio(
    summary: dict[Key, dict[str, float]],
    workload: Workload,
    backend: str,
    impl: str,
    size: int,
) -> float | None:
    value = summary.get((workload.key, backend, impl), {}).get(workload.metric)
    base = reference_value(summary, workload, backend, size, workload.metric)
    return value / base if value is not None and base else None


def judge_targets(
    summary: dict[Key, dict[str, float]], sizes: dict[str, int], backends: list[str]
) -> list[dict[str, Any]]:
    """antflow's number against each target of the issue, per backend run."""
    verdicts = []
    for target in TARGETS:
        workload = next(w for w in WORKLOADS if w.key == target.workload)
        if workload.key not in sizes:
            continue  # not run this time
        for backend in target.backends:
            if backend in backends or backend == "-":
                size = sizes[workload.key]
                verdicts.append(_judge(summary, target, workload, backend, size))
    return verdicts


def _judge(
    summary: dict[Key, dict[str, float]],
    target: Target,
    workload: Workload,
    backend: str,
    size: int,
) -> dict[str, Any]:
    value = summary.get((workload.key, backend, "antflow"), {}).get(target.metric)
    if value is not None and target.relative:
        base = reference_value(summary, workload, backend, size, target.metric)
        value = value / base if base else None
    return {
        "workload": workload.key,
        "letter": workload.letter,
        "backend": backend,
        "target": target.text,
        "metric": target.metric,
        "relative": target.relative,
        "limit": target.limit,
        "value": value,
        "met": None if value is None else value <= target.limit,
    }


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _cell(
    summary: dict[Key, dict[str, float]],
    workload: Workload,
    backend: str,
    impl: str,
    size: int,
) -> str:
    numbers = summary.get((workload.key, backend, impl))
    if numbers is None:
        return ""
    if not numbers["runs"]:
        return "**failed**"
    cell = _cell_numbers(summary, workload, backend, impl, size)
    failed = int(numbers["failed"])
    return f"{cell} · **{failed} run(s) failed**" if failed else cell


def _cell_numbers(
    summary: dict[Key, dict[str, float]],
    workload: Workload,
    backend: str,
    impl: str,
    size: int,
) -> str:
    numbers = summary.get((workload.key, backend, impl))
    if numbers is None:
        return ""
    if workload.key == "submit":
        return (
            f"{numbers['us_per_submit']:.2f} µs · {numbers['bytes_per_future']:.0f} B"
        )
    if workload.key == "import":
        share = ratio(summary, workload, backend, impl, size)
        mark = (
            "*ref*"
            if impl == workload.references.get(backend)
            else f"{share:.2f}{TIMES}"
        )
        return f"{_seconds(numbers['import_s'])} · {mark} · {numbers['modules_loaded']:.0f} modules"
    rss = f"{numbers['peak_rss_mb']:.0f} MB"
    if workload.key == "hol":
        return f"{_seconds(numbers['t_quick'])} (all {_seconds(numbers['t_slow'])}) · {rss}"
    share = ratio(summary, workload, backend, impl, size)
    if impl == workload.references.get(backend):
        mark = "*ref*"
    else:
        mark = "n/a" if share is None else f"{share:.2f}{TIMES}"
    return f"{_seconds(numbers['elapsed'])} · {mark} · {rss}"


_HOW_TO_READ = {
    "map": "Cells: median wall time · ratio to *ref* (same backend) · peak RSS of the process.",
    "as_completed": "Cells: median wall time · ratio to *ref* (same backend) · peak RSS. "
    "asyncio TaskGroup here means tasks read with `asyncio.as_completed`; the anyio "
    "rows stream results through a memory object stream; aiometer uses `amap`.",
    "map_iter": "Cells: median wall time · ratio to *ref* (same backend) · peak RSS. "
    "The pools and aiometer yield in completion order, antflow in input order.",
    "sleep": "Cells: median wall time · ratio to the ideal (n / workers x 10 ms) · peak RSS.",
    "hol": "Cells: time until the last quick task is done (until the last slow one) · peak RSS. "
    "Baselines use the plain pattern: a slow task waits for the semaphore inside its pool slot.",
    "submit": "Cells: µs per `submit()` (raw baselines: per task created) · RSS growth per queued "
    "item, after a full GC.",
    "import": "Cells: median `import` time in a fresh process · ratio to `import anyio` · "
    "modules that the import loaded.",
}


def render_markdown(
    meta: dict[str, Any],
    summary: dict[Key, dict[str, float]],
    verdicts: list[dict[str, Any]],
) -> str:
    sizes: dict[str, int] = meta["sizes"]
    lines = [
        f"# antflow benchmarks ({meta['mode']} mode)",
        "",
        f"{meta['when']} · Python {meta['python']} · {meta['platform']} · {meta['cpus']} CPUs · "
        f"{meta['rounds']} round(s), one process per run, medians · "
        + " · ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f" · antflow at {meta.get('antflow_revision', 'unknown')}"
        + " · load average {} at start, {} at end".format(*meta["load_average"]),
        "",
    ]
    if meta["mode"] == "quick":
        smaller = [w.letter for w in WORKLOADS if sizes.get(w.key, w.size) < w.size]
        lines += [
            f"*Quick mode: {meta['rounds']} round(s); {', '.join(smaller) or 'no workload'}"
            " at smaller sizes. The targets are stated for the full sizes.*",
            "",
        ]
    if verdicts:
        lines += [
            "## Targets (antflow, this repo)",
            "",
            "| | target | backend | measured | |",
            "|---|---|---|---|---|",
        ]
    for verdict in verdicts:
        value = verdict["value"]
        if value is None:
            shown, status = "n/a", "not run"
        else:
            shown = (
                f"{value:.2f}{TIMES}"
                if verdict["relative"]
                else _format_target_value(verdict)
            )
            status = "met" if verdict["met"] else "**missed**"
        lines.append(
            f"| {verdict['letter']} | {verdict['target']} | {verdict['backend']} | {shown} | {status} |"
        )
    for workload in WORKLOADS:
        lines += _workload_table(summary, workload, sizes.get(workload.key), meta)
    lines += _first_use_table(summary, meta)
    if meta.get("failures"):
        lines += ["", "## Failed runs", ""]
        lines += [f"- {failure}" for failure in meta["failures"]]
    return "\n".join(lines) + "\n"


def _format_target_value(verdict: dict[str, Any]) -> str:
    value = verdict["value"]
    return {
        "peak_rss_mb": f"{value:.1f} MB",
        "t_quick": _seconds(value),
        "us_per_submit": f"{value:.2f} µs",
        "bytes_per_future": f"{value:.0f} B",
    }.get(verdict["metric"], f"{value:.3g}")


def _first_use_table(
    summary: dict[Key, dict[str, float]], meta: dict[str, Any]
) -> list[str]:
    """The warm-up each run does before its clock starts, over all workloads."""
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (_, backend, impl), numbers in summary.items():
        if "first_use_s" in numbers:
            samples[backend, impl].append(numbers["first_use_s"])
    if not samples:
        return []
    backends = [b for b in BACKENDS if b in meta["backends"]]
    lines = [
        "",
        "## First use in a process (not in the times above)",
        "",
        "Cells: median time of the warm-up every run does before its clock starts: "
        "one `map` of 100 one-checkpoint tasks. It is mostly one-time cost: "
        "imports a library defers to its first use (anyio loads most of itself "
        "then) and first calls.",
        "",
        "| implementation | " + " | ".join(backends) + " |",
        "|---" * (len(backends) + 1) + "|",
    ]
    for impl in IMPLS:
        cells = [
            _seconds(statistics.median(samples[backend, impl.name]))
            if samples.get((backend, impl.name))
            else ""
            for backend in backends
        ]
        if any(cells):
            lines.append(f"| {impl.label} | " + " | ".join(cells) + " |")
    return lines


def _workload_table(
    summary: dict[Key, dict[str, float]],
    workload: Workload,
    size: int | None,
    meta: dict[str, Any],
) -> list[str]:
    if size is None:
        return []
    ideal = ideal_sleep_seconds(size, workload.workers)
    title = workload.title.format(n=size, ideal=ideal)
    workers = "" if workload.key == "import" else f" ({workload.workers} workers)"
    lines = [
        "",
        f"## {workload.letter}. {title}{workers}",
        "",
        _HOW_TO_READ[workload.key],
        "",
    ]
    if workload.key == "import":
        lines += ["| import | time |", "|---|---|"]
        for row in IMPORTS:
            cell = _cell(summary, workload, "-", row.name, size)
            if cell:
                lines.append(f"| {row.label} | {cell} |")
        return lines
    backends = [b for b in BACKENDS if b in meta["backends"]]
    lines += [
        "| implementation | " + " | ".join(backends) + " |",
        "|---" * (len(backends) + 1) + "|",
    ]
    for impl in IMPLS:
        cells = [
            _cell(summary, workload, backend, impl.name, size) for backend in backends
        ]
        if any(cells):
            lines.append(f"| {impl.label} | " + " | ".join(cells) + " |")
    return lines
