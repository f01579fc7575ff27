"""The write path of ``POST /v1/...``: body -> items -> validated rows -> the store.

Runs on the event loop up to the store: a body is parsed and validated there when it is small
(a worker thread when large), then handed to the store's writer thread, whose answer the
request awaits without blocking the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from . import _profiles as profiles
from . import _validate as validate
from ._body import InflatedTooLarge, decode_text, parse_json, read_body, split_array
from ._errors import ClientError
from ._store import COMPANIES, SUBSCRIPTIONS, USERS, Profile, Store
from ._timefmt import now_micros

T = TypeVar("T")
_JSON_WHITESPACE = " \t\n\r"
# Bodies up to this size (decompressed) are parsed on the event loop, which stalls it for a
# few milliseconds but saves a thread hop per request; larger ones go to a worker thread.
_INLINE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Ingest:
    """One write endpoint: ``prepare`` parses and validates items into what ``write`` stores.

    ``texts``: ``prepare`` takes (item, JSON text) pairs, so events are stored as sent.
    """

    kind: str
    batch: bool
    limit: int
    texts: bool
    prepare: Callable[[list[Any], bool], list[Any]]
    write: Callable[[Store, list[Any]], int]

    @property
    def path(self) -> str:
        return f"/v1/{self.kind}/batch" if self.batch else f"/v1/{self.kind}"


def _event_rows(items: list[Any], batch: bool) -> list[Any]:
    return validate.events(items, now_micros(), batch)


def _action_rows(items: list[Any], batch: bool) -> list[Any]:
    return validate.actions(items, now_micros(), batch)


def _profiles(profile: Profile) -> Callable[[Store, list[Any]], int]:
    return lambda store, items: store.merge_profiles(profile, items, now_micros())


def _endpoints() -> list[Ingest]:
    # kind -> (prepare, write, prepare takes JSON texts)
    kinds: dict[str, tuple[Callable[[list[Any], bool], list[Any]], Callable[..., int], bool]] = {
        "events": (_event_rows, Store.add_events, True),
        "actions": (_action_rows, Store.add_actions, True),
        "users": (profiles.users, _profiles(USERS), False),
        "companies": (profiles.companies, _profiles(COMPANIES), False),
        "subscriptions": (profiles.subscriptions, _profiles(SUBSCRIPTIONS), False),
    }
    endpoints = []
    for kind, (prepare, write, texts) in kinds.items():
        batch_limit = (
            validate.MAX_ACTIONS_BATCH_BYTES if kind == "actions" else validate.MAX_BATCH_BYTES
        )
        endpoints.append(Ingest(kind, False, validate.MAX_BATCH_BYTES, texts, prepare, write))
        endpoints.append(Ingest(kind, True, batch_limit, texts, prepare, write))
    return endpoints


INGEST_ENDPOINTS = _endpoints()


def _items(spec: Ingest, text: str) -> list[Any]:
    if spec.batch:
        if spec.texts:
            pairs = split_array(text)
            if pairs is not None:
                return pairs
        document = parse_json(text)
        if type(document) is not list:
            raise ClientError(
                400,
                f"POST /v1/{spec.kind}/batch takes a JSON array, "
                f"not {validate.json_kind(document)}",
            )
        return document
    document = parse_json(text)
    if type(document) is not dict:
        raise ClientError(
            400,
            f"POST /v1/{spec.kind} takes one JSON object, not {validate.json_kind(document)}"
            f"; send arrays to /v1/{spec.kind}/batch",
        )
    return [(document, text.strip(_JSON_WHITESPACE))] if spec.texts else [document]


def _prepare(spec: Ingest, raw: bytes, coding: str | None, limit: int) -> list[Any]:
    items = _items(spec, decode_text(raw, coding, limit))
    try:
        return spec.prepare(items, spec.batch)
    except RecursionError:
        raise ClientError(400, "request body JSON is nested too deeply") from None


async def on_writer(store: Store, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the store's writer thread and wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))  # None only when fn returned None

    def done(result: T | None, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop has closed: nobody is waiting for the answer
            pass

    store.submit(fn, done)
    return await future


async def ingest(store: Store, spec: Ingest, request: Request) -> tuple[int, int]:
    """Read, check and store the body of ``request``: (items received, items stored)."""
    try:
        raw, coding = await read_body(request, spec.limit)
    except ClientDisconnect:
        raise ClientError(400, "the client disconnected before sending the whole body") from None
    rows = None
    if len(raw) <= _INLINE_BYTES:
        try:
            rows = _prepare(spec, raw, coding, _INLINE_BYTES)
        except InflatedTooLarge:
            pass  # a small gzip body that inflates beyond the inline size
    if rows is None:
        rows = await run_in_threadpool(_prepare, spec, raw, coding, spec.limit)
    stored = await on_writer(store, partial(spec.write, store, rows))
    return len(rows), stored
