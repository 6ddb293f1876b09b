"""From the children's JSON lines to medians, ratios, the targets' verdicts and the files on disk.

A case is keyed (workload, point, Python, backend, implementation). Its
summary holds the median of every number its runs reported, plus
``us_per_item`` (wall time per item) and ``peak_rss_mb``. A ratio always
divides two medians of the same run, Python and backend.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catalog import WORKLOADS, WORKLOADS_BY_KEY, ideal_sleep_seconds
from targets import TARGETS, Target

Key = tuple[str, str, str, str, str]
"""(workload, point, python, backend, implementation)"""
Summary = dict[Key, dict[str, float]]

OTHER_LOAD = 0.5
"""Load beyond the run's own above this, on 2 cores, means something else ran."""


def other_load(meta: dict[str, Any]) -> float | None:
    """How busy the machine was with work besides the run, from the 1-minute
    load averages taken at its start and end.

    The runs keep one CPU busy back to back, so the end's average counts
    about 1.0 of the run's own (less for a run shorter than a minute): only
    what is above that was something else. Before the runs, all of it was.
    """
    before, after = meta["load_average"]
    found = [
        load
        for load in (before, None if after is None else after - 1.0)
        if load is not None
    ]
    return round(max(found), 2) if found else None


def read_child_output(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """A child's numbers (its last stdout line), or the error that ended it."""
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {returncode}: {tail}"}
    numbers = json.loads(lines[-1])
    return {"numbers": numbers, "versions": numbers.pop("versions", {})}


def summarize(runs: Iterable[dict[str, Any]]) -> Summary:
    """Per case: the median of every number its successful runs reported,
    how many runs succeeded ("runs") and how many failed ("failed")."""
    samples: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    outcomes: dict[Key, list[bool]] = defaultdict(list)
    sizes: dict[Key, tuple[int, int]] = {}
    for run in runs:
        key = run["workload"], run["point"], run["python"], run["backend"], run["impl"]
        sizes[key] = run["n"], run["workers"]
        ok = run.get("error") is None
        outcomes[key].append(ok)
        if ok:
            for name, value in run["numbers"].items():
                if isinstance(value, int | float):
                    samples[key][name].append(float(value))
    summary: Summary = {}
    for key, results in outcomes.items():
        numbers = {name: statistics.median(v) for name, v in samples[key].items()}
        numbers["runs"] = sum(results)
        numbers["failed"] = len(results) - sum(results)
        numbers["n"], numbers["workers"] = sizes[key]
        if "peak_rss" in numbers:
            numbers["peak_rss_mb"] = numbers["peak_rss"] / 1e6
        if "elapsed" in numbers and key[0] != "import":
            numbers["us_per_item"] = numbers["elapsed"] / numbers["n"] * 1e6
        summary[key] = numbers
    return summary


def table_reference(key: Key, summary: Summary) -> Key | str | None:
    """What a table's ratio for ``key`` divides by: a case, "ideal", or None.

    Where a workload names several references for the backend, the fastest
    of them in ``summary`` (same point, Python and backend) is the one.
    """
    workload_key, point_name, python, backend, impl = key
    workload = WORKLOADS_BY_KEY[workload_key]
    point = next((p for p in workload.points if p.name == point_name), None)
    if point is None and workload.quick_points:
        point = next((p for p in workload.quick_points if p.name == point_name), None)
    if point is not None and point.versus:
        return workload_key, point.versus, python, backend, impl
    names = workload.references_on(backend)
    if names == ("ideal",):
        return "ideal"
    keys = [(workload_key, point_name, python, backend, name) for name in names]
    ran = [k for k in keys if summary.get(k, {}).get(workload.metric) is not None]
    if not ran:
        return keys[0] if keys else None
    return min(ran, key=lambda k: summary[k][workload.metric])


def ratio(
    summary: Summary, key: Key, metric: str, over: Key | str | None
) -> float | None:
    value = summary.get(key, {}).get(metric)
    if value is None or over is None:
        return None
    base: float | None
    if over == "ideal":
        numbers = summary[key]
        ideal = ideal_sleep_seconds(int(numbers["n"]), int(numbers["workers"]))
        base = ideal if metric == "elapsed" else None
    else:
        base = summary.get(over, {}).get(metric) if isinstance(over, tuple) else None
    return value / base if base else None


def _target_over(target: Target, key: Key, summary: Summary) -> Key | str | None:
    workload, point, python, backend, impl = key
    if target.over is None:
        return None
    if target.over == "reference":
        return table_reference(key, summary)
    kind, _, name = target.over.partition(":")
    if kind == "impl":
        return workload, point, python, backend, name
    if kind == "point":
        return workload, name, python, backend, impl
    if kind == "workload":
        return name, point, python, backend, impl
    raise ValueError(f"target {target.id}: cannot read over={target.over!r}")


def judge_targets(summary: Summary, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """antflow's number against each target, per Python and backend that ran it.

    A target whose workload ran but whose point did not (quick mode runs
    fewer points) gets verdicts without a value: "not run".
    """
    verdicts: list[dict[str, Any]] = []
    for target in TARGETS:
        if target.workload not in meta["workloads"]:
            continue  # not run this time
        keys = [
            (target.workload, target.point, python, backend, "antflow")
            for python in meta["pythons"]
            for backend in target.backends
            if backend in meta["backends"] or backend == "-"
        ]
        # Where antflow ran but what it is held against did not (a Python that
        # ran only a few rows), there is no verdict to give.
        ran = [
            key
            for key in keys
            if key in summary
            and not (
                isinstance(over := _target_over(target, key, summary), tuple)
                and over not in summary
            )
        ]
        if not ran:
            first = next((key[2] for key in summary if key[0] == target.workload), None)
            ran = [key for key in keys if key[2] == first]
        verdicts += [_judge(summary, target, key) for key in ran]
    return verdicts


def _judge(summary: Summary, target: Target, key: Key) -> dict[str, Any]:
    value = summary.get(key, {}).get(target.metric)
    if target.over is not None:
        value = ratio(summary, key, target.metric, _target_over(target, key, summary))
    met = None
    if value is not None:
        met = value <= target.limit and (target.low is None or value >= target.low)
    return {
        "id": target.id,
        "target": target.text,
        "source": target.source,
        "workload": target.workload,
        "letter": WORKLOADS_BY_KEY[target.workload].letter,
        "point": target.point,
        "python": key[2],
        "backend": key[3],
        "metric": target.metric,
        "relative": target.over is not None,
        "limit": target.limit,
        "low": target.low,
        "value": value,
        "met": met,
    }


def short_summary(
    meta: dict[str, Any], summary: Summary, verdicts: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a note can cite: the run, every verdict, and each case's median and ratio."""
    cases: list[dict[str, Any]] = []
    for key, numbers in sorted(summary.items(), key=_order):
        workload = WORKLOADS_BY_KEY[key[0]]
        metric = "us_per_item" if workload.cells in ("per_item",) else workload.metric
        cases.append(
            {
                **dict(
                    zip(
                        ("workload", "point", "python", "backend", "impl"),
                        key,
                        strict=True,
                    )
                ),
                "n": int(numbers["n"]),
                "workers": int(numbers["workers"]),
                "metric": metric,
                "value": numbers.get(metric),
                "ratio": ratio(summary, key, metric, table_reference(key, summary)),
                "versus": _versus(key, summary),
                "peak_rss_mb": numbers.get("peak_rss_mb"),
                "runs": int(numbers["runs"]),
                "failed": int(numbers["failed"]),
            }
        )
    keep = ("mode", "when", "pythons", "backends", "rounds", "cpus", "versions")
    return {
        "meta": {k: meta[k] for k in (*keep, "antflow_revision", "load_average")},
        "targets": verdicts,
        "cases": cases,
    }


def _versus(key: Key, summary: Summary) -> str | None:
    """What a case's ratio divides by, in a few words: an implementation,
    "point:NAME" or "ideal"."""
    over = table_reference(key, summary)
    if not isinstance(over, tuple):
        return over
    return over[4] if over[1] == key[1] else f"point:{over[1]}"


def _one_per_line(document: dict[str, Any]) -> str:
    """JSON with one target or case per line: short to read, easy to grep."""
    parts = []
    for name, value in document.items():
        if isinstance(value, list):
            items = ",\n".join(
                "  " + json.dumps(item, ensure_ascii=False) for item in value
            )
            parts.append(f"{json.dumps(name)}: [\n{items}\n ]")
        else:
            parts.append(f"{json.dumps(name)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def _order(item: tuple[Key, dict[str, float]]) -> tuple[int, str, str, str, str]:
    key = item[0]
    index = [w.key for w in WORKLOADS].index(key[0])
    return index, key[2], key[3], key[1], key[4]


def write_reports(
    out: Path,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    summary: Summary,
    verdicts: list[dict[str, Any]],
    markdown: str,
) -> None:
    """bench-<time>-<mode>.json (everything), -summary.json, .md, and latest.* copies."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{meta['mode']}"
    document = {
        "meta": meta,
        "targets": verdicts,
        "summary": [
            dict(
                zip(
                    ("workload", "point", "python", "backend", "impl"), key, strict=True
                )
            )
            | numbers
            for key, numbers in sorted(summary.items(), key=_order)
        ],
        "runs": runs,
    }
    short = short_summary(meta, summary, verdicts)
    for name in (stem, "latest"):
        (out / f"{name}.json").write_text(
            json.dumps(document, indent=1) + "\n", encoding="utf-8"
        )
        (out / f"{name}-summary.json").write_text(
            _one_per_line(short), encoding="utf-8"
        )
        (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    print(f"wrote {out / stem}.json, -summary.json and .md", file=sys.stderr)
