"""The first login at /join/<token>, through the real aiohttp app, in English and Spanish."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher

from gateway.directory.models import ContactKind, ContactPoint, Membership, User
from gateway.invites.passwords import TEST_COST, cost_for
from gateway.invites.tokens import LoginToken, Purpose, check_token, issue_token
from gateway.web.sessions import Session

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
JOIN = re.compile(r"https://gateway\.test/join/([a-z2-7]{26})")
GOOD = "purple kettle sings"
INVALID = "This link does not work any more"
INVALID_ES = "Este enlace ya no funciona"


async def user_of(external_id: str) -> User:
    return await User.get(id=(await Membership.get(external_id=external_id)).user_id)


async def invite(settings, external_id: str, **kw) -> str:
    user = await user_of(external_id)
    _, token = await issue_token(user.id, Purpose.FIRST_LOGIN, settings.secret_key, **kw)
    return token


def csrf(html: str) -> str:
    return CSRF.search(html).group(1)


@pytest.fixture
async def web(make_client):
    """The app served over plain http, so the test client's cookie jar sends the cookies back."""
    return await make_client(public_url="http://127.0.0.1:8080")


async def open_form(web, token: str, **headers) -> str:
    response = await web.get(f"/join/{token}", headers=headers)
    assert response.status == 200, await response.text()
    return await response.text()


async def post_form(web, token: str, html: str, password=GOOD, confirm=None, locale="en", **headers):
    data = {"csrf_token": csrf(html), "password": password, "confirm": password if confirm is None else confirm,
            "locale": locale}
    return await web.post(f"/join/{token}", data=data, allow_redirects=False, headers=headers)


async def still_valid(token: str) -> bool:
    return (await check_token(token, (Purpose.FIRST_LOGIN,))).ok


def test_the_tests_hash_cheaply(settings):
    assert cost_for(settings) == TEST_COST  # GATEWAY_ENV=test: the ~8 ms argon2 parameters


async def test_get_twice_then_post_joins_starts_a_session_and_lands_on_the_inbox(web, people, settings):
    token = await invite(settings, "g-john")
    first = await open_form(web, token)
    second = await open_form(web, token)  # mail scanners open links: GET never consumes
    assert await still_valid(token)
    assert "Welcome, John Smith" in second and "At least 10 characters" in first
    assert '<option value="en" lang="en" selected>English</option>' in second
    assert '<option value="es" lang="es">Español</option>' in second

    response = await post_form(web, token, second, locale="es")
    assert response.status == 303 and response.headers["Location"] == "/inbox"
    cookie = response.cookies["gw_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"] and cookie["path"] == "/"

    john = await user_of("g-john")
    assert john.locale == "es" and john.joined_at is not None
    assert datetime.now(timezone.utc) - john.joined_at < timedelta(minutes=1)
    assert john.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(john.password_hash, GOOD)
    [session] = await Session.filter(user_id=john.id)
    assert session.method == "join" and session.key_hash != cookie.value

    inbox = await web.get("/inbox")
    page = await inbox.text()
    assert inbox.status == 200 and 'lang="es"' in page
    assert "Hola, John Smith" in page and "Bandeja de entrada" in page

    again = await post_form(web, token, second)
    assert again.status == 410 and INVALID_ES in await again.text()  # used; John reads Spanish now
    assert (await check_token(token, (Purpose.FIRST_LOGIN,))).problem.value == "used"


async def test_under_https_the_cookies_are_secure_and_the_session_works(make_client, people, settings):
    client = await make_client()  # public_url https://gateway.test
    token = await invite(settings, "g-wei")
    response = await client.get(f"/join/{token}")
    anon = response.cookies["__Host-gw_csrf"]
    assert anon["secure"] and anon["httponly"] and anon["samesite"] == "Lax"
    html = await response.text()
    # The test client talks plain http and keeps Secure cookies to itself: hand them over by name.
    posted = await client.post(f"/join/{token}", allow_redirects=False, headers={"Cookie": f"__Host-gw_csrf={anon.value}"},
                               data={"csrf_token": csrf(html), "password": GOOD, "confirm": GOOD, "locale": "en"})
    assert posted.status == 303
    session = posted.cookies["__Host-gw_session"]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax" and session["path"] == "/"
    assert "Max-Age" in posted.headers["Set-Cookie"] or session["max-age"]
    inbox = await client.get("/inbox", headers={"Cookie": f"__Host-gw_session={session.value}"}, allow_redirects=False)
    assert inbox.status == 200 and '<span class="who meta">Li Wei</span>' in await inbox.text()


async def test_the_page_follows_the_users_locale_then_the_browser(web, people, settings):
    ana = await open_form(web, await invite(settings, "g-ana"))  # Ana's locale is es
    assert 'lang="es"' in ana and "Le damos la bienvenida, Ana García" in ana
    assert '<option value="es" lang="es" selected>Español</option>' in ana
    john = await open_form(web, await invite(settings, "g-john"), **{"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert "Le damos la bienvenida, John Smith" in john  # no locale of his own: the browser's
    assert '<option value="es" lang="es" selected>Español</option>' in john
    english = await open_form(web, await invite(settings, "g-wei"), **{"Accept-Language": "fr"})
    assert "Welcome, Li Wei" in english


@pytest.mark.parametrize("password, confirm, english, spanish", [
    ("short1!", None, "at least 10 characters", "al menos 10 caracteres"),
    ("password123", None, "too common", "demasiado común"),
    ("P@ssw0rd2024!", None, "too common", "demasiado común"),
    ("qwertyuiop", None, "too common", "demasiado común"),
    ("aaaaaaaaaaaa", None, "too common", "demasiado común"),
    ("john@family.example", None, "cannot be your e-mail address, phone number or name", "no puede ser su correo"),
    ("+14155550143", None, "cannot be your e-mail address, phone number or name", "no puede ser su correo"),
    ("JohnSmith2024", None, "cannot be your e-mail address, phone number or name", "no puede ser su correo"),
    (GOOD, GOOD + "x", "are not the same", "no son iguales"),
])
async def test_a_weak_or_mismatched_password_shows_the_form_again_and_keeps_the_link(
        web, people, settings, password, confirm, english, spanish):
    token = await invite(settings, "g-john")
    html = await open_form(web, token)
    response = await post_form(web, token, html, password=password, confirm=confirm, locale="en")
    text = await response.text()
    assert response.status == 422 and english in text and "Welcome, John Smith" in text
    # The language chosen in the form is the language of the answer.
    response = await post_form(web, token, text, password=password, confirm=confirm, locale="es")
    text = await response.text()
    assert response.status == 422 and spanish in text
    assert '<option value="es" lang="es" selected>Español</option>' in text
    john = await user_of("g-john")
    assert john.password_hash is None and john.joined_at is None and john.locale is None
    assert await still_valid(token) and await Session.all().count() == 0


async def test_expired_used_unknown_tampered_and_wrong_purpose_links_all_show_the_same_page(web, people, settings):
    john = await user_of("g-john")
    expired = await invite(settings, "g-john", ttl=timedelta(days=14), now=datetime.now(timezone.utc) - timedelta(days=15))
    _, login_token = await issue_token(john.id, Purpose.LOGIN, settings.secret_key)
    good = await invite(settings, "g-john")
    tampered = good[:-1] + ("a" if good[-1] != "a" else "b")
    pages = []
    for token in (expired, login_token, tampered, "a" * 26, "not-a-token", good.upper()):
        response = await web.get(f"/join/{token}")
        text = await response.text()
        assert response.status == 410 and INVALID in text, token
        assert 'action="/login/link"' in text and "csrf_token" in text  # it offers a new link
        pages.append(re.sub(r'value="[0-9a-f]{64}"', "", text))
        post = await web.post(f"/join/{token}", data={"csrf_token": csrf(text), "password": GOOD, "confirm": GOOD})
        assert post.status == 410
    assert len(set(pages)) == 1  # nothing tells an unknown link from a known one
    assert await still_valid(good) and (await user_of("g-john")).password_hash is None
    # In the browser's language when the link says nothing about whom it was for.
    spanish = await web.get("/join/" + "b" * 26, headers={"Accept-Language": "es"})
    assert INVALID_ES in await spanish.text()


async def test_a_link_of_someone_who_already_joined_is_spent(web, people, settings):
    older, newer = await invite(settings, "g-john"), await invite(settings, "g-john")
    assert (await post_form(web, newer, await open_form(web, newer))).status == 303
    # Every e-mail to a person who has not joined carries a join link: the others are spent now.
    assert (await check_token(older, (Purpose.FIRST_LOGIN,))).problem.value == "used"
    assert (await web.get(f"/join/{older}")).status == 410


@pytest.mark.parametrize("token_value", [None, "", "0" * 64, "wrong"])
async def test_a_post_without_the_right_csrf_token_is_refused_and_writes_nothing(web, people, settings, token_value):
    token = await invite(settings, "g-ana")
    html = await open_form(web, token)
    assert csrf(html)
    data = {"password": GOOD, "confirm": GOOD, "locale": "es"}
    if token_value is not None:
        data["csrf_token"] = token_value
    response = await web.post(f"/join/{token}", data=data, allow_redirects=False)
    text = await response.text()
    assert response.status == 403 and response.content_type == "text/html"
    assert "This form has expired" in text  # Ana is not signed in; the browser asked for nothing
    ana = await user_of("g-ana")
    assert ana.password_hash is None and ana.joined_at is None
    assert await still_valid(token) and await Session.all().count() == 0
    spanish = await web.post(f"/join/{token}", data=data, headers={"Accept-Language": "es"})
    assert spanish.status == 403 and "Este formulario ha caducado" in await spanish.text()


async def test_a_token_from_another_browser_session_is_not_accepted(web, make_client, people, settings):
    token = await invite(settings, "g-john")
    html = await open_form(web, token)
    other = await make_client(public_url="http://127.0.0.1:8080")  # its own cookie jar
    response = await other.post(f"/join/{token}", data={"csrf_token": csrf(html), "password": GOOD, "confirm": GOOD})
    assert response.status == 403 and await still_valid(token)


async def test_a_student_whose_login_is_not_enabled_is_told_to_ask_the_school(web, people, settings):
    token = await invite(settings, "s-lucia")
    response = await web.get(f"/join/{token}")
    text = await response.text()
    assert response.status == 403 and "Please ask your school (Lincoln Elementary)" in text
    form = await (await web.get("/login")).text()  # the page above has no form: take a token from one
    post = await web.post(f"/join/{token}", data={"csrf_token": csrf(form), "password": GOOD, "confirm": GOOD})
    assert post.status == 403 and "Please ask your school" in await post.text()
    assert (await user_of("s-lucia")).password_hash is None
    assert await still_valid(token)
    es = await web.get(f"/join/{token}", headers={"Accept-Language": "es"})
    assert "pida a su escuela" in await es.text()
    # Once the school enables it, the same link works.
    await User.filter(id=(await user_of("s-lucia")).id).update(login_enabled=True)
    assert (await web.get(f"/join/{token}")).status == 200


async def test_the_invitation_email_link_works_end_to_end(web, people, twilio_settings, dispatcher, fake_smtp):
    from gateway.invites.campaigns import create_campaign, run_campaign

    campaign = await create_campaign(people, ["guardians"], dry_run=False, actor="tests")
    await run_campaign(campaign.id, twilio_settings.secret_key)
    await dispatcher.drain()
    mail = next(r.message for r in fake_smtp.received if r.rcpt_tos == ("ana@family.example",))
    token = JOIN.search(mail.get_body(("plain",)).get_content()).group(1)
    await open_form(web, token)
    html = await open_form(web, token)
    assert (await post_form(web, token, html, locale="es")).status == 303
    ana = await user_of("g-ana")
    assert ana.joined_at is not None and ana.locale == "es" and ana.password_hash
    assert "Hola, Ana García" in await (await web.get("/inbox")).text()

    again = await create_campaign(people, ["guardians"], dry_run=False, actor="tests", cooldown_days=0)
    done = await run_campaign(again.id, twilio_settings.secret_key)
    assert (done.targeted, done.invited, done.skipped_joined) == (3, 2, 1)


async def test_the_password_cannot_be_any_of_the_users_addresses(web, people, settings):
    john = await user_of("g-john")
    await ContactPoint.create(user_id=john.id, kind=ContactKind.EMAIL, address="johnny.smith.home@example.org")
    token = await invite(settings, "g-john")
    html = await open_form(web, token)
    response = await post_form(web, token, html, password="johnny.smith.home@example.org")
    assert response.status == 422 and await still_valid(token)
    assert await LoginToken.filter(used_at__not_isnull=True).count() == 0
