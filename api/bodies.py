"""A request body as a blocking stream, for the core's code running in a worker thread: local mode's
part PUTs are written to disk as they arrive, never held whole (or spooled twice)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from anyio import from_thread
from fastapi import Request

CHUNK = 1024 * 1024


class BodyStream:
    """``read(size)`` from a worker thread started by ``run_in_threadpool``: each call hops to the event
    loop once and gathers up to ``size`` bytes of the body there (one hop per MiB, not per network read)."""

    def __init__(self, request: Request) -> None:
        self._chunks: AsyncIterator[bytes] = request.stream().__aiter__()
        self._buffer = bytearray()
        self._ended = False

    async def _gather(self, size: int) -> bytes:
        while len(self._buffer) < size and not self._ended:
            try:
                self._buffer += await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int = -1) -> bytes:
        return from_thread.run(self._gather, size if size > 0 else CHUNK)
