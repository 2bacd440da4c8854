"""Server-sent events about jobs: ``GET /api/v1/jobs/{id}/events`` and ``GET /api/v1/events``.

Each stream starts with a ``state`` event (the job's status now, so a client that connects late
misses nothing), then relays ``queued``, ``started``, ``progress`` (at most 10 a second per job),
``finished``, ``failed`` and ``cancelled`` events as JSON. A job's stream ends after its final
event. FastAPI sends a ``: ping`` comment every 15 s of silence, which keeps proxies from
closing idle streams.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterable, Callable

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from modules.api.errors import error_responses
from modules.api.security import principal_of
from modules.jobs.events import JobEvent
from modules.jobs.model import Job

if TYPE_CHECKING:
    from modules.app_context import AppContext

FINAL_EVENTS = frozenset({"finished", "failed", "cancelled"})
BACKLOG = 1000          # events a slow client may fall behind by before the oldest are dropped
POLL_SECONDS = 1.0      # how often an idle stream checks whether the server is stopping


class _Inbox:
    """Events handed from the publishing thread to this stream's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue(maxsize=BACKLOG)

    def deliver(self, event: JobEvent) -> None:  # called from the queue's threads
        self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: JobEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


def _sse(event: JobEvent) -> ServerSentEvent:
    return ServerSentEvent(event=event.type, id=str(event.id), data=event.as_dict())


def add_event_routes(router: APIRouter, ctx: "AppContext", visible_job: Callable[..., Job]) -> None:
    from modules.api.jobs_views import job_status

    def stopping() -> bool:
        return ctx.queue.stopping

    @router.get("/jobs/{job_id}/events", response_class=EventSourceResponse, responses=error_responses(404))
    async def job_events(job: Job = Depends(visible_job)) -> AsyncIterable[ServerSentEvent]:
        """Events of one job, starting with its current state; ends after its final event."""
        inbox = _Inbox()
        token = ctx.events.subscribe(inbox.deliver, job_id=job.id)
        try:
            current = ctx.queue.lookup(job.id) or job
            yield ServerSentEvent(event="state", data=job_status(ctx, current).model_dump(mode="json"))
            if current.state.finished:
                return
            while not stopping():
                try:
                    event = await asyncio.wait_for(inbox.queue.get(), timeout=POLL_SECONDS)
                except TimeoutError:
                    continue
                yield _sse(event)
                if event.type in FINAL_EVENTS:
                    return
        finally:
            ctx.events.unsubscribe(token)

    @router.get("/events", response_class=EventSourceResponse)
    async def all_events(principal: str | None = Depends(principal_of)) -> AsyncIterable[ServerSentEvent]:
        """Events of every job the caller may see (its own when credentials are configured)."""
        inbox = _Inbox()
        everyone = not ctx.flags.api_auth_enabled
        owner = None if everyone else principal
        token = ctx.events.subscribe(inbox.deliver, owner=owner, everyone=everyone)
        try:
            yield ServerSentEvent(comment="connected")
            while not stopping():
                try:
                    event = await asyncio.wait_for(inbox.queue.get(), timeout=POLL_SECONDS)
                except TimeoutError:
                    continue
                yield _sse(event)
        finally:
            ctx.events.unsubscribe(token)
