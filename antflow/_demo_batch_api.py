"""A simulated batch API for the pipeline demo: a tiny HTTP server and client.

The service works like the batch APIs of large model providers: you upload a
batch of requests and get a batch id, poll until the batch is processed,
then download its results. Everything runs on anyio (so on asyncio and trio
alike) over plain TCP on 127.0.0.1, with just enough HTTP/1.1 for the demo:
one request per connection, JSON bodies with a Content-Length.

Endpoints:

* ``POST /batches`` with ``{"name": ..., "requests": [...]}``: 201 and
  ``{"id": ...}``; 503 now and then (the service is busy; try again).
* ``GET /batches/<id>``: ``{"status": "processing"}`` or ``"ready"``.
* ``GET /batches/<id>/results``: 200 and ``{"results": [...]}`` once ready.

The server counts every call by endpoint and batch name, so the demo can
show what a crash made the pipeline do again. Processing times and busy
replies come from a seed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["BatchAPI", "ServiceBusy", "call"]

_MAX_HEADER = 16 * 1024


class ServiceBusy(Exception):
    """The service answered 503: try again later."""


@dataclass
class _Batch:
    name: str
    requests: list[str]
    ready_at: float


@dataclass
class BatchAPI:
    """The server side. ``await api.serve(task_group)`` starts it on
    127.0.0.1 and an ephemeral port (``api.port``)."""

    seed: int
    processing: tuple[float, float] = (0.2, 0.8)  # seconds, drawn per batch
    busy_rate: float = 0.15  # share of first uploads answered 503
    calls: Counter[tuple[str, str]] = field(default_factory=Counter[tuple[str, str]])
    port: int = 0
    _batches: dict[str, _Batch] = field(default_factory=dict[str, _Batch])

    async def serve(self, task_group: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(SocketAttribute.local_port)
        task_group.start_soon(listener.serve, self._handle)

    async def _handle(self, stream: ByteStream) -> None:
        async with stream:
            try:
                method, path, body = await _read_request(stream)
                status, reply = self._route(method, path, body)
            except (ValueError, KeyError, anyio.IncompleteRead, anyio.EndOfStream):
                status, reply = 400, {"error": "bad request"}
            await stream.send(_response(status, reply))

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["batches"]:
            name = str(body["name"])
            self.calls["upload", name] += 1
            rng = random.Random(f"{self.seed}/{name}/{self.calls['upload', name]}")
            if self.calls["upload", name] == 1 and rng.random() < self.busy_rate:
                self.calls["busy", name] += 1
                return 503, {"error": "busy, try again"}
            self.calls["accepted", name] += 1
            batch_id = f"b{len(self._batches) + 1}"
            delay = rng.uniform(*self.processing)
            self._batches[batch_id] = _Batch(
                name, list(body["requests"]), anyio.current_time() + delay
            )
            return 201, {"id": batch_id}
        if method == "GET" and len(parts) in (2, 3) and parts[0] == "batches":
            batch = self._batches.get(parts[1])
            if batch is None:
                return 404, {"error": "no such batch"}
            ready = anyio.current_time() >= batch.ready_at
            if len(parts) == 2:
                self.calls["poll", batch.name] += 1
                return 200, {"status": "ready" if ready else "processing"}
            if parts[2] == "results":
                if not ready:
                    return 409, {"error": "not ready"}
                self.calls["download", batch.name] += 1
                return 200, {"results": [text.upper() for text in batch.requests]}
        return 404, {"error": "not found"}


async def call(port: int, method: str, path: str, body: Any = None) -> Any:
    """One request to the API on 127.0.0.1; returns the decoded JSON reply.

    Raises:
        ServiceBusy: the service answered 503.
        RuntimeError: any other answer that is not a success.
    """
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head.encode() + payload)
        reader = BufferedByteReceiveStream(stream)
        status_line, headers = _parse_head(
            await reader.receive_until(b"\r\n\r\n", _MAX_HEADER)
        )
        reply = json.loads(await reader.receive_exactly(int(headers["content-length"])))
    status = int(status_line.split()[1])
    if status == 503:
        raise ServiceBusy(f"{method} {path}: {reply['error']}")
    if status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {status} {reply.get('error')}")
    return reply


async def _read_request(stream: ByteStream) -> tuple[str, str, Any]:
    reader = BufferedByteReceiveStream(stream)
    request_line, headers = _parse_head(
        await reader.receive_until(b"\r\n\r\n", _MAX_HEADER)
    )
    method, path, _ = request_line.split(" ", 2)
    length = int(headers.get("content-length", "0"))
    body = json.loads(await reader.receive_exactly(length)) if length else None
    return method, path, body


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    first, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def _response(status: int, body: Any) -> bytes:
    payload = json.dumps(body).encode()
    reason = {
        200: "OK",
        201: "Created",
        400: "Bad Request",
        404: "Not Found",
        409: "Conflict",
        503: "Service Unavailable",
    }[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload
