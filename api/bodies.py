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
        self._rest = b""  # what the last read did not take
        self._ended = False

    async def _gather(self, size: int) -> bytes:
        pieces, have = [self._rest], len(self._rest)
        while have < size and not self._ended:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                break
            pieces.append(chunk)
            have += len(chunk)
        data = b"".join(pieces)
        if len(data) <= size:
            self._rest = b""
            return data
        self._rest = data[size:]
        return data[:size]

    def read(self, size: int = -1) -> bytes:
        return from_thread.run(self._gather, size if size > 0 else CHUNK)
