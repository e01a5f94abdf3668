"""Signing in and out (issue 4, item 5): /login, /login/link, /login/<token>, /logout, /password.

- `/login` takes an e-mail address or a phone number and a password. A wrong password, an unknown
  address and an address whose owner has no password yet all get the same answer, after the same
  argon2 work (an unknown address is checked against a dummy hash).
- "Send me a sign-in link" (`POST /login/link`) always answers the same page. Behind it, each person
  at that address who may sign in gets a link by the channel the address belongs to (the outbox
  sends it to their first usable address on that channel, usually the one typed): a sign-in link
  (`/login/<token>`, 15 minutes) when they have a password, else a first-login link (`/join/<token>`,
  also 15 minutes) where they choose one. An address can be shared (a household e-mail), so up to
  five people can get a link from one request.
- `/login/<token>` shows a "Sign in" button on GET (mail scanners open links; GET never consumes
  the token) and signs in on POST.
- Students whose login is not enabled are told to ask their school, but only once they have proved
  who they are (the right password, or a link): before that the answer is the generic one.
- Both forms are rate-limited per address typed and per client address (gateway.web.throttle).
- `/inbox` (gateway.web.pages_inbox) is the signed-in home page.
- `/password` changes the password: the current one is asked for, except within 15 minutes of
  signing in by a link (someone who forgot their password signs in by a link, then sets a new one).
  A change revokes outstanding sign-in links and ends the user's other sessions.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from gateway.directory.contacts import InvalidAddress, normalize_email, normalize_phone
from gateway.directory.models import (
    ContactKind,
    ContactPoint,
    Membership,
    Role,
    School,
    User,
)
from gateway.i18n import _, available_locales, ngettext
from gateway.invites.passwords import (
    PasswordProblem,
    check_new_password,
    cost_for,
    hash_password,
    needs_rehash,
    personal_words_of,
    store_password,
    verify_password,
)
from gateway.invites.tokens import (
    LOGIN_TTL,
    Purpose,
    check_token,
    consume_token,
    issue_token,
)
from gateway.web import keys, throttle
from gateway.web.page_kit import (
    HOME,
    locale_name,
    page_language,
    redirect,
    render,
    signed_in,
)
from gateway.web.pages import use_language
from gateway.web.sessions import (
    current_session,
    current_user,
    end_session,
    end_sessions_of,
    sign_in,
    sign_out,
    start_session,
)

log = logging.getLogger(__name__)

CHANNEL_OF = {ContactKind.EMAIL.value: "email", ContactKind.PHONE.value: "sms"}
MAX_PEOPLE_PER_ADDRESS = 5
RECENT_LINK_SIGN_IN = timedelta(minutes=15)


# -- helpers shared with gateway.invites.join ------------------------------------------------------


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value[:500]
    return HOME


def link_ttl(settings: Any) -> timedelta:
    """How long a link someone asked for works (issue 4: 15 minutes; settings.login_link_ttl when wired)."""
    ttl = getattr(settings, "login_link_ttl", None)
    return ttl if isinstance(ttl, timedelta) else LOGIN_TTL


async def sign_in_schools(user: User) -> tuple[list[Membership], list[Membership]]:
    """(memberships that let the user sign in, all memberships), schools loaded.

    Staff and guardians always may; students only when their login is enabled.
    """
    memberships = await Membership.filter(user_id=user.id).select_related("school").order_by("id")
    allowed = [m for m in memberships if m.role != Role.STUDENT or user.login_enabled]
    return allowed, memberships


async def start(request: web.Request, user: User, method: str, location: str) -> web.Response:
    """End any current session, start a new one for `user` (no fixation), and go to `location`."""
    old = current_session(request)
    if old is not None:
        await end_session(old)
    _session, raw = await start_session(user.id, method)
    response = redirect(location)
    sign_in(request, response, raw)
    return response


def too_many(request: web.Request, wait: float, lang: str) -> web.Response:
    minutes = max(1, math.ceil(wait / 60))
    response = render(request, "error.html", {
        "title": _("Too many attempts"),
        "message": ngettext("Please wait %(num)s minute and try again.", "Please wait %(num)s minutes and try again.",
                            minutes) % {"num": minutes},
    }, lang=lang, status=429)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def not_enabled(request: web.Request, memberships: list[Membership], lang: str) -> web.Response:
    schools = ", ".join(sorted({m.school.name for m in memberships}))
    return render(request, "not_enabled.html", {"schools": schools}, lang=lang, status=403)


# -- addresses -------------------------------------------------------------------------------------


async def parse_address(raw: str) -> tuple[str, list[str], str]:
    """(kind, normalised candidates, rate-limit key) for what someone typed as their address.

    A phone number without a country code is read in each region our schools use.
    """
    text = (raw or "").strip()[:320]
    fallback_key = "typed:" + text.casefold()
    if "@" in text:
        try:
            address = normalize_email(text)
        except InvalidAddress:
            return ContactKind.EMAIL.value, [], fallback_key
        return ContactKind.EMAIL.value, [address], f"email:{address}"
    if not any(ch.isdigit() for ch in text):
        return ContactKind.PHONE.value, [], fallback_key
    if text.startswith(("+", "00")):
        regions = ["US"]
    else:
        regions = sorted(set(await School.all().limit(50).values_list("default_region", flat=True))) or ["US"]
    numbers: set[str] = set()
    for region in regions:
        try:
            numbers.add(normalize_phone(text, region))
        except InvalidAddress:
            continue
    found = sorted(numbers)
    return ContactKind.PHONE.value, found, f"phone:{found[0]}" if found else fallback_key


async def people_at(kind: str, addresses: list[str]) -> list[User]:
    if not addresses:
        return []
    ids = await (ContactPoint.filter(kind=kind, address__in=addresses).order_by("user_id").distinct()
                 .values_list("user_id", flat=True))
    ids = list(dict.fromkeys(ids))[:MAX_PEOPLE_PER_ADDRESS]
    return list(await User.filter(id__in=ids).order_by("id")) if ids else []


# -- /login ----------------------------------------------------------------------------------------


async def root(request: web.Request) -> web.Response:
    return redirect(HOME if current_user(request) else "/login")


def _login_form(request: web.Request, lang: str, *, status: int = 200, error: str | None = None,
                notice: str | None = None, address: str = "", next_path: str = HOME) -> web.Response:
    return render(request, "login.html", {"error": error, "notice": notice, "address": address,
                                          "next": next_path}, lang=lang, status=status)


async def login_page(request: web.Request) -> web.Response:
    lang = page_language(request)
    next_path = safe_next(request.query.get("next"))
    if current_user(request) is not None:
        return redirect(next_path)
    notice = _("You have signed out.") if request.query.get("signed_out") else None
    return _login_form(request, lang, notice=notice, next_path=next_path)


async def login(request: web.Request) -> web.Response:
    lang = page_language(request)
    form = await request.post()
    typed = str(form.get("address", ""))
    password = str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")))
    settings = request.config_dict[keys.SETTINGS]
    kind, addresses, key = await parse_address(typed)
    limits = throttle.limits(request)
    wait = throttle.check(request, (limits.per_client, throttle.client_key(request)),
                          (limits.password_per_address, key))
    if wait:
        return too_many(request, wait, lang)
    cost = cost_for(settings)
    candidates = [u for u in await people_at(kind, addresses) if u.password_hash]
    matched: User | None = None
    if not candidates:
        await verify_password(None, password, cost)  # the same work as a real check
    for user in candidates:
        if await verify_password(user.password_hash, password, cost):
            matched = user
            break
    allowed: list[Membership] = []
    if matched is not None:
        allowed, memberships = await sign_in_schools(matched)
        if not allowed and memberships:
            return not_enabled(request, memberships, use_language(request, matched.locale))
    if matched is None or not allowed:
        error = _("That address and password do not match. If you have not chosen a password yet, "
                  "ask for a sign-in link below.")
        return _login_form(request, lang, status=422, error=error, address=typed, next_path=next_path)
    if needs_rehash(matched.password_hash or "", cost):
        await User.filter(id=matched.id).update(password_hash=await hash_password(password, cost))
    return await start(request, matched, "password", next_path)


async def request_link(request: web.Request) -> web.Response:
    """POST /login/link: "send me a sign-in link". The answer never says whether the address is known."""
    lang = page_language(request)
    form = await request.post()
    typed = str(form.get("address", ""))
    kind, addresses, key = await parse_address(typed)
    limits = throttle.limits(request)
    wait = throttle.check(request, (limits.per_client, throttle.client_key(request)),
                          (limits.link_per_address, key))
    if wait:
        return too_many(request, wait, lang)
    settings = request.config_dict[keys.SETTINGS]
    sent = 0
    for user in await people_at(kind, addresses):
        try:
            sent += await send_link(user, kind, settings)
        except Exception:  # the answer must not change: log it and carry on
            log.exception("could not queue a sign-in link for user %s", user.id)
    if sent:
        dispatcher = request.config_dict.get(keys.DISPATCHER)
        if dispatcher is not None:
            dispatcher.wake()
    minutes = int(link_ttl(settings).total_seconds() // 60)
    return render(request, "link_sent.html", {"minutes": minutes}, lang=lang)


async def send_link(user: User, kind: str, settings: Any) -> int:
    """Queue a link for `user` to their address of `kind`: sign-in when they have a password, first login otherwise."""
    from gateway.invites.outbox import queue_link_message

    allowed, _memberships = await sign_in_schools(user)
    if not allowed:
        return 0
    purpose = Purpose.LOGIN if user.password_hash else Purpose.FIRST_LOGIN
    row, _token = await issue_token(user.id, purpose, settings.secret_key, ttl=link_ttl(settings))
    delivery = await queue_link_message(user.id, allowed[0].school_id, purpose, row, channel=CHANNEL_OF[kind],
                                        secret_key=settings.secret_key)
    return 1 if delivery is not None else 0


# -- /login/<token> --------------------------------------------------------------------------------


async def invalid_link(request: web.Request, user: User | None) -> web.Response:
    """Expired, used, unknown or wrong-purpose: one page for all, offering a new link."""
    lang = page_language(request, user.locale if user else None)
    settings = request.config_dict[keys.SETTINGS]
    minutes = int(link_ttl(settings).total_seconds() // 60)
    return render(request, "join_invalid.html", {"minutes": minutes}, lang=lang, status=410)


async def login_link(request: web.Request) -> web.Response:
    """GET /login/<token>: a button (scanners open links); POST: sign in and use up the link."""
    check = await check_token(request.match_info["token"], (Purpose.LOGIN,))
    user = await User.get_or_none(id=check.token.user_id) if check.token is not None else None
    if not check.ok or user is None:
        return await invalid_link(request, user)
    lang = page_language(request, user.locale)
    allowed, memberships = await sign_in_schools(user)
    if not allowed:
        return not_enabled(request, memberships, lang) if memberships else await invalid_link(request, user)
    if request.method != "POST":
        return render(request, "login_link.html", {"name": user.name}, lang=lang)
    limits = throttle.limits(request)
    wait = throttle.check(request, (limits.per_client, throttle.client_key(request)))
    if wait:
        return too_many(request, wait, lang)
    assert check.token is not None
    if not await consume_token(check.token):
        return await invalid_link(request, user)
    return await start(request, user, "link", HOME)


# -- signed in -------------------------------------------------------------------------------------


async def logout(request: web.Request) -> web.Response:
    session = current_session(request)
    if session is not None:
        await end_session(session)
    response = redirect("/login?signed_out=1")
    sign_out(request, response)
    return response


def _recent_link_sign_in(request: web.Request) -> bool:
    session = current_session(request)
    return (session is not None and session.method in ("link", "join")
            and datetime.now(timezone.utc) - session.created_at < RECENT_LINK_SIGN_IN)


def password_problem_text(problem: PasswordProblem) -> str:
    return {
        PasswordProblem.TOO_SHORT: _("Your password needs at least 10 characters."),
        PasswordProblem.TOO_LONG: _("Your password is too long."),
        PasswordProblem.COMMON: _("That password is too common and easy to guess. Please choose another one."),
        PasswordProblem.PERSONAL: _("Your password cannot be your e-mail address, phone number or name."),
        PasswordProblem.MISMATCH: _("The two passwords are not the same."),
    }[problem]


async def password(request: web.Request) -> web.Response:
    """GET/POST /password: change the password (signed in)."""
    viewer = await signed_in(request)
    user, lang = viewer.user, viewer.lang
    ask_current = not _recent_link_sign_in(request)
    context: dict[str, Any] = {"ask_current": ask_current, "error": None, "done": False}
    if request.method != "POST":
        return render(request, "password.html", context, lang=lang)
    form = await request.post()
    limits = throttle.limits(request)
    wait = throttle.check(request, (limits.per_client, throttle.client_key(request)),
                          (limits.password_per_address, f"user:{user.id}"))
    if wait:
        return too_many(request, wait, lang)
    settings = request.config_dict[keys.SETTINGS]
    cost = cost_for(settings)
    fresh = await User.get(id=user.id)
    if ask_current and not await verify_password(fresh.password_hash, str(form.get("current", "")), cost):
        context["error"] = _("Your current password is not right.")
        return render(request, "password.html", context, lang=lang, status=422)
    problem = check_new_password(str(form.get("password", "")), str(form.get("confirm", "")),
                                 personal=await personal_words_of(user.id))
    if problem is not None:
        context["error"] = password_problem_text(problem)
        return render(request, "password.html", context, lang=lang, status=422)
    now = datetime.now(timezone.utc)
    extra = {"joined_at": now} if fresh.joined_at is None else {}
    await store_password(user.id, await hash_password(str(form["password"]), cost), now=now, **extra)
    session = current_session(request)
    await end_sessions_of(user.id, keep=session.id if session else None)
    context.update(done=True, ask_current=True)
    return render(request, "password.html", context, lang=lang)


def locale_choices(selected: str) -> list[dict[str, Any]]:
    """The shipped languages, each named in itself ("English", "Español")."""
    return [{"code": code, "name": locale_name(code), "selected": code == selected} for code in available_locales()]
