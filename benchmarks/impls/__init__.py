"""One module per implementation, each with one ``async def`` per workload it runs.

See ``catalog.IMPLS`` for which module is which, and ``child.py`` for how a
workload function is called: ``await fn(tasks, n, workers) -> dict`` of extra numbers.
"""
