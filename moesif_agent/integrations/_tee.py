"""Copying bodies as they flow (request thread): nothing is read ahead, nothing buffered.

``InputTee`` stands in for a request stream (WSGI ``wsgi.input``, Django's ``request._stream``)
and copies what the app reads. ``tee_chunks`` / ``atee_chunks`` pass a streamed response
through chunk by chunk, copying it into ``flow.body``, and tell the flow how it ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._exchange import Body
    from ._core import Flow


class InputTee:
    """A request stream as the app reads it, copying what it reads into ``body``.

    Positions are tracked so that a seekable stream (Django's spooled ASGI body) that is
    re-read is not copied twice."""

    __slots__ = ("_body", "_copied", "_pos", "_stream")

    def __init__(self, stream: Any, body: Body) -> None:
        self._stream = stream
        self._body = body
        self._pos = 0
        self._copied = 0

    def _tee(self, data: bytes) -> bytes:
        start = self._pos
        end = self._pos = start + len(data)
        if end > self._copied:
            self._body.add(data if start >= self._copied else data[self._copied - start :])
            self._copied = end
        return data

    def read(self, *args: Any) -> bytes:
        return self._tee(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._tee(self._stream.readline(*args))

    def read1(self, *args: Any) -> bytes:
        read1 = getattr(self._stream, "read1", None) or self._stream.read
        return self._tee(read1(*args))

    def readinto(self, buffer: Any) -> int | None:
        # Readers such as werkzeug's LimitedStream prefer readinto; servers such as gunicorn
        # only offer read, so fall back to it.
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(buffer))
            count: int | None = len(data)
            buffer[: len(data)] = data
        else:
            count = readinto(buffer)
        if count:
            self._tee(bytes(memoryview(buffer)[:count]))
        return count

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._tee(line)
        return lines

    def seek(self, *args: Any) -> int:
        position: int = self._stream.seek(*args)
        self._pos = position
        return position

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._tee(line)

    def __getattr__(self, name: str) -> Any:  # close, fileno, seekable, tell...
        return getattr(self._stream, name)


def tee_chunks(content: Iterable[bytes], end: Flow) -> Iterator[bytes]:
    body = end.body
    try:
        for chunk in content:
            if body is not None and chunk:
                body.add(chunk)
            end.started = True  # handed to the server: its status line is committed
            yield chunk
    except GeneratorExit:  # closed early: close() says so
        raise
    except BaseException as exc:
        end.failed(exc)
        raise
    end.end()


async def atee_chunks(content: AsyncIterable[bytes], end: Flow) -> AsyncIterator[bytes]:
    body = end.body
    try:
        async for chunk in content:
            if body is not None and chunk:
                body.add(chunk)
            end.started = True
            yield chunk
    except GeneratorExit:
        raise
    except BaseException as exc:
        end.failed(exc)
        raise
    end.end()
