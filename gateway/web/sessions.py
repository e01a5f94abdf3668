"""Server-side sessions, the signed-in user of a request, and CSRF protection for page forms.

Sessions: the cookie carries a random 256-bit id; the database keeps only its SHA-256, the user,
when it started, when it was last seen, when it expires (7 days idle, 30 days at most) and a CSRF
secret. Ending a session deletes the row, so a copied cookie stops working at once. The cookie is
HttpOnly and SameSite=Lax, and Secure (with the `__Host-` name prefix) when GATEWAY_PUBLIC_URL is
https.

CSRF: every POST (PUT, PATCH, DELETE) to a page, i.e. anything but /api/, /webhooks/ and the
RFC 8058 one-click /unsubscribe/<token>, must carry a `csrf_token` form field (or an
`X-CSRF-Token` header) that matches, compared in constant time:
- for a signed-in request, HMAC(secret key, the session's CSRF secret);
- for anonymous forms (/login, /join/<token>), a signed double-submit token: HMAC(secret key,
  the random value of the `gw_csrf` cookie), so a token cannot be made without the server key.
Either is accepted, so a form opened before signing in (or in another tab) still posts.
A missing or wrong token is a 403 page in the user's language, and nothing is written.

Streamed uploads: the middleware reads a form with `request.post()`, which holds the whole body in
memory and is capped by the app's client_max_size (GATEWAY_MAX_REQUEST_BYTES, 1 MiB). A roster
file is far bigger (50,000 people is 5-10 MB), so the few paths in STREAMED_UPLOAD_PATHS are not
read here: their handlers stream the body with `read_upload`, which checks the token itself
before it returns anything (a handler cannot get the data without the check), and the middleware
fails any such request whose handler returned without that check.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Awaitable, Callable

from aiohttp import BodyPartReader, web
from tortoise import fields
from tortoise.models import Model

from gateway.clock import utcnow
from gateway.directory.models import User
from gateway.errors import GatewayError
from gateway.web import keys

IDLE_TIMEOUT = timedelta(days=7)
MAX_LIFETIME = timedelta(days=30)
TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at is written at most this often
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Paths whose POSTs are not page forms: machine endpoints, and one-click unsubscribe (RFC 8058:
# mail providers post it without cookies; the token in the URL is the authority).
CSRF_EXEMPT_PREFIXES = ("/api/", "/webhooks/", "/unsubscribe/")
NO_SESSION_PREFIXES = ("/api/", "/webhooks/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Multipart posts to these exact paths are read (and their CSRF token checked) by the handler with
# read_upload, under its own size limit, not by csrf_middleware (see the module docstring). Keep
# this list short and explicit: each handler here MUST call read_upload before it writes anything.
STREAMED_UPLOAD_PATHS = frozenset({"/directory/roster"})
UPLOAD_FIELD_BYTES = 64 * 1024  # a plain (non-file) field of a streamed upload
UPLOAD_MAX_PARTS = 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Session(Model):
    """A signed-in browser. Only the SHA-256 of the cookie value is stored."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    csrf_secret = fields.CharField(max_length=64)
    # How it started: password, join (first login) or link (a login link).
    method = fields.CharField(max_length=16, default="password")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "web_session"


USER = web.RequestKey("user", User)
SESSION = web.RequestKey("session", Session)
_NEW_CSRF_NONCE = web.RequestKey("new_csrf_nonce", str)
_CLEAR_SESSION_COOKIE = web.RequestKey("clear_session_cookie", bool)
_CSRF_PENDING = web.RequestKey("csrf_pending", bool)  # a streamed upload whose token is not checked yet


class CsrfError(GatewayError):
    status = 403
    code = "csrf"



def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def is_secure(settings) -> bool:
    return settings.public_url.lower().startswith("https://")


def session_cookie_name(settings) -> str:
    return "__Host-gw_session" if is_secure(settings) else "gw_session"


def csrf_cookie_name(settings) -> str:
    return "__Host-gw_csrf" if is_secure(settings) else "gw_csrf"


def _cookie_flags(settings) -> dict[str, object]:
    return {"httponly": True, "samesite": "Lax", "secure": is_secure(settings), "path": "/"}


# -- sessions --------------------------------------------------------------------------------------


async def start_session(user_id: int, method: str, *, now: datetime | None = None) -> tuple[Session, str]:
    """A new session for the user; returns the row and the cookie value (never stored)."""
    now = now or utcnow()
    await Session.filter(expires_at__lte=now).delete()  # housekeeping, on the expires_at index
    raw = secrets.token_urlsafe(32)  # 256 bits
    row = await Session.create(key_hash=_hash(raw), user_id=user_id, csrf_secret=secrets.token_hex(32),
                               method=method, created_at=now, last_seen_at=now, expires_at=now + IDLE_TIMEOUT)
    return row, raw


async def load_session(raw: str, *, now: datetime | None = None) -> Session | None:
    """The live session for a cookie value (its user loaded), or None; refreshes its idle timer."""
    if not raw or len(raw) > 128:
        return None
    now = now or utcnow()
    digest = _hash(raw)
    row = await Session.get_or_none(key_hash=digest).select_related("user")
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    if row.expires_at <= now:
        await Session.filter(id=row.id).delete()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        row.expires_at = min(now + IDLE_TIMEOUT, row.created_at + MAX_LIFETIME)
        await Session.filter(id=row.id).update(last_seen_at=row.last_seen_at, expires_at=row.expires_at)
    return row


async def end_session(session: Session) -> None:
    await Session.filter(id=session.id).delete()


async def end_sessions_of(user_id: int, *, keep: int | None = None) -> int:
    """End every session of the user (but `keep`), e.g. after a password change."""
    query = Session.filter(user_id=user_id)
    if keep is not None:
        query = query.exclude(id=keep)
    return await query.delete()


def sign_in(request: web.Request, response: web.StreamResponse, raw: str) -> None:
    """Put a new session's cookie on the response."""
    settings = request.config_dict[keys.SETTINGS]
    response.set_cookie(session_cookie_name(settings), raw, max_age=int(MAX_LIFETIME.total_seconds()),
                        **_cookie_flags(settings))
    request[_CLEAR_SESSION_COOKIE] = False


def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    settings = request.config_dict[keys.SETTINGS]
    response.del_cookie(session_cookie_name(settings), path="/", secure=is_secure(settings), httponly=True,
                        samesite="Lax")


def current_user(request: web.Request) -> User | None:
    return request.get(USER)


def current_session(request: web.Request) -> Session | None:
    return request.get(SESSION)


# -- CSRF ------------------------------------------------------------------------------------------


def _sign(settings, kind: str, value: str) -> str:
    return hmac.new(settings.secret_key.encode(), f"csrf:{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: web.Request) -> str:
    """The token to put in a form of this page (sets the anonymous CSRF cookie when needed)."""
    settings = request.config_dict[keys.SETTINGS]
    session = request.get(SESSION)
    if session is not None:
        return _sign(settings, "s", session.csrf_secret)
    nonce = request.get(_NEW_CSRF_NONCE) or request.cookies.get(csrf_cookie_name(settings))
    if not nonce or len(nonce) > 128:
        nonce = secrets.token_urlsafe(32)
        request[_NEW_CSRF_NONCE] = nonce
    return _sign(settings, "a", nonce)


def csrf_ok(request: web.Request, sent: str | None) -> bool:
    if not sent or len(sent) != 64:
        return False
    settings = request.config_dict[keys.SETTINGS]
    good = False
    session = request.get(SESSION)
    if session is not None:
        good |= hmac.compare_digest(sent, _sign(settings, "s", session.csrf_secret))
    nonce = request.cookies.get(csrf_cookie_name(settings))
    if nonce and len(nonce) <= 128:
        good |= hmac.compare_digest(sent, _sign(settings, "a", nonce))
    return good


# -- middlewares -----------------------------------------------------------------------------------


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session named by the cookie; set request[USER] and request[SESSION]."""
    if request.path.startswith(NO_SESSION_PREFIXES):
        return await handler(request)
    settings = request.config_dict[keys.SETTINGS]
    raw = request.cookies.get(session_cookie_name(settings))
    if raw:
        session = await load_session(raw)
        if session is not None:
            request[SESSION] = session
            request[USER] = session.user
        else:
            request[_CLEAR_SESSION_COOKIE] = True  # expired or ended elsewhere: forget it
    try:
        response = await handler(request)
    except web.HTTPRedirection as redirect:  # e.g. "sign in first": still forget a dead cookie
        if request.get(_CLEAR_SESSION_COOKIE):
            sign_out(request, redirect)
        raise
    if request.get(_CLEAR_SESSION_COOKIE) and not response.prepared:
        sign_out(request, response)
    nonce = request.get(_NEW_CSRF_NONCE)
    if nonce and not response.prepared:
        response.set_cookie(csrf_cookie_name(settings), nonce, **_cookie_flags(settings))
    return response


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a page form posted without the right CSRF token, before the handler runs."""
    if request.method in UNSAFE_METHODS and not request.path.startswith(CSRF_EXEMPT_PREFIXES):
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type == "multipart/form-data" and request.path in STREAMED_UPLOAD_PATHS:
            # The handler streams the body and checks the token with read_upload (module docstring).
            request[_CSRF_PENDING] = True
            response = await handler(request)
            if request.get(_CSRF_PENDING):
                raise RuntimeError(f"{request.path} is a streamed upload but its handler never called read_upload")
            return response
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not csrf_ok(request, sent):
            raise CsrfError("the form's security token is missing or wrong; reload the page and try again")
    return await handler(request)


# -- streamed uploads ------------------------------------------------------------------------------


async def read_upload(request: web.Request, max_bytes: int) -> tuple[dict[str, str], str, bytes]:
    """(the plain fields, the file's name, the file's bytes) of a multipart form with one file.

    Streams the body (not bound by client_max_size): more than `max_bytes` in all is a 413. The
    CSRF token (the csrf_token field, or the X-CSRF-Token header) is checked before anything is
    returned, and as soon as it is read when it comes before the file (browsers send fields in
    form order): a wrong or missing token raises CsrfError. The only way to read a body that
    csrf_middleware left alone (STREAMED_UPLOAD_PATHS).
    """
    if request.content_type != "multipart/form-data":
        # csrf_middleware has checked any other form already: this is just the wrong kind of post.
        raise GatewayError("send the file as a multipart/form-data upload")
    header = request.headers.get(CSRF_HEADER)
    checked = header is not None and _csrf_checked(request, header)
    fields: dict[str, str] = {}
    file_name: str | None = None
    data = bytearray()
    total = 0
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise GatewayError("the upload could not be read as multipart/form-data") from None
    for _ in range(UPLOAD_MAX_PARTS + 1):
        try:
            part = await reader.next()
        except ValueError:
            raise GatewayError("the upload could not be read as multipart/form-data") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise GatewayError("nested multipart bodies are not accepted")
        is_file = part.filename is not None
        if is_file and file_name is not None:
            raise GatewayError("send one file")
        limit = max_bytes if is_file else UPLOAD_FIELD_BYTES
        value = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            value += chunk
            total += len(chunk)
            if total > max_bytes or len(value) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=total)
        if is_file:
            file_name, data = part.filename or "", value
            continue
        text = value.decode("utf-8", errors="replace")
        fields[part.name or ""] = text
        if part.name == CSRF_FIELD and not checked:
            checked = _csrf_checked(request, text)
    else:
        raise GatewayError("too many form fields")
    if not checked:
        _csrf_checked(request, None)
    return fields, file_name or "", bytes(data)


def _csrf_checked(request: web.Request, sent: str | None) -> bool:
    """True when `sent` is this request's token (and the upload may be read); else raise CsrfError."""
    if not csrf_ok(request, sent):
        raise CsrfError("the form's security token is missing or wrong; reload the page and try again")
    request[_CSRF_PENDING] = False
    return True
