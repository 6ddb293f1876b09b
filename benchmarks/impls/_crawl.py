"""Workload o, a crawl: the URLs, the hosts, the simulated requests.

2,000 URLs spread over ``HOSTS`` hosts in turn; every host takes at most
``PER_HOST`` requests at once. One host is slow (``SLOW_S`` a request, the
others ``FAST_S``), and one URL in ``FAIL_EVERY`` (5 %) fails with a
``ConnectionError``, which the crawl keeps in its results instead of
stopping. The requests are sleeps on the backend's own clock, in real time:
a server would measure the network stack and the machine's load, not what
the crawl's structure costs. What the structure costs shows in when the fast
hosts are done: a crawler whose slow host's requests hold pool slots while
they wait for that host keeps the fast hosts waiting behind them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

HOSTS = 8
SLOW_HOST = 0
PER_HOST = 4
FAST_S = 0.001
SLOW_S = 0.02
FAIL_EVERY = 20


def url(i: int) -> str:
    return f"http://h{i % HOSTS}.test/page/{i}"


def host_of(link: str) -> str:
    return link.split("/", 3)[2]


SLOW = host_of(url(SLOW_HOST))


@dataclass
class Crawl:
    """The simulated fetch, and when the fast hosts' last URL finished."""

    nap: Callable[[float], Awaitable[object]]
    start: float = field(default_factory=time.perf_counter)
    fast_done: float = 0.0

    async def fetch(self, link: str) -> int:
        host = host_of(link)
        await self.nap(SLOW_S if host == SLOW else FAST_S)
        if host != SLOW:
            self.fast_done = time.perf_counter()
        if int(link.rsplit("/", 1)[1]) % FAIL_EVERY == FAIL_EVERY - 1:
            raise ConnectionError(f"{link}: connection reset")
        return len(link)

    def metrics(self, results: list[object], n: int) -> dict[str, float]:
        from ._measure import check

        failures = [r for r in results if isinstance(r, ConnectionError)]
        check(len(results) == n, "crawl lost results")
        check(len(failures) == n // FAIL_EVERY, "crawl lost failures")
        return {"t_fast": self.fast_done - self.start}
