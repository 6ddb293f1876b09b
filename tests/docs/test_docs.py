"""Every Python example in README.md and docs/ runs, on the backend it names.

How a page tells this file what to do with a code block:

* A ```` ```python ```` block under a content tab ``=== "asyncio"`` or
  ``=== "trio"`` runs on that backend; outside tabs, the fence names it:
  ```` ```python title="trio" ````. Backends: ``asyncio``, ``trio``,
  ``uvloop`` (skipped where uvloop is not installed), ``pytest`` (the block
  is a test module, run by pytest in a subprocess; it must pass) and
  ``notebook`` (a notebook cell: top-level ``await`` allowed, compiled as
  IPython does and awaited on asyncio).
* Every example is a complete program. It runs as ``__main__`` from a file of
  its own, in this process, and must neither raise, warn (pytest turns
  warnings into errors) nor log an antflow error (such as a failed future
  whose exception nobody retrieved). It must also call the backend it is
  filed under, so a trio tab cannot quietly hold asyncio code.
* A ```` ```text title="Output" ```` block is what each example above it
  prints, exactly: each one back to the previous heading, Output block or
  other code block.
* An HTML comment just before a block (or a group of tabs), invisible on the
  rendered page, adds a condition: ``<!-- doc-test: requires MODULE -->``
  skips the block where MODULE cannot be imported (aiometer, for the
  migration page's "before" code), and ``<!-- doc-test: skip REASON -->``
  skips it always. Keep skips rare: a reason is mandatory.
* Shell blocks (```` ```sh ````) are not run, but what they name must exist:
  nox sessions, the package's extras, the demo's options. The README holds
  exactly two of them, and its test command is the one CI runs.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BACKENDS = ("asyncio", "trio", "uvloop", "pytest", "notebook")
LANGUAGES = ("python", "text", "sh")

FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<ticks>```+)(?P<info>.*)$")
TAB = re.compile(r'^[ ]*===\+?[ ]+"(?P<label>[^"]+)"[ ]*$')
MARK = re.compile(
    r"^[ ]*<!--[ ]*doc-test:[ ]*(?P<kind>skip|requires)[ ]+(?P<arg>.+?)[ ]*-->[ ]*$"
)
INFO = re.compile(r'^(?P<lang>[a-z]+)(?:[ ]+title="(?P<title>[^"]*)")?[ ]*$')

# What each backend's program must call to run on it.
RUNS_ON = {
    "asyncio": re.compile(
        r"asyncio\.run\(|asyncio\.Runner\(|anyio\.run\(|backend=\"asyncio\""
    ),
    "trio": re.compile(r"trio\.run\(|backend=\"trio\""),
    "uvloop": re.compile(r"uvloop"),
    "pytest": re.compile(r"def test_"),
    "notebook": re.compile(r"^(await|async with|async for) ", re.MULTILINE),
}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    lang: str
    title: str | None
    code: str
    backend: str | None = None
    skip: str | None = None
    requires: list[str] = field(default_factory=list)
    output: str | None = None

    @property
    def id(self) -> str:
        where = f"{self.page.relative_to(ROOT)}:{self.line}"
        return f"{where}[{self.backend}]" if self.backend else where


def parse(page: Path) -> list[Block]:
    """The page's fenced blocks, with backends, conditions and outputs."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    group: list[Block] = []  # examples not separated by prose
    section: list[Block] = []  # examples an Output block would cover
    marks: list[tuple[str, str]] = []  # conditions for the next group
    group_marks: list[tuple[str, str]] = []
    tab: str | None = None
    i = 0
    while i < len(lines):
        text = lines[i]
        fence = FENCE.match(text)
        if fence is None:
            if (tab_match := TAB.match(text)) is not None:
                tab = tab_match["label"]
            elif (mark := MARK.match(text)) is not None:
                marks.append((mark["kind"], mark["arg"]))
            elif text.strip():
                group, marks, tab = [], [], None  # prose ends a group
                if text.startswith("#"):
                    section = []  # a heading ends what an output covers
            i += 1
            continue
        indent, ticks = fence["indent"], fence["ticks"]
        opening = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].startswith(indent + ticks) and not lines[i].strip().strip("`")
        ):
            line = lines[i]
            body.append(
                line[len(indent) :] if line.startswith(indent) else line.lstrip()
            )
            i += 1
        i += 1  # the closing fence
        info = fence["info"].strip()
        parsed = INFO.match(info)
        block = Block(
            page=page,
            line=opening,
            info=info,
            lang=parsed["lang"] if parsed else info,
            title=parsed["title"] if parsed else None,
            code="\n".join(body) + "\n",
        )
        blocks.append(block)
        if block.lang == "python":
            if not group:
                group_marks, marks = marks, []
            block.backend = block.title or tab
            for kind, arg in group_marks:
                if kind == "skip":
                    block.skip = arg
                else:
                    block.requires.append(arg)
            group.append(block)
            section.append(block)
            tab = None
        else:
            if block.lang == "text" and block.title == "Output":
                for example in section:
                    example.output = block.code
            group, section, tab = [], [], None
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in parse(page)]
EXAMPLES = [block for block in ALL_BLOCKS if block.lang == "python"]
SHELL = [block for block in ALL_BLOCKS if block.lang == "sh"]


def test_every_page_has_been_read() -> None:
    assert (ROOT / "docs" / "index.md") in PAGES
    assert len(EXAMPLES) > 40  # the pages are mostly examples


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_fence_is_well_formed(block: Block) -> None:
    # An attribute mkdocs does not know turns the whole block into inline
    # text on the site, silently; only title= is used.
    assert INFO.match(block.info), f"unexpected fence info {block.info!r}"
    assert block.lang in LANGUAGES, f"unexpected language {block.lang!r}"
    if block.lang == "python" and not block.skip:
        assert block.backend in BACKENDS, (
            "an example must name its backend: put it under a "
            '=== "asyncio" / === "trio" tab or give the fence title="asyncio"'
        )
    if block.lang == "text" and block.title not in (None, "Output"):
        pytest.fail(f'a text block is plain or title="Output", not {block.title!r}')


def _check_backend_is_used(block: Block) -> None:
    assert block.backend is not None
    assert RUNS_ON[block.backend].search(block.code), (
        f"a {block.backend} example must run on {block.backend}"
    )


@pytest.mark.parametrize("block", EXAMPLES, ids=lambda b: b.id)
def test_example_runs(
    block: Block,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if block.skip:
        pytest.skip(block.skip)
    for module in block.requires:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}, which is not installed")
    if block.backend == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    _check_backend_is_used(block)

    name = re.sub(r"\W", "_", f"{block.page.stem}_line{block.line}")
    script = tmp_path / f"{name}.py"
    script.write_text(block.code, encoding="utf-8")

    if block.backend == "pytest":
        options = ["-p", "no:cacheprovider", "-W", "error"]
        if importlib.util.find_spec("pytest_asyncio") is not None:
            # Its plugin loads itself and warns until this is set.
            options += ["-o", "asyncio_default_fixture_loop_scope=function"]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", *options, script.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert " passed" in done.stdout
        return

    caplog.set_level(logging.WARNING, logger="antflow")
    # No wall-clock bound here: on a loaded machine a Dask example takes
    # seconds; an example that hangs is stopped by pytest-timeout.
    if block.backend == "notebook":
        _run_cell(block.code, script)
    else:
        runpy.run_path(str(script), run_name="__main__")
    gc.collect()  # a failed future nobody read is reported when collected
    printed = capsys.readouterr().out
    problems = [r.getMessage() for r in caplog.records if r.name.startswith("antflow")]
    assert not problems, problems
    if block.output is not None:
        assert printed == block.output


def _run_cell(code: str, script: Path) -> None:
    """Run a notebook cell as IPython does with its asyncio loop: compiled
    with top-level await allowed, its coroutine awaited on the loop."""
    import ast
    import asyncio

    compiled = compile(code, str(script), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

    async def cell() -> None:
        result = eval(compiled, {"__name__": "__main__"})
        if asyncio.iscoroutine(result):
            await result

    asyncio.run(cell())


# -- shell commands -------------------------------------------------------------

DEMO_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q '.[trio]' && "
    ".venv/bin/python -m antflow"
)


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line for line in lines if "nox" in line and not line.startswith("#")]
    assert len(commands) == 1, commands
    return commands[0].strip()


def test_readme_has_exactly_the_two_commands() -> None:
    readme = [block for block in SHELL if block.page.name == "README.md"]
    others = [
        block
        for block in ALL_BLOCKS
        if block.page.name == "README.md"
        and block.lang not in ("python", "sh")
        and block.title != "Output"
    ]
    assert not others, [block.id for block in others]
    assert [block.code.strip() for block in readme] == [DEMO_COMMAND, _ci_command()]


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for block in SHELL:
        for line in block.code.splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|;", line):
                if part.strip():
                    found.append((block.id, shlex.split(part)))
    return found


def _nox_sessions() -> set[str]:
    source = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    return set(re.findall(r"@nox\.session[^\n]*\ndef (\w+)", source))


def _extras() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(pyproject["project"]["optional-dependencies"])


@pytest.mark.parametrize(
    ("where", "argv"), _commands(), ids=[f"{w}:{' '.join(a)}" for w, a in _commands()]
)
def test_shell_command_names_what_exists(where: str, argv: list[str]) -> None:
    program = Path(argv[0]).name
    if program == "nox":
        sessions = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-s"]
        assert set(sessions) <= _nox_sessions(), where
    elif program == "pip" or argv[1:3] == ["-m", "pip"]:
        for arg in argv:
            if match := re.fullmatch(r"(?:antflow|\.)\[([\w,]+)\]", arg):
                assert set(match[1].split(",")) <= _extras(), where
    elif program.startswith("python") and argv[1:4] == ["-m", "antflow", "pipeline"]:
        from antflow._demo_pipeline import parse_args as parse_pipeline_args

        parse_pipeline_args(argv[4:])  # exits on an option it does not know
    elif program.startswith("python") and argv[1:3] == ["-m", "antflow"]:
        from antflow._demo import parse_args

        parse_args(argv[3:])  # exits (SystemExit) on an option it does not know
    elif program.startswith("python") and argv[1:3] == ["-m", "venv"]:
        pass
    else:
        assert program in ("mkdocs", "pytest"), f"{where}: unexpected command {argv}"
