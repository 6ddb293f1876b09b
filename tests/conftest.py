"""Shared fixtures: every async test runs on asyncio, asyncio+uvloop and trio.

``anyio_backend`` is anyio's pytest hook: every ``@pytest.mark.anyio`` test
(and every async test in a module with ``pytestmark = pytest.mark.anyio``)
runs once per backend it names. Here it is the one fixture for all of them,
and a marker picks the clocks:

* no marker: ``asyncio``, ``uvloop`` and ``trio``. trio runs under
  ``MockClock(autojump_threshold=0)``: when every task is blocked, trio jumps
  to the next deadline, so sleeps cost no wall time. asyncio and uvloop run
  in real time; tests on them assert structure (ordering, states), never
  durations.
* ``@pytest.mark.virtual_time``: ``asyncio-virtual`` (asyncio on
  async_solipsism's event loop) and ``trio-virtual`` (the mock clock). Both
  jump time forward when idle, so a test can assert exact elapsed times with
  ``anyio.current_time()`` on both backends.
* ``@pytest.mark.real_clock``: ``asyncio``, ``uvloop`` and ``trio``, trio on
  its real clock, for tests whose waits are real I/O (a module using it says
  why, where it applies the marker).

The markers apply to a test, a class or a whole module (``pytestmark``).

This folder is on ``sys.path`` (pytest's default "prepend" import mode puts
the folder of a conftest.py that is not in a package there before importing
it), so test modules in every subfolder import the shared helpers as
``from _strategies import ...``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from _strategies import virtual_options
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


#: What ``anyio_backend`` returns for each parameter. Each is built when a test
#: starts: a MockClock remembers its virtual time, so none is shared.
BACKENDS: dict[str, Callable[[], Any]] = {
    "asyncio": lambda: ("asyncio", {}),
    "uvloop": lambda: ("asyncio", {"use_uvloop": True}),
    "trio": lambda: ("trio", virtual_options("trio")),
    "asyncio-virtual": lambda: ("asyncio", virtual_options("asyncio")),
    "trio-virtual": lambda: ("trio", virtual_options("trio")),
    "trio-real-clock": lambda: ("trio", {}),
}

#: The backends each clock marker runs a test on, with their test ids.
CLOCKS: dict[str | None, list[Any]] = {
    None: [
        pytest.param("asyncio", id="asyncio"),
        pytest.param("uvloop", id="uvloop"),
        pytest.param("trio", id="trio"),
    ],
    "virtual_time": [
        pytest.param("asyncio-virtual", id="asyncio-virtual"),
        pytest.param("trio-virtual", id="trio-virtual"),
    ],
    "real_clock": [
        pytest.param("asyncio", id="asyncio"),
        pytest.param("uvloop", id="uvloop"),
        pytest.param("trio-real-clock", id="trio"),
    ],
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "virtual_time: run on asyncio (async_solipsism) and trio (MockClock), "
        "whose clocks jump when every task is blocked: exact elapsed times",
    )
    config.addinivalue_line(
        "markers",
        "real_clock: run on asyncio, uvloop and trio, trio on its real clock "
        "(for waits on real processes or sockets)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``anyio_backend`` on the backends of its clock."""
    if "anyio_backend" not in metafunc.fixturenames:
        return
    markers = [
        name
        for name in ("virtual_time", "real_clock")
        if metafunc.definition.get_closest_marker(name) is not None
    ]
    if len(markers) > 1:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: virtual_time and real_clock exclude "
            "each other"
        )
    clock = markers[0] if markers else None
    metafunc.parametrize("anyio_backend", CLOCKS[clock], indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The backend and its options, for anyio's plugin (see the module)."""
    return BACKENDS[request.param]()
