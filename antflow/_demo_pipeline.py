"""``python -m antflow pipeline``: batches through a batch API, a crash included.

The job AntFlow's pipelines were made for: many batches, each uploaded to a
batch API, polled until processed, downloaded and saved. Here the API is
simulated (`antflow._demo_batch_api`), served by this process on 127.0.0.1
and an ephemeral port for the demo's duration.

What it shows:

* four stages, each with its own workers and limits: uploads are retried
  when the service is busy and paced by a `RateLimiter`, polling is a retry
  loop with back-off (``retry_on=NotReady``), saving has two workers;
* a journal: the pipeline runs in a child process, which this process kills
  with SIGKILL once half the batches are saved; a second child resumes from
  the journal, skips what was finished, continues what was between stages,
  and finishes the rest;
* what the crash cost: the server counts every call, so the summary says how
  many uploads, downloads and saves were made again, against the bound the
  journal guarantees (each stage's capacity).

The batches and the service's timing come from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

from antflow import RateLimiter, __version__

from ._demo_batch_api import BatchAPI, ServiceBusy, call

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


class NotReady(Exception):
    """The batch is still processing: poll again (after back-off)."""


def make_batches(count: int, seed: int) -> list[tuple[str, list[str]]]:
    """The batches to process: ``(name, requests)``, drawn from ``seed``."""
    rng = random.Random(seed)
    return [
        (
            f"batch-{n:03}",
            [" ".join(rng.choices(WORDS, k=3)) for _ in range(rng.randint(2, 6))],
        )
        for n in range(count)
    ]


def build(port: int, workdir: Path) -> Any:
    """The demo's pipeline: upload -> poll -> download -> save."""
    from .pipeline import Pipeline, Stage

    output = workdir / "out"
    saves = workdir / "saves.log"

    async def upload(batch: tuple[str, list[str]]) -> dict[str, str]:
        name, requests = batch
        reply = await call(
            port, "POST", "/batches", {"name": name, "requests": requests}
        )
        return {"name": name, "id": reply["id"]}

    async def poll(job: dict[str, str]) -> dict[str, str]:
        reply = await call(port, "GET", f"/batches/{job['id']}")
        if reply["status"] != "ready":
            raise NotReady(job["name"])
        return job

    async def download(job: dict[str, str]) -> dict[str, Any]:
        reply = await call(port, "GET", f"/batches/{job['id']}/results")
        return {"name": job["name"], "results": reply["results"]}

    async def save(document: dict[str, Any]) -> str:
        with saves.open("a") as log:  # one short line; the demo counts them
            log.write(document["name"] + "\n")
        path = anyio.Path(output / f"{document['name']}.json")
        await path.write_text(json.dumps(document["results"]))
        return str(path)

    return Pipeline(
        Stage(
            "upload",
            upload,
            workers=4,
            retries=3,
            retry_on=ServiceBusy,
            retry_delay=0.05,
            rate_limit=RateLimiter(50, burst=4),
        ),
        Stage(
            "poll",
            poll,
            workers=8,
            retries=500,
            retry_on=NotReady,
            retry_delay=0.02,
            retry_max_delay=0.1,
        ),
        Stage("download", download, workers=4, retries=2, retry_on=ServiceBusy),
        Stage("save", save, workers=2),
        journal=workdir / "demo.journal",
        key=lambda batch: batch[0],
    )


# -- the child: one run of the pipeline ------------------------------------------------


async def run_child(port: int, workdir: Path, batches: int, seed: int) -> None:
    (workdir / "out").mkdir(exist_ok=True)
    pipeline = build(port, workdir)
    async with pipeline.stream(make_batches(batches, seed), progress=True) as results:
        async for result in results:
            if not result.ok:
                raise SystemExit(
                    f"{result.key} failed in {result.stage}: {result.error!r}"
                )
    stats = results.statistics()
    print(
        json.dumps(
            {
                "skipped": stats.skipped,
                "resumed": stats.resumed,
                "admitted": stats.admitted,
            }
        ),
        flush=True,
    )


# -- the parent: the server, two children, one kill -------------------------------------


async def run_demo(
    args: argparse.Namespace, workdir: Path, out: TextIO
) -> dict[str, Any]:
    api = BatchAPI(seed=args.seed)
    half = args.batches // 2
    report: dict[str, Any] = {}
    async with anyio.create_task_group() as server:
        await api.serve(server)
        print(f"  serving the batch API on 127.0.0.1:{api.port}", file=out, flush=True)
        command = [
            sys.executable, "-m", "antflow", "pipeline", "--child", str(api.port),
            "--workdir", str(workdir), "--backend", args.backend,
            "--batches", str(args.batches), "--seed", str(args.seed),
        ]  # fmt: skip
        print(
            f"\n== run 1: to be killed once {half} batches are saved ==",
            file=out,
            flush=True,
        )
        first = await anyio.open_process(
            command, stdout=subprocess.DEVNULL, stderr=None
        )
        async with first:
            while first.returncode is None and _saved(workdir) < half:
                with anyio.move_on_after(0.005):  # look at the files again
                    await first.wait()
            report["killed"] = first.returncode is None
            if report["killed"]:
                first.kill()
            await first.wait()
        report["saved_at_kill"] = _saved(workdir)
        report["calls_at_kill"] = api.calls.copy()
        print(
            f"   run 1 {'killed with SIGKILL' if report['killed'] else 'ended by itself'}"
            f" with {report['saved_at_kill']} of {args.batches} batches saved",
            file=out,
            flush=True,
        )
        print(
            "\n== run 2: the same pipeline, the same journal ==", file=out, flush=True
        )
        second = await anyio.run_process(command, stderr=None, check=False)
        if second.returncode != 0:
            raise RuntimeError(f"run 2 failed with exit code {second.returncode}")
        report.update(json.loads(second.stdout.decode().splitlines()[-1]))
        server.cancel_scope.cancel()
    report["calls"] = api.calls
    return report


def _saved(workdir: Path) -> int:
    return sum(1 for _ in (workdir / "out").glob("*.json"))


def summary(args: argparse.Namespace, workdir: Path, report: dict[str, Any]) -> str:
    """The closing summary, checking every saved file against its batch."""
    batches = make_batches(args.batches, args.seed)
    wrong = [
        name
        for name, requests in batches
        if json.loads((workdir / "out" / f"{name}.json").read_text())
        != [text.upper() for text in requests]
    ]
    calls: dict[tuple[str, str], int] = report["calls"]
    saves = len((workdir / "saves.log").read_text().split())
    bound = {stage.name: stage.capacity for stage in build(0, workdir).stages}
    count = args.batches

    def made(kind: str) -> int:
        return sum(n for (what, _), n in calls.items() if what == kind)

    def again(done: int, stage: str) -> str:
        return f"for {count} batches: {done - count} again after the kill (bound {bound[stage]})"

    rows = [
        ("saved", count - len(wrong), "batch files, each checked against its batch"),
        ("uploads", made("accepted"), again(made("accepted"), "upload")),
        ("busy", made("busy"), "uploads answered 503 'busy', retried after back-off"),
        (
            "polls",
            made("poll"),
            "status checks; 'processing' answers retried with back-off",
        ),
        ("downloads", made("download"), again(made("download"), "download")),
        ("saves", saves, again(saves, "save")),
        (
            "rerun",
            report["admitted"],
            f"batches taken up: {report['resumed']} resumed where run 1 left them; "
            f"{report['skipped']} skipped, finished by run 1",
        ),
    ]
    lines = [f"Summary ({args.backend})"]
    lines += [f"  {name:<10} {value:>5}  {note}" for name, value, note in rows]
    if wrong:
        lines.append(f"  WRONG RESULTS in {', '.join(wrong)}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m antflow pipeline",
        description=(
            "Batches through a simulated batch API (upload, poll, download, save) "
            "in an antflow pipeline with a journal; the first run is killed halfway "
            "and the second resumes."
        ),
    )
    parser.add_argument(
        "--backend", choices=("asyncio", "trio", "uvloop"), default="asyncio",
        help="event loop to run on (default: asyncio)",
    )  # fmt: skip
    parser.add_argument(
        "--batches", type=int, default=40, help="number of batches (default: 40)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="scenario seed (default: 1)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep it (journal, files)"
    )
    parser.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batches < 2:
        parser.error("--batches must be at least 2")
    if args.backend != "asyncio":
        import importlib.util

        module = "uvloop" if args.backend == "uvloop" else "trio"
        if importlib.util.find_spec(module) is None:
            parser.error(
                f"{module} is not installed; install it with pip install 'antflow[{module}]'"
            )
    return args


def _anyio_run(backend: str, fn: Any, *args: Any) -> Any:
    options: dict[str, Any] = {"use_uvloop": True} if backend == "uvloop" else {}
    name = "trio" if backend == "trio" else "asyncio"
    return anyio.run(fn, *args, backend=name, backend_options=options)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the demo; return the process exit code."""
    args = parse_args(argv)
    stdout = sys.stdout if out is None else out
    if args.child is not None:
        _anyio_run(
            args.backend,
            run_child,
            args.child,
            Path(args.workdir),
            args.batches,
            args.seed,
        )
        return 0
    workdir = (
        Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="antflow-demo-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("demo.journal", "saves.log", "out"):
        path = workdir / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    print(
        f"antflow {__version__} pipeline demo: {args.batches} batches through a simulated "
        f"batch API (seed {args.seed}, {args.backend})\n"
        "  upload (4 workers, retried when busy, 50/s) -> poll (8 workers, until ready)"
        " -> download (4 workers) -> save (2 workers)\n"
        f"  journal and files in {workdir}",
        file=stdout,
        flush=True,
    )
    try:
        report = _anyio_run(args.backend, run_demo, args, workdir, stdout)
        print("\n" + summary(args, workdir, report), file=stdout)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
