"""Server-side helpers shared by both sides: JSON errors, body limits, signed routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from handshake.auth import Verifier
from handshake.errors import AuthError, ValidationError
from handshake.guard import guard_middleware
from handshake.messages import loads
from handshake.util.quietlog import OneLineFilter, RateLimitedLog

log = logging.getLogger(__name__)
# What any client can cause as often as it likes gets a line a minute, not a traceback each.
_client_log = RateLimitedLog(log, interval_s=60.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERIFIER_KEY = web.AppKey("verifier", Verifier)
MAX_BODY_KEY = web.AppKey("max_body", int)
BODY_KEY = web.RequestKey("edgepair.body", bytes)
SIGNED_KEY = web.RequestKey("edgepair.signed", bool)


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The one error shape: ``{"error": {"code", "message"}}``."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status)


_REASON_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 411: "length_required",
    413: "body_too_large", 415: "unsupported_media_type", 429: "rate_limited",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every HTTP error into JSON; an unexpected exception is a logged 500, never a trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            raise
        code = _REASON_CODES.get(exc.status, "error")
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {request.app[MAX_BODY_KEY]} bytes)"
        response = json_error(exc.status, code, message or exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except AuthError as exc:
        return json_error(401, "unauthorized", str(exc))
    except ValidationError as exc:
        return json_error(400, "invalid", str(exc), **({"field": exc.field} if exc.field else {}))
    except ConnectionResetError:  # the client went away mid-body: its problem, one line
        _client_log.warning("gone", "%s %s: the client closed the connection mid-request "
                            "(from %s)", request.method, request.path, request.remote)
        return json_error(400, "incomplete", "the connection closed before the body ended")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error (logged on the server)")


def make_app(max_body: int, verifier: Verifier | None,
             middlewares: tuple[Any, ...] = ()) -> web.Application:
    """An aiohttp app with JSON errors, a body limit and the connection guard's marker."""
    OneLineFilter.install(logging.getLogger("aiohttp.server"))
    # asyncio pauses accepting for a second on EMFILE and logs a traceback each time.
    OneLineFilter.install(logging.getLogger("asyncio"), only="socket.accept() out of")
    app = web.Application(client_max_size=max_body,
                          middlewares=[guard_middleware, error_middleware, *middlewares])
    app[MAX_BODY_KEY] = max_body
    if verifier is not None:
        app[VERIFIER_KEY] = verifier
    app.on_response_prepare.append(_revalidate)
    return app


async def _revalidate(request: web.Request, response: web.StreamResponse) -> None:
    """Everything is revalidated (a 304 when unchanged): after an upgrade a browser must
    never pair a fresh index.html with yesterday's modules, nor show yesterday's JSON."""
    response.headers.setdefault("Cache-Control", "no-cache")


async def read_body(request: web.Request) -> bytes:
    """Read the whole body within the app's limit (413 past it, also when Content-Length lies)."""
    if BODY_KEY in request:
        return request[BODY_KEY]
    limit = request.app[MAX_BODY_KEY]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.read()
    request[BODY_KEY] = body
    return body


async def verify_request(request: web.Request) -> None:
    """Check the request's signature over its exact body bytes; AuthError when it fails."""
    verifier = request.app[VERIFIER_KEY]
    body = await read_body(request)
    headers = {"x-content-sha256": request.headers["X-Content-SHA256"]} \
        if "X-Content-SHA256" in request.headers else None
    verifier.verify(request.headers.get("Authorization"), request.method,
                    request.rel_url.raw_path_qs, body, headers)
    request[SIGNED_KEY] = True


# A streamed body is not part of the signature; this header (which is) names its SHA-256.
CONTENT_SHA256 = "X-Content-SHA256"
_SHA256_HEX = frozenset("0123456789abcdef")


async def verify_headers_only(request: web.Request) -> str:
    """Check a streamed request's signature before its body is read; return its content hash.

    The signer signs ``sha256(b"")`` as the body hash plus the ``X-Content-SHA256`` header
    (covered by the signature), so the receiver can refuse a bad request before reading a
    byte of a large body, then must compare the body it read with the returned hash.
    """
    content_sha256 = request.headers.get(CONTENT_SHA256, "").strip().lower()
    if len(content_sha256) != 64 or not _SHA256_HEX.issuperset(content_sha256):
        raise ValidationError("expected 64 hex digits (the SHA-256 of the body)", CONTENT_SHA256)
    request.app[VERIFIER_KEY].verify(request.headers.get("Authorization"), request.method,
                                     request.rel_url.raw_path_qs, b"",
                                     {"x-content-sha256": request.headers[CONTENT_SHA256]})
    request[SIGNED_KEY] = True
    return content_sha256


def signed(handler: Handler) -> Handler:
    """Decorator: the route requires a valid signature."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        await verify_request(request)
        return await handler(request)

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    wrapper.edgepair_signed = True  # type: ignore[attr-defined]
    return wrapper


async def json_body(request: web.Request) -> dict[str, Any]:
    """Parse the body as a JSON object; 400 with a precise message otherwise."""
    body = await read_body(request)
    if not body:
        return {}
    data = loads(body)
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    return data


# The dashboard's files: every path outside the API and the public files.
_FRONTEND_ROUTE = "/{path:(?!api/|data/).+}"
FRONTEND_DIR_KEY = web.AppKey("frontend_dir", Path)


def add_frontend(app: web.Application, root: Path) -> None:
    """Serve the dashboard's files from ``root``: GET ``/`` is its index.html, and a path that
    names no file is a JSON 404 (aiohttp's static route answers an empty one, past the error
    middleware). Paths under /api/ and /data/ never reach it, so a wrong method there is 405."""
    app[FRONTEND_DIR_KEY] = root.resolve()
    app.router.add_get("/", _frontend_index)
    app.router.add_get(_FRONTEND_ROUTE, _frontend_file)


async def _frontend_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[FRONTEND_DIR_KEY] / "index.html",
                            headers={"Cache-Control": "no-cache"})


async def _frontend_file(request: web.Request) -> web.FileResponse:
    root = request.app[FRONTEND_DIR_KEY]
    rel = request.match_info["path"]
    parts = rel.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise web.HTTPNotFound(text=f"no dashboard file {rel!r}")
    path = root.joinpath(*parts)
    # No links: a file is served only if every component is a real entry under root.
    if path.resolve() != path or not path.is_file():
        raise web.HTTPNotFound(text=f"no dashboard file {rel!r}")
    return web.FileResponse(path)
