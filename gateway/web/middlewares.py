"""Error handling: clear errors, never a stack trace, JSON for machines and pages for people."""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from gateway.errors import GatewayError, validation_message
from gateway.web.errors_json import error_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MACHINE_PREFIXES = ("/api/", "/webhooks/")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(MACHINE_PREFIXES)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        response = _answer(request, exc.status, exc.code, exc.message)
        response.headers.update(exc.headers)
        return response
    except ValidationError as exc:
        return _answer(request, 422, "invalid", validation_message(exc))
    except web.HTTPRequestEntityTooLarge:
        return _answer(request, 413, "too_large", "the request body is larger than the configured limit")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        if _wants_json(request):
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _answer(request, 500, "internal", "something went wrong on our side; nothing was half-written")


def _answer(request: web.Request, status: int, code: str, message: str) -> web.Response:
    if _wants_json(request):
        return error_response(status, code, message)
    return web.Response(status=status, text=f"{status}: {message}", content_type="text/plain")
