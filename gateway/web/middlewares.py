"""Error handling: clear errors, never a stack trace, JSON for machines and pages for people.

Machine paths (/api/, /webhooks/) get `{"error": {"code", "message"}}`. Everything else gets the
error page (templates/error.html) in the user's language: the signed-in user's locale, else the
browser's Accept-Language, else English, with a short explanation per status.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from gateway.errors import GatewayError, validation_message
from gateway.i18n import _
from gateway.web.errors_json import error_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MACHINE_PREFIXES = ("/api/", "/webhooks/")
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


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
        response = _page(request, exc.status, "")
        for name in KEPT_HEADERS:
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _answer(request, 500, "internal", "something went wrong on our side; nothing was half-written")


# Pages: scripts only from our own origin (message bodies are escaped; this is the second wall),
# no framing (clickjacking), no MIME sniffing, and no Referer carrying a magic-link token to another
# site. The inline <style> of base.html is the one inline thing allowed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not request.path.startswith(MACHINE_PREFIXES) and not response.prepared:
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def _answer(request: web.Request, status: int, code: str, message: str) -> web.Response:
    if _wants_json(request):
        return error_response(status, code, message)
    return _page(request, status, code)


def _texts(status: int, code: str) -> tuple[str, str]:
    """(title, explanation) of the error page, in the current language."""
    if code == "csrf":
        return (_("This form has expired"),
                _("For your safety, forms only work for a while and only from this site. Go back, reload the "
                  "page and try again."))
    if status == 404:
        return _("Page not found"), _("The address may be mistyped, or the page no longer exists.")
    if status == 403:
        return _("Not allowed"), _("You do not have access to this page.")
    if status == 405:
        return _("Not allowed"), _("This page cannot be used that way.")
    if status == 413:
        return _("Too large"), _("What you sent is larger than we accept.")
    if status == 429:
        return _("Too many attempts"), _("Please wait a few minutes and try again.")
    if status >= 500:
        return (_("Something went wrong on our side"),
                _("Nothing was half-saved. Please try again in a moment."))
    return _("Something is not right"), _("We could not understand this request. Go back and try again.")


def _page(request: web.Request, status: int, code: str) -> web.Response:
    from gateway.web.pages import use_language
    from gateway.web.sessions import current_user

    try:
        user = current_user(request)
        lang = use_language(request, user.locale if user else None)
        title, message = _texts(status, code)
        response = aiohttp_jinja2.render_template(
            "error.html", request, {"lang": lang, "title": title, "message": message}, status=status)
        response.headers["Cache-Control"] = "no-store"
        return response
    except Exception:  # the error page itself must never fail
        log.exception("could not render the error page for %s", request.path)
        return web.Response(status=status, text=f"{status}", content_type="text/plain")
