"""What every page handler needs: the page language, the signed-in person and their schools, rendering.

A signed-in page starts with `viewer = await signed_in(request)`: it answers a redirect to /login
for anonymous visitors (raised, so handlers stay straight-line) and loads the person's memberships
once per request; the navigation bar and the per-school checks read them from there.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from tortoise.exceptions import IntegrityError

from gateway.directory.models import Membership, Role, User
from gateway.errors import GatewayError
from gateway.i18n import babel_locale
from gateway.threads.models import Message
from gateway.web import keys
from gateway.web.pages import use_language
from gateway.web.sessions import csrf_token, current_user

HOME = "/inbox"
STAFF_HOME = "/conversations"


class Forbidden(GatewayError):
    """Signed in, but this page is for someone else (e.g. an admin page for a teacher)."""

    status = 403
    code = "forbidden"


@dataclass
class SignedIn:
    user: User
    memberships: list[Membership]  # schools loaded, oldest first
    lang: str

    @property
    def staff(self) -> list[Membership]:
        return [m for m in self.memberships if m.role is Role.STAFF]

    @property
    def admin_of(self) -> list[int]:
        return [m.school_id for m in self.memberships if m.role is Role.STAFF and m.is_admin]

    @property
    def is_staff(self) -> bool:
        return bool(self.staff)

    @property
    def is_family(self) -> bool:
        """A guardian or student somewhere: they get the inbox and can write to teachers."""
        return any(m.role is not Role.STAFF for m in self.memberships)

    def staff_in(self, school_id: int) -> Membership | None:
        return next((m for m in self.staff if m.school_id == school_id), None)

    @property
    def home(self) -> str:
        return STAFF_HOME if self.is_staff else HOME


_SIGNED_IN = web.RequestKey("signed_in", SignedIn)


def page_language(request: web.Request, *preferred: str | None) -> str:
    """The page language: the signed-in user's, else `preferred`, else Accept-Language, else English."""
    user = current_user(request)
    return use_language(request, user.locale if user else None, *preferred)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


class SignInFirst(web.HTTPSeeOther):
    """Raised for an anonymous visitor of a signed-in page: off to /login, and back here after."""

    def __init__(self, request: web.Request) -> None:
        super().__init__(location="/login?next=" + quote(request.path_qs, safe="/"),
                         headers={"Cache-Control": "no-store"})


async def signed_in(request: web.Request) -> SignedIn:
    """The signed-in person of this request, their memberships loaded, the page language set."""
    found = request.get(_SIGNED_IN)
    if found is not None:
        return found
    user = current_user(request)
    if user is None:
        raise SignInFirst(request)
    memberships = await Membership.filter(user_id=user.id).select_related("school").order_by("id")
    # A student whose login is not (or no longer) enabled has no pages: their school decides.
    memberships = [m for m in memberships if m.role is not Role.STUDENT or user.login_enabled]
    if not memberships:
        raise Forbidden("no school lets this account sign in")
    found = SignedIn(user, memberships, page_language(request))
    request[_SIGNED_IN] = found
    return found


async def signed_in_staff(request: web.Request) -> SignedIn:
    viewer = await signed_in(request)
    if not viewer.is_staff:
        raise Forbidden("this page is for school staff")
    return viewer


async def signed_in_family(request: web.Request) -> SignedIn:
    viewer = await signed_in(request)
    if not viewer.is_family:
        raise Forbidden("this page is for guardians and students")
    return viewer


async def signed_in_admin(request: web.Request, school: Any = None) -> tuple[SignedIn, Membership]:
    """A staff admin and the school they act for: `school` (an id from the form or query) when they
    administer it, else their first; anyone else gets 403 (directory pages show contact details)."""
    viewer = await signed_in_staff(request)
    admin = [m for m in viewer.staff if m.is_admin]
    if not admin:
        raise Forbidden("only school administrators use the directory")
    wanted = form_int(school)
    if wanted is None:
        return viewer, admin[0]
    chosen = next((m for m in admin if m.school_id == wanted), None)
    if chosen is None:
        raise Forbidden("you do not administer that school")
    return viewer, chosen


def render(request: web.Request, template: str, context: dict[str, Any], *, lang: str | None = None,
           status: int = 200) -> web.Response:
    """A page in `lang` (default: the signed-in person's), with the CSRF token and the navigation."""
    viewer = request.get(_SIGNED_IN)
    lang = lang or (viewer.lang if viewer else page_language(request))
    base = {"lang": lang, "csrf_token": csrf_token(request), "user": current_user(request), "viewer": viewer,
            "path": request.path, "submission": secrets.token_urlsafe(16)}
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def form_int(value: Any) -> int | None:
    """A positive id from a form or URL part, or None (never an exception on junk)."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 12 else None


def locale_name(code: str) -> str:
    """A language named in itself ("English", "Español", "العربية")."""
    name = babel_locale(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]


# -- forms that write messages: once per submission ------------------------------------------------

SUBMISSION = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
T = TypeVar("T")


def submission_key(user_id: int, form: Mapping[str, Any]) -> str | None:
    """The stored key of this form submission (its random `submission` field, hashed with the author)."""
    value = form.get("submission")
    if not isinstance(value, str) or not SUBMISSION.match(value):
        return None
    return hashlib.sha256(f"{user_id}:{value}".encode()).hexdigest()


async def once(key: str | None, write: Callable[[], Awaitable[T]]) -> tuple[T | None, Message | None]:
    """Run `write` unless this submission was written already: (its result, None) or (None, the earlier message).

    A double click or a re-posted form finds the first message (Message.submission_key is unique,
    so two racing posts cannot both write).
    """
    if key is not None:
        earlier = await Message.get_or_none(submission_key=key)
        if earlier is not None:
            return None, earlier
    try:
        return await write(), None
    except IntegrityError:
        earlier = await Message.get_or_none(submission_key=key) if key is not None else None
        if earlier is None:
            raise
        return None, earlier


async def after_commit(request: web.Request, *conversation_ids: int) -> None:
    """Messages were committed: wake the outbox, and every page open on these conversations."""
    dispatcher = request.config_dict.get(keys.DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()
    await request.config_dict[keys.LIVE].publish(*conversation_ids)
