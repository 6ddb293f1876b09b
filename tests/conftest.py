"""Shared fixtures: every async test runs on asyncio, asyncio+uvloop and trio.

``anyio_backend`` is the plugin's hook: overriding it here parametrizes every
``@pytest.mark.anyio`` test (and every async test in a module marked with
``pytestmark = pytest.mark.anyio``) over the three backends.

Two clocks are offered:

* ``anyio_backend`` runs trio under ``MockClock(autojump_threshold=0)``: when
  every task is blocked, trio jumps to the next deadline, so sleeps cost no
  wall time. asyncio and uvloop run in real time; tests on them assert
  structure (ordering, states), never durations.
* ``virtual_backend`` runs asyncio on ``async_solipsism``'s loop and trio on
  the mock clock. Both jump time forward when idle, so a test can assert exact
  elapsed times with ``anyio.current_time()`` on both backends.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
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


def _trio_mock_clock() -> Any:
    # Built fresh for every test: a MockClock remembers its virtual time.
    from trio.testing import MockClock

    return MockClock(autojump_threshold=0)


def _solipsism_loop() -> Any:
    import async_solipsism

    return async_solipsism.EventLoop()


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "trio":
        return ("trio", {"clock": _trio_mock_clock()})
    return request.param


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio-virtual"),
        pytest.param("trio", id="trio-virtual"),
    ]
)
def virtual_backend(request: pytest.FixtureRequest) -> Any:
    """Backends whose clock jumps forward whenever every task is blocked."""
    if request.param == "trio":
        return ("trio", {"clock": _trio_mock_clock()})
    return ("asyncio", {"loop_factory": _solipsism_loop})
