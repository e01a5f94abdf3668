"""The first login at /join/<token> (issue 4, item 3; DESIGN section 6).

GET shows the form (a password twice, and a language from the shipped locales, preselected from
the user's locale) and never consumes the token: mail scanners open links. POST (CSRF-checked by
gateway.web.sessions) checks the password policy, then, in one transaction, consumes the token,
stores the argon2 hash, the locale and joined_at, and retires the user's other invitation links and
sign-in links; then it starts a session and lands on the signed-in home page.

An expired, used, unknown or tampered link, a sign-in token (wrong purpose), or the link of someone
who has already joined, all show the same page, which offers a new link without saying whether an
address is known. A weak or mismatched password shows the form again with the reason in the chosen
language, and the link still works.
"""
from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web
from tortoise.transactions import in_transaction

from gateway.directory.models import User
from gateway.i18n import available_locales, best_locale
from gateway.invites.passwords import (
    check_new_password,
    cost_for,
    hash_password,
    personal_words_of,
    store_password,
)
from gateway.invites.tokens import LoginToken, Purpose, check_token, consume_token
from gateway.web import keys, throttle
from gateway.web.pages import use_language
from gateway.web.pages_auth import (
    HOME,
    invalid_link,
    locale_choices,
    not_enabled,
    password_problem_text,
    render,
    sign_in_schools,
    start,
    too_many,
)


async def join(request: web.Request) -> web.Response:
    """GET and POST /join/<token>."""
    check = await check_token(request.match_info["token"], (Purpose.FIRST_LOGIN,))
    user = await User.get_or_none(id=check.token.user_id) if check.token is not None else None
    if not check.ok or user is None or user.joined_at is not None:
        return await invalid_link(request, user)
    assert check.token is not None
    allowed, memberships = await sign_in_schools(user)
    if not allowed:
        lang = use_language(request, user.locale)
        return not_enabled(request, memberships, lang) if memberships else await invalid_link(request, user)

    if request.method != "POST":
        selected = best_locale(user.locale, *_accepted(request))
        lang = use_language(request, user.locale)
        return _form(request, user, lang, selected)

    form = await request.post()
    chosen = str(form.get("locale", ""))
    selected = chosen if chosen in available_locales() else best_locale(user.locale)
    lang = use_language(request, selected)
    limits = throttle.limits(request)
    wait = throttle.check(request, (limits.per_client, throttle.client_key(request)))
    if wait:
        return too_many(request, wait, lang)
    password = str(form.get("password", ""))
    problem = check_new_password(password, str(form.get("confirm", "")), personal=await personal_words_of(user.id))
    if problem is not None:
        return _form(request, user, lang, selected, error=password_problem_text(problem), status=422)

    settings = request.config_dict[keys.SETTINGS]
    password_hash = await hash_password(password, cost_for(settings))
    now = datetime.now(timezone.utc)
    async with in_transaction():
        if not await consume_token(check.token, now=now):
            used = True  # someone posted the same link a moment earlier
        else:
            used = False
            await store_password(user.id, password_hash, now=now, locale=selected, joined_at=now)
            # Other invitations of this person (every e-mail carries one) are spent too.
            await LoginToken.filter(user_id=user.id, purpose=Purpose.FIRST_LOGIN, used_at=None).update(used_at=now)
    if used:
        return await invalid_link(request, user)
    user.locale = selected
    return await start(request, user, "join", HOME)


def _accepted(request: web.Request) -> list[str]:
    return [part.split(";")[0].strip() for part in request.headers.get("Accept-Language", "").split(",")]


def _form(request: web.Request, user: User, lang: str, selected: str, *, error: str | None = None,
          status: int = 200) -> web.Response:
    return render(request, "join.html", {"name": user.name, "locales": locale_choices(selected), "error": error},
                  lang=lang, status=status)
