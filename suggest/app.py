"""The HTTP service (litestar): keystroke suggestions, health, readiness, OpenAPI, a demo page.

Errors are JSON `{"error": str, "field": str | null}` with a 4xx status; the pipeline raises
`InvalidQuery`, and only this module knows about status codes.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import Parameter

from suggest.artifact import load_artifact
from suggest.errors import ArtifactError, InvalidQuery
from suggest.pipeline import MAX_K, MAX_QUERY_CHARS, Pipeline

__all__ = ["create_app"]

log = logging.getLogger("keystroke")
_DEMO_PAGE = (Path(__file__).parent / "static" / "demo.html").read_text(encoding="utf-8")


class SuggestionOut(msgspec.Struct, omit_defaults=True):
    text: str
    score: float
    sources: tuple[str, ...]
    highlight: tuple[tuple[int, int], ...]
    product_ids: tuple[int, ...]
    explanation: dict | None = None  # only with explain=true


class SuggestResponse(msgspec.Struct):
    query: str
    artifact: str
    suggestions: list[SuggestionOut]


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
    body = SuggestResponse(q, pipeline.artifact_id, [
        SuggestionOut(s.text, s.score, s.sources, s.highlight, s.product_ids, s.explanation)
        for s in pipeline.suggest(query, explain=explain)])
    return Response(_encode(body), media_type=MediaType.JSON)


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
               cache_size: int = 0, adapter: str | None = None) -> Litestar:
    """An app serving `pipeline`, or the artifact at `artifact`, loaded in the background."""
    state = State({"pipeline": pipeline, "load_error": None})

    def load() -> None:
        try:
            state.pipeline = Pipeline.from_artifact(load_artifact(artifact, adapter=adapter), cache_size=cache_size)
            log.info("artifact %s loaded", state.pipeline.artifact_id)
        except ArtifactError as e:
            state.load_error = str(e)
            log.error("%s", e)

    def start_loading() -> None:
        if pipeline is None and artifact is not None:
            threading.Thread(target=load, name="load-artifact", daemon=True).start()

    return Litestar(
        route_handlers=[suggest, healthz, readyz, demo_page],
        state=state,
        on_startup=[start_loading],
        exception_handlers={InvalidQuery: _invalid_query, ValidationException: _validation,
                            HTTPException: _http, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title="Keystroke", version="0.1.0", path="/schema"),
    )
