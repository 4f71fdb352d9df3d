"""The HTTP service (litestar): keystroke suggestions, feedback events, health, readiness, OpenAPI, a demo page.

Errors are JSON `{"error": str, "field": str | null}` with a 4xx status; the pipeline raises
`InvalidQuery`, and only this module knows about status codes.
"""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import Body, Parameter

from suggest.artifact import load_artifact
from suggest.errors import InvalidQuery, KeystrokeError
from suggest.event_log import EventLog
from suggest.events import MAX_EVENTS, AddToCart, Impression, Purchase, parse_events
from suggest.pipeline import MAX_K, MAX_QUERY_CHARS, Pipeline, Scorer, prior_scorer
from suggest.search import MAX_PAGE, MAX_SEARCH_K

__all__ = ["create_app"]

log = logging.getLogger("keystroke")
_DEMO_PAGE = (Path(__file__).parent / "static" / "demo.html").read_text(encoding="utf-8")


class SuggestionOut(msgspec.Struct, omit_defaults=True):
    text: str
    score: float
    sources: tuple[str, ...]
    highlight: tuple[tuple[int, int], ...]
    product_ids: tuple[int, ...]
    propensity: float                # P(this item at this position) under the serving policy, for OPE
    sponsored: bool = False          # only when true
    explanation: dict | None = None  # only with explain=true


class SuggestResponse(msgspec.Struct):
    query: str
    artifact: str
    suggestions: list[SuggestionOut]
    request_id: str = ""             # name it in POST /v1/events (clicks, impressions)


class ResultOut(msgspec.Struct, omit_defaults=True):
    product_id: int
    name: str
    score: float
    sponsored: bool
    propensity: float
    explanation: dict | None = None  # only with explain=true


class SearchResponse(msgspec.Struct):
    query: str
    artifact: str
    results: list[ResultOut]
    total: int
    searched: str                    # what was searched: typos corrected, words relaxed away
    corrections: list[tuple[str, str]]
    relaxed: bool                    # True: nothing held every word; results are for `searched`
    page: int
    request_id: str
    policy: str
    list_propensity: float


class ErrorBody(msgspec.Struct):
    error: str
    field: str | None = None


def _error(status: int, message: str, field: str | None = None) -> Response[ErrorBody]:
    return Response(ErrorBody(message, field), status_code=status)


def _invalid_query(_: Request, exc: InvalidQuery) -> Response[ErrorBody]:
    return _error(400, exc.message, exc.field)


def _validation(_: Request, exc: ValidationException) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    return _error(400, str(first.get("message") or exc.detail), first.get("key"))


def _http(_: Request, exc: HTTPException) -> Response[ErrorBody]:
    return _error(exc.status_code, str(exc.detail))


def _unexpected(_: Request, exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error", exc_info=exc)
    return _error(500, "internal error")


def _pipeline(state: State) -> Pipeline:
    pipeline = state.get("pipeline")
    if pipeline is None:
        raise HTTPException(status_code=503, detail=state.get("load_error") or "indexes are still loading")
    return pipeline


_encode = msgspec.json.Encoder().encode


# Suggest runs well under a millisecond, so it stays on the event loop (sync_to_thread=False):
# a thread hop would cost more than the work. The body is encoded here in one msgspec call,
# which costs less than litestar's generic response path; the schema still documents it.
@get("/v1/suggest", sync_to_thread=False, summary="Query completions for what has been typed so far",
     responses={200: ResponseSpec(SuggestResponse, description="suggestions, best first")})
def suggest(
    state: State,
    q: Annotated[str, Parameter(description=f"typed text, up to {MAX_QUERY_CHARS} characters")] = "",
    k: Annotated[int, Parameter(ge=1, le=MAX_K, description="number of suggestions")] = 10,
    user_id: Annotated[int | None, Parameter(ge=0, description="shopper id, for personal suggestions")] = None,
    department: Annotated[str | None, Parameter(description="department id or name")] = None,
    aisle: Annotated[str | None, Parameter(description="aisle id or name")] = None,
    store: Annotated[str | None, Parameter(description="only products in stock at this store")] = None,
    hour: Annotated[int | None, Parameter(ge=0, le=23, description="local hour, for 'popular now'")] = None,
    explain: Annotated[bool, Parameter(description="per item: task scores, their contributions, "
                                                   "top feature attributions")] = False,
) -> Response[bytes]:
    pipeline = _pipeline(state)
    query = pipeline.make_query(q, k, user_id, department, aisle, store, hour)
    request_id = secrets.token_hex(8)
    body = SuggestResponse(q, pipeline.artifact_id, [
        SuggestionOut(s.text, s.score, s.sources, s.highlight, s.product_ids, s.propensity, s.sponsored,
                      s.explanation)
        for s in pipeline.suggest(query, explain=explain, request_id=request_id)], request_id)
    return Response(_encode(body), media_type=MediaType.JSON)


# Retrieval may embed the query (milliseconds) and the ranker scores a few hundred products: a thread.
@get("/v1/search", sync_to_thread=True, summary="Ranked products for a submitted query",
     responses={200: ResponseSpec(SearchResponse, description="one page of products, best first")})
def search(
    state: State,
    q: Annotated[str, Parameter(description=f"the query, up to {MAX_QUERY_CHARS} characters")] = "",
    k: Annotated[int, Parameter(ge=1, le=MAX_SEARCH_K, description="results per page")] = 20,
    page: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="1-based page")] = 1,
    user_id: Annotated[int | None, Parameter(ge=0, description="shopper id, for personal ranking")] = None,
    department: Annotated[str | None, Parameter(description="department id or name")] = None,
    store: Annotated[str | None, Parameter(description="only products in stock at this store")] = None,
    hour: Annotated[int | None, Parameter(ge=0, le=23, description="local hour")] = None,
    explain: Annotated[bool, Parameter(description="per result: task scores, contributions, attributions")] = False,
) -> Response[bytes]:
    pipeline = _pipeline(state)
    query = pipeline.search.make_query(pipeline, q, k, page, user_id, department, store, hour)
    request_id = secrets.token_hex(8)
    answer = pipeline.search.search(query, request_id, explain)
    body = SearchResponse(q, pipeline.artifact_id, [
        ResultOut(r.product_id, r.name, r.score, r.sponsored, r.propensity, r.explanation) for r in answer.results],
        answer.total, answer.searched, [list(c) for c in answer.corrections], answer.relaxed, page, request_id,
        answer.policy, answer.list_propensity)
    return Response(_encode(body), media_type=MediaType.JSON)


MAX_EVENTS_BODY = 4 << 20              # bytes of one POST /v1/events body
# Every durable event is observed live: purchases change personalisation, impressions the ranker's
# click-through counts, clicks on sponsored slots spend budgets. A restart replays what it can:
# a click's charge needs the response it names, which is not kept across restarts.
_REPLAYED = (AddToCart, Purchase, Impression)


class EventsAccepted(msgspec.Struct):
    accepted: int


def _events_ready(request: Request) -> None:
    """Refuse before the body is read: events off, indexes loading, or a body that is not JSON."""
    if request.app.state.get("events") is None:
        raise HTTPException(status_code=503, detail="events are not enabled on this server "
                                                    "(start it with keystroke serve --events-dir DIR)")
    _pipeline(request.app.state)  # the pipeline learns from events, so none are taken before it exists
    if request.content_type[0] != MediaType.JSON:
        raise HTTPException(status_code=415, detail=f"Content-Type must be application/json, "
                                                    f"got {request.content_type[0] or 'none'!r}")


# The handler fsyncs, so it runs in a worker thread; concurrent requests share an fsync (EventLog).
@post("/v1/events", sync_to_thread=True, before_request=_events_ready, request_max_body_size=MAX_EVENTS_BODY,
      status_code=200, summary="Log impressions, clicks, add-to-carts and purchases; 200 once they are on disk",
      responses={400: ResponseSpec(ErrorBody, description="a bad event; `field` is its JSON path"),
                 503: ResponseSpec(ErrorBody, description="events off, indexes loading, or the disk failed")})
def events(state: State, data: Annotated[Any, Body(
        description=f"one event or a list of up to {MAX_EVENTS}, in the schema of suggest/events.py")] = None,
           ) -> Response[EventsAccepted]:
    try:
        records = parse_events(data)
    except InvalidQuery as e:  # a field of "" is the body as a whole
        return Response(ErrorBody(e.message, e.field or None), status_code=400)  # type: ignore[arg-type]
    try:
        accepted = state.events.append(records)
    except OSError as e:
        log.error("events not stored: %s", e)
        raise HTTPException(status_code=503, detail="events could not be stored; retry later") from None
    pipeline = state.pipeline
    for record in records:
        try:
            pipeline.observe(record)
        except Exception:  # the event is durable: failing to learn from it must not ask for a retry
            log.exception("observing a %s failed", record.type)
    return Response(EventsAccepted(accepted))


def _replay(events_log: EventLog, pipeline: Pipeline) -> Pipeline:
    """Personalisation from the events logged before this start, oldest first."""
    n = 0
    for record in events_log.records():
        if isinstance(record, _REPLAYED):
            pipeline.observe(record)
            n += 1
    log.info("replayed %d events from %s", n, events_log.directory)
    return pipeline


@get("/healthz", sync_to_thread=False, summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", sync_to_thread=False, summary="Indexes are loaded and requests can be served")
def readyz(state: State) -> Response[dict]:
    pipeline = state.get("pipeline")
    if pipeline is None:
        return Response({"status": "loading", "error": state.get("load_error")}, status_code=503)
    return Response({"status": "ready", "artifact": pipeline.artifact_id})


@get("/", media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def demo_page() -> str:
    return _DEMO_PAGE


def create_app(artifact: Path | str | None = None, pipeline: Pipeline | None = None,
               cache_size: int = 0, adapter: str | None = None, scorer: Scorer = prior_scorer,
               events_dir: Path | str | None = None) -> Litestar:
    """An app serving `pipeline`, or the artifact at `artifact`, loaded in the background.

    With `events_dir`, POST /v1/events appends to the durable log there, and the purchases already
    in it are replayed into the pipeline before it serves."""
    events_log = EventLog(events_dir) if events_dir is not None else None
    state = State({"pipeline": None if events_log else pipeline, "load_error": None, "events": events_log})

    def load() -> None:
        try:
            loaded = Pipeline.from_artifact(load_artifact(artifact, adapter=adapter), scorer, cache_size=cache_size)
            state.pipeline = _replay(events_log, loaded) if events_log else loaded
            log.info("artifact %s loaded", state.pipeline.artifact_id)
        except KeystrokeError as e:  # ArtifactError, or a DataError from a damaged event log
            state.load_error = str(e)
            log.error("%s", e)

    def start_loading() -> None:
        if pipeline is not None and events_log is not None:
            state.pipeline = _replay(events_log, pipeline)
        elif pipeline is None and artifact is not None:
            threading.Thread(target=load, name="load-artifact", daemon=True).start()

    def close_events() -> None:
        if events_log is not None:
            events_log.close()

    return Litestar(
        route_handlers=[suggest, search, events, healthz, readyz, demo_page],
        state=state,
        on_startup=[start_loading],
        on_shutdown=[close_events],
        exception_handlers={InvalidQuery: _invalid_query, ValidationException: _validation,
                            HTTPException: _http, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title="Keystroke", version="0.1.0", path="/schema"),
    )
