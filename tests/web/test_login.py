"""Signing in afterwards: /login by password or by a link, rate limits, logout, the password change."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from gateway.channels.dev import DevEmailChannel, DevSmsChannel
from gateway.channels.email_smtp import SmtpEmailChannel
from gateway.channels.models import DevOutboxItem
from gateway.directory.models import ContactKind, ContactPoint, Membership, User
from gateway.invites.passwords import TEST_COST, hash_password
from gateway.invites.tokens import LoginToken, Purpose, check_token
from gateway.threads.dispatcher import Dispatcher
from gateway.threads.models import Delivery
from gateway.web import pages_auth
from gateway.web.sessions import Session
from gateway.web.throttle import LIMITS, TokenBuckets

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
LOGIN_LINK = re.compile(r"https://gateway\.test/login/([a-z2-7]{26})")
JOIN_LINK = re.compile(r"https://gateway\.test/join/([a-z2-7]{26})")
JOHN_PW = "blue heron at dawn"
WRONG = "Try a different one 77"
NO_MATCH = "That address and password do not match."
NO_MATCH_ES = "La dirección y la contraseña no coinciden."
SENT = "If this address belongs to someone at a school we work with, we have just sent a sign-in link to it."


async def user_of(external_id: str) -> User:
    return await User.get(id=(await Membership.get(external_id=external_id)).user_id)


async def set_password(external_id: str, password: str) -> User:
    user = await user_of(external_id)
    await User.filter(id=user.id).update(password_hash=await hash_password(password, TEST_COST),
                                         joined_at=datetime.now(timezone.utc), locale=user.locale)
    return await User.get(id=user.id)


@pytest.fixture
async def joined(people):
    """John has joined (password set); the others have not."""
    await set_password("g-john", JOHN_PW)
    return people


@pytest.fixture
async def web(make_client):
    return await make_client(public_url="http://127.0.0.1:8080")


async def token_from(web, path="/login", **headers) -> str:
    return CSRF.search(await (await web.get(path, headers=headers)).text()).group(1)


async def login(web, address: str, password: str, **headers):
    data = {"csrf_token": await token_from(web), "address": address, "password": password}
    return await web.post("/login", data=data, allow_redirects=False, headers=headers)


async def ask_link(web, address: str, **headers):
    data = {"csrf_token": await token_from(web), "address": address}
    return await web.post("/login/link", data=data, headers=headers)


def dev_dispatcher(settings) -> Dispatcher:
    return Dispatcher(settings, {"sms": DevSmsChannel(), "email": DevEmailChannel()})


def without_addresses(html: str, *addresses: str) -> str:
    html = re.sub(r'value="[0-9a-f]{64}"', "", html)
    for address in addresses:
        html = html.replace(address, "ADDRESS")
    return html


async def test_sign_in_with_email_and_password_then_the_inbox_knows_who_you_are(web, joined):
    response = await login(web, "John@Family.Example ", JOHN_PW)
    assert response.status == 303 and response.headers["Location"] == "/inbox"
    cookie = response.cookies["gw_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    page = await (await web.get("/inbox")).text()
    assert '<span class="who meta">John Smith</span>' in page and "<h1>Inbox</h1>" in page
    [session] = await Session.all()
    assert session.method == "password" and session.user_id == (await user_of("g-john")).id
    # Signed in, /login and / lead to the inbox.
    assert (await web.get("/login", allow_redirects=False)).headers["Location"] == "/inbox"
    assert (await web.get("/", allow_redirects=False)).headers["Location"] == "/inbox"


async def test_sign_in_with_a_phone_number_typed_any_usual_way(web, joined):
    for typed in ("(415) 555-0143", "+1 415 555 0143"):
        response = await login(web, typed, JOHN_PW)
        assert response.status == 303, typed
    # The second sign-in from the same browser replaced the first session.
    [session] = await Session.all()
    assert session.user_id == (await user_of("g-john")).id


async def test_a_new_sign_in_replaces_the_session_of_this_browser(web, joined):
    await login(web, "john@family.example", JOHN_PW)
    first = await Session.get()
    await web.post("/login", data={"csrf_token": await token_from(web, "/inbox"), "address": "john@family.example",
                                   "password": JOHN_PW}, allow_redirects=False)
    [second] = await Session.all()
    assert second.id != first.id  # no session fixation: a new id at every sign-in


async def test_wrong_password_unknown_address_and_no_password_yet_get_the_same_answer(web, joined, monkeypatch):
    calls = []
    real = pages_auth.verify_password

    async def counting(stored, password, cost):
        calls.append(stored is not None)
        return await real(stored, password, cost)

    monkeypatch.setattr(pages_auth, "verify_password", counting)
    answers = {}
    for address, password in [("john@family.example", WRONG), ("nobody@nowhere.example", WRONG),
                              ("wei@family.example", WRONG), ("+14155550199", WRONG), ("not an address", WRONG)]:
        calls.clear()
        response = await login(web, address, password)
        assert response.status == 422 and "gw_session" not in response.cookies
        answers[address] = without_addresses(await response.text(), address)
        assert len(calls) == 1  # one argon2 verification each time: a dummy hash when nobody is found
    assert len(set(answers.values())) == 1
    assert NO_MATCH in answers["john@family.example"]
    assert await Session.all().count() == 0
    spanish = await login(web, "nobody@nowhere.example", WRONG, **{"Accept-Language": "es"})
    assert NO_MATCH_ES in await spanish.text()


async def test_the_password_rate_limit_per_address_answers_429_known_or_not(web, joined):
    for address in ("john@family.example", "nobody@nowhere.example"):
        for _ in range(5):
            assert (await login(web, address, WRONG)).status == 422
        blocked = await login(web, address, JOHN_PW if "john" in address else WRONG, **{"Accept-Language": "es"})
        text = await blocked.text()
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
        assert "Demasiados intentos" in text and 'lang="es"' in text
    assert await Session.all().count() == 0  # even the right password waits
    # Another address from the same browser is still fine (the per-client limit is higher).
    await set_password("g-wei", "river stones whisper")
    assert (await login(web, "wei@family.example", "river stones whisper")).status == 303


async def test_the_per_client_rate_limit(web, joined):
    web.app[LIMITS].per_client = TokenBuckets(3, 60)
    for i in range(3):
        assert (await login(web, f"someone{i}@example.org", WRONG)).status == 422
    blocked = await login(web, "john@family.example", JOHN_PW)
    assert blocked.status == 429 and "Too many attempts" in await blocked.text()
    assert (await ask_link(web, "john@family.example")).status == 429


async def test_a_student_whose_login_is_not_enabled_cannot_sign_in_and_is_told_to_ask_the_school(web, joined):
    lucia = await user_of("s-lucia")
    await ContactPoint.create(user_id=lucia.id, kind=ContactKind.EMAIL, address="lucia@student.example")
    await User.filter(id=lucia.id).update(login_enabled=True)
    await set_password("s-lucia", "seven green turtles")
    await User.filter(id=lucia.id).update(login_enabled=False)  # the school turned it off again
    wrong = await login(web, "lucia@student.example", WRONG)
    assert wrong.status == 422 and NO_MATCH in await wrong.text()  # nothing said before she proves who she is
    right = await login(web, "lucia@student.example", "seven green turtles")
    text = await right.text()
    assert right.status == 403 and "Please ask your school (Lincoln Elementary) to turn it on." in text
    assert "gw_session" not in right.cookies and await Session.all().count() == 0
    es = await login(web, "lucia@student.example", "seven green turtles", **{"Accept-Language": "es"})
    assert "pida a su escuela (Lincoln Elementary)" in await es.text()
    # No link for her either, and the same answer as for anyone.
    response = await ask_link(web, "lucia@student.example")
    assert SENT in await response.text() and await Delivery.filter(recipient_id=lucia.id).count() == 0
    await User.filter(id=lucia.id).update(login_enabled=True)
    assert (await login(web, "lucia@student.example", "seven green turtles")).status == 303


async def test_a_login_link_by_email_through_smtp_signs_in_once(web, joined, settings, fake_smtp):
    unknown = await ask_link(web, "nobody@nowhere.example")
    known = await ask_link(web, "john@family.example")
    assert unknown.status == known.status == 200
    assert without_addresses(await unknown.text()) == without_addresses(await known.text())
    assert SENT in await known.text() and "for 15 minutes" in await known.text()
    john = await user_of("g-john")
    [delivery] = await Delivery.all()
    assert delivery.recipient_id == john.id and delivery.channel == "email" and delivery.login_token_id

    channel = SmtpEmailChannel(fake_smtp.host, fake_smtp.port)
    try:
        assert await Dispatcher(settings, {"sms": DevSmsChannel(), "email": channel}).drain() == 1
    finally:
        await channel.close()
    [mail] = fake_smtp.received
    assert mail.rcpt_tos == ("john@family.example",)
    token = LOGIN_LINK.search(mail.message.get_body(("plain",)).get_content()).group(1)

    for _ in range(2):  # mail scanners open links: GET shows a button and never signs in
        page = await web.get(f"/login/{token}")
        assert page.status == 200 and "Sign in as John Smith?" in await page.text()
    assert (await check_token(token, (Purpose.LOGIN,))).ok and await Session.all().count() == 0
    html = await (await web.get(f"/login/{token}")).text()
    signed_in = await web.post(f"/login/{token}", data={"csrf_token": CSRF.search(html).group(1)},
                               allow_redirects=False)
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/inbox"
    assert '<span class="who meta">John Smith</span>' in await (await web.get("/inbox")).text()
    assert (await Session.get()).method == "link"
    again = await web.get(f"/login/{token}")
    assert again.status == 410 and "This link does not work any more" in await again.text()


async def test_a_link_for_someone_without_a_password_is_a_first_login_link(web, joined, settings):
    await ask_link(web, "wei@family.example")
    await dev_dispatcher(settings).drain()
    [mail] = await DevOutboxItem.filter(kind="email")
    token = JOIN_LINK.search(mail.body).group(1)
    check = await check_token(token, (Purpose.FIRST_LOGIN,))
    assert check.ok and check.token.expires_at - datetime.now(timezone.utc) <= timedelta(minutes=15)
    assert (await web.get(f"/join/{token}")).status == 200


async def test_a_login_link_by_sms_to_a_phone_typed_without_country_code(web, people, settings):
    await set_password("g-ana", "mariposas en el jardin")
    response = await ask_link(web, "415-555-0142")
    assert response.status == 200
    spanish = await ask_link(web, "4155550142", **{"Accept-Language": "es"})
    assert "Revise sus mensajes" in await spanish.text()
    await dev_dispatcher(settings).drain()
    texts = await DevOutboxItem.filter(kind="sms", to="+14155550142")
    assert len(texts) == 2
    token = LOGIN_LINK.search(texts[0].body).group(1)
    page = await web.get(f"/login/{token}")
    assert page.status == 200 and "¿Entrar como Ana García?" in await page.text()  # Ana reads Spanish


async def test_a_password_change_revokes_outstanding_login_links_and_other_sessions(web, make_client, joined, settings):
    other = await make_client(public_url="http://127.0.0.1:8080")
    assert (await login(other, "john@family.example", JOHN_PW)).status == 303  # another device
    await ask_link(web, "john@family.example")
    await dev_dispatcher(settings).drain()
    [mail] = await DevOutboxItem.filter(kind="email")
    token = LOGIN_LINK.search(mail.body).group(1)

    assert (await login(web, "john@family.example", JOHN_PW)).status == 303
    form = await (await web.get("/password")).text()
    assert 'name="current"' in form  # signed in by password: the current one is asked for
    csrf = CSRF.search(form).group(1)
    bad = await web.post("/password", data={"csrf_token": csrf, "current": WRONG, "password": "new shiny kettle",
                                            "confirm": "new shiny kettle"})
    assert bad.status == 422 and "Your current password is not right." in await bad.text()
    weak = await web.post("/password", data={"csrf_token": csrf, "current": JOHN_PW, "password": "password1234",
                                             "confirm": "password1234"})
    assert weak.status == 422 and "too common" in await weak.text()
    assert (await check_token(token, (Purpose.LOGIN,))).ok
    done = await web.post("/password", data={"csrf_token": csrf, "current": JOHN_PW, "password": "new shiny kettle",
                                             "confirm": "new shiny kettle"})
    assert done.status == 200 and "Your password has been changed." in await done.text()

    assert (await check_token(token, (Purpose.LOGIN,))).problem.value == "used"  # revoked
    assert (await web.get(f"/login/{token}")).status == 410
    assert (await other.get("/inbox", allow_redirects=False)).status == 303  # the other device is out
    assert (await web.get("/inbox")).status == 200  # this one stays in
    assert (await login(other, "john@family.example", JOHN_PW)).status == 422
    assert (await login(other, "john@family.example", "new shiny kettle")).status == 303


async def test_after_signing_in_by_link_a_forgotten_password_can_be_replaced(web, joined, settings):
    await ask_link(web, "john@family.example")
    await dev_dispatcher(settings).drain()
    token = LOGIN_LINK.search((await DevOutboxItem.get(kind="email")).body).group(1)
    html = await (await web.get(f"/login/{token}")).text()
    await web.post(f"/login/{token}", data={"csrf_token": CSRF.search(html).group(1)})
    form = await (await web.get("/password")).text()
    assert 'name="current"' not in form
    response = await web.post("/password", data={"csrf_token": CSRF.search(form).group(1),
                                                 "password": "a brand new start", "confirm": "a brand new start"})
    assert response.status == 200 and "Your password has been changed." in await response.text()
    assert (await login(web, "john@family.example", "a brand new start")).status == 303


async def test_logout_ends_the_session_on_the_server(web, joined):
    response = await login(web, "john@family.example", JOHN_PW)
    raw = response.cookies["gw_session"].value
    page = await (await web.get("/inbox")).text()
    out = await web.post("/logout", data={"csrf_token": CSRF.search(page).group(1)}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login?signed_out=1"
    assert out.cookies["gw_session"].value == ""  # the cookie is cleared
    assert await Session.all().count() == 0
    assert "You have signed out." in await (await web.get("/login?signed_out=1")).text()
    # The old cookie, replayed, is worth nothing.
    replay = await web.get("/inbox", headers={"Cookie": f"gw_session={raw}"}, allow_redirects=False)
    assert replay.status == 303 and replay.headers["Location"] == "/login?next=/inbox"


async def test_logout_needs_the_csrf_token(web, joined):
    await login(web, "john@family.example", JOHN_PW)
    response = await web.post("/logout", data={}, allow_redirects=False)
    assert response.status == 403 and "This form has expired" in await response.text()
    assert await Session.all().count() == 1


async def test_login_without_csrf_is_refused_in_the_browsers_language(web, joined):
    response = await web.post("/login", data={"address": "john@family.example", "password": JOHN_PW},
                              headers={"Accept-Language": "es"}, allow_redirects=False)
    text = await response.text()
    assert response.status == 403 and response.content_type == "text/html"
    assert "Este formulario ha caducado" in text and await Session.all().count() == 0
    forged = await web.post("/login", data={"csrf_token": "ab" * 32, "address": "john@family.example",
                                            "password": JOHN_PW}, allow_redirects=False)
    assert forged.status == 403


async def test_the_inbox_needs_a_session_and_next_never_leaves_the_site(web, joined):
    response = await web.get("/inbox", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/inbox"
    page = await (await web.get("/login?next=/inbox")).text()
    assert 'name="next" value="/inbox"' in page
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        data = {"csrf_token": await token_from(web), "address": "john@family.example", "password": JOHN_PW,
                "next": evil}
        response = await web.post("/login", data=data, allow_redirects=False)
        assert response.headers["Location"] == "/inbox", evil
        await web.post("/logout", data={"csrf_token": await token_from(web, "/inbox")})


async def test_an_expired_session_is_refused_and_forgotten(web, joined):
    await login(web, "john@family.example", JOHN_PW)
    await Session.all().update(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    response = await web.get("/inbox", allow_redirects=False)
    assert response.status == 303 and response.cookies["gw_session"].value == ""
    assert await Session.all().count() == 0


async def test_error_pages_are_html_in_the_users_language_and_the_api_keeps_json(web, joined):
    missing = await web.get("/no/such/page", headers={"Accept-Language": "es"})
    assert missing.status == 404 and missing.content_type == "text/html"
    assert "Página no encontrada" in await missing.text()
    await login(web, "john@family.example", JOHN_PW)
    await User.filter(id=(await user_of("g-john")).id).update(locale="es")
    assert "Página no encontrada" in await (await web.get("/nothing-here")).text()  # his locale, no header
    api = await web.get("/api/v1/no-such-thing")
    assert api.status in (401, 404) and api.content_type == "application/json"


async def test_unsubscribe_one_click_posts_need_no_csrf(web, people):
    response = await web.post("/unsubscribe/" + "a" * 26)
    assert response.status == 404  # not a 403: RFC 8058 one-click posts carry no cookie or token


async def test_a_used_or_wrong_purpose_login_link_shows_the_invalid_page(web, joined, settings):
    john = await user_of("g-john")
    from gateway.invites.tokens import issue_token

    _, first_login = await issue_token(john.id, Purpose.FIRST_LOGIN, settings.secret_key)
    _, expired = await issue_token(john.id, Purpose.LOGIN, settings.secret_key,
                                   now=datetime.now(timezone.utc) - timedelta(minutes=16))
    for token in (first_login, expired, "z" * 26, "link2"):
        response = await web.get(f"/login/{token}")
        assert response.status == 410 and "This link does not work any more" in await response.text(), token
    assert await LoginToken.filter(used_at__not_isnull=True).count() == 0


async def test_a_shared_household_address_gets_a_link_for_each_person(web, joined, settings):
    wei = await user_of("g-wei")
    await ContactPoint.create(user_id=wei.id, kind=ContactKind.EMAIL, address="john@family.example")
    response = await ask_link(web, "john@family.example")
    assert SENT in await response.text()
    await dev_dispatcher(settings).drain()
    sent = {m.to: m.body for m in await DevOutboxItem.filter(kind="email")}
    assert LOGIN_LINK.search(sent["john@family.example"])  # John has a password: a sign-in link
    # Wei has none yet: a first-login link, at his own first usable e-mail (the outbox picks the address).
    assert JOIN_LINK.search(sent["wei@family.example"]) and len(sent) == 2
    # With a password, the same shared address signs in whoever's password it is.
    await set_password("g-wei", "river stones whisper")
    assert (await login(web, "john@family.example", "river stones whisper")).status == 303
    assert '<span class="who meta">Li Wei</span>' in await (await web.get("/inbox")).text()


async def test_a_session_slides_with_use_but_never_lives_past_thirty_days(joined):
    from gateway.web.sessions import load_session, start_session

    john = await user_of("g-john")
    now = datetime.now(timezone.utc)
    row, raw = await start_session(john.id, "password", now=now - timedelta(days=28))
    assert row.key_hash != raw and len(raw) >= 43  # 256 random bits; only the hash is kept
    await Session.filter(id=row.id).update(last_seen_at=now - timedelta(hours=1), expires_at=now + timedelta(hours=1))
    loaded = await load_session(raw, now=now)
    assert loaded.user.id == john.id
    assert abs(loaded.expires_at - (now + timedelta(days=2))) < timedelta(seconds=5)  # 30 days after it started
    assert await load_session(raw, now=now + timedelta(days=3)) is None
    assert await load_session("x" * 43) is None
