"""The served study: a FastAPI app with the JSON API, the participant and admin pages, and the images.

Why FastAPI/Starlette rather than Gradio: the participant page is a fixed, small, keyboard-driven form
whose every request must be scriptable and idempotent (the JSON API the issue specifies), the admin API
needs its own token check, and the server must answer refusals with plain HTTP statuses. Starlette gives
exactly that in one dependency-light ASGI app served by uvicorn; Gradio's event queue, websocket
protocol and component layout would sit between the page and the API and add nothing the page uses.

Routes (NAME: a study name; the API answers JSON, refusals as ``{"error": "one line"}``)::

      GET  /s/NAME                         participant page (``?pid=EXTERNAL_ID`` is stored as given)
      GET  /s/NAME/admin#token=TOKEN       admin page
      GET  /api/studies/NAME               design and screen count
      POST /api/studies/NAME/raters        {"participant"?: str} -> {"rater": token, "resumed": bool}
      GET  /api/studies/NAME/next?rater=R  -> {"item", "index", "total", "prompt", "images", "questions"}
                                              or {"done": true, "code": ...}
      POST /api/studies/NAME/ratings       {"rater", "item", "answers": {question: value}} -> {"ok", "stored"}
      GET  /api/studies/NAME/progress      admin token (Authorization: Bearer TOKEN), else 403
      GET  /api/studies/NAME/export.csv    admin token; the `clipstyle study export` CSV
      GET  /api/studies/NAME/images/SHA256 an image copied into the study (never a file path)
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any, Awaitable, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from .export import export_text
from .records import load_records
from .schema import StudyError, reader
from .service import StudyService

MAX_BODY_BYTES = 16 * 1024  # a rating is ~100 bytes; anything much larger is refused before it is read

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, by its Content-Length or, when chunked,
    as soon as the bytes read pass the limit (the app never sees the rest)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(self.limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message
        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, send: Callable[[dict], Awaitable[None]]) -> None:
    body = json.dumps({"error": f"request body over {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _page(name: str, study: str) -> HTMLResponse:
    html = resources.files(__package__).joinpath("pages", name).read_text(encoding="utf-8")
    # The name passed check_name (letters, digits, _ and -), so it is safe inside the page's JSON.
    return HTMLResponse(html.replace("__STUDY__", study), headers={"Cache-Control": "no-store",
                                                                   "X-Content-Type-Options": "nosniff"})


def _bearer(request: Request) -> Optional[str]:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def create_app(engine: Engine) -> ASGIApp:
    """The app serving every study in ``engine``'s database."""
    service = StudyService(engine)
    app = FastAPI(title="clipstyle study", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StudyError)
    async def study_error(_request: Request, exc: StudyError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"bad request: {where or 'body'}: {first.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"server error ({type(exc).__name__}); the answers were not stored"}, 500)

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise StudyError("the body is not valid JSON", 400) from None

    @app.get("/", response_class=HTMLResponse)
    def root() -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>clipstyle study</title><p>Open the link you were given.</p>")

    @app.get("/s/{name}", response_class=HTMLResponse)
    def participant_page(name: str) -> HTMLResponse:
        service.study(name)
        return _page("participant.html", name)

    @app.get("/s/{name}/admin", response_class=HTMLResponse)
    def admin_page(name: str) -> HTMLResponse:
        service.study(name)
        return _page("admin.html", name)

    @app.get("/api/studies/{name}")
    def info(name: str) -> dict[str, Any]:
        return service.info(name)

    @app.post("/api/studies/{name}/raters")
    async def add_rater(name: str, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise StudyError("the body must be a JSON object", 422)
        return await _threaded(service.add_rater, name, body.get("participant"))

    @app.get("/api/studies/{name}/next")
    def next_screen(name: str, rater: str = "") -> dict[str, Any]:
        return service.next_screen(name, rater)

    @app.post("/api/studies/{name}/ratings")
    async def rate(name: str, request: Request) -> dict[str, Any]:
        return await _threaded(service.submit, name, await json_body(request))

    @app.get("/api/studies/{name}/progress")
    def admin_progress(name: str, request: Request) -> dict[str, Any]:
        return service.progress(name, _bearer(request))

    @app.get("/api/studies/{name}/export.csv")
    def admin_export(name: str, request: Request) -> Response:
        service.check_admin(name, _bearer(request))
        text = export_text(load_records(reader(engine), name), with_checks=True)
        return Response(text, media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-ratings.csv"'})

    @app.get("/api/studies/{name}/images/{sha256}")
    def image(name: str, sha256: str) -> Response:
        media_type, data = service.image(name, sha256)
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=86400, immutable",
                                                             "X-Content-Type-Options": "nosniff"})

    return BodyLimit(app)  # type: ignore[return-value]


async def _threaded(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking database call off the event loop (FastAPI does this itself for plain ``def`` routes)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
