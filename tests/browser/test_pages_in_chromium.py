"""The core journeys in a real browser: compose, a live reply, languages, and privacy."""
from __future__ import annotations

import asyncio

import aiohttp
from playwright.async_api import expect

from gateway.directory.models import Membership
from gateway.settings import TwilioSettings
from gateway.threads.models import Message
from tests.browser.conftest import PUBLIC_URL, sign_in
from tests.fakes.twilio import sign_twilio_request
from tests.web.conftest import PASSWORD, give_password
from tests.web.test_thread_pages import send

ANA = "+14155550142"


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def text_from_ana(base: str, fake_twilio, body: str, to: str) -> None:
    """Ana answers on her phone: Twilio posts the signed webhook to the gateway."""
    form = {"MessageSid": "SM" + "b" * 32, "AccountSid": fake_twilio.account_sid, "From": ANA, "To": to,
            "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01"}
    signature = sign_twilio_request(fake_twilio.auth_token, PUBLIC_URL + "/webhooks/twilio/sms", form)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/webhooks/twilio/sms", data=form, headers={"X-Twilio-Signature": signature}) as r:
            assert r.status == 200


async def test_a_teacher_composes_the_sms_goes_out_and_the_reply_appears_live(people, serve, new_page, settings,
                                                                               fake_twilio):
    twilio = TwilioSettings(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.url)
    base = await serve(twilio=twilio)
    await give_password("t-rivera")
    page = await new_page()
    await sign_in(page, base, "rivera@school.example", PASSWORD)
    await expect(page.locator("h1")).to_have_text("Conversations")

    await page.click("text=New message")
    await page.check("#to-guardian")
    await page.select_option("#guardian", "g-ana")
    await page.check("#kind-conversation")
    await page.fill("#subject", "Field trip")
    await page.fill("#body", "Can Lucía join the field trip on Friday?")
    await page.click("button[value=preview]")
    await expect(page.locator("main")).to_contain_text("Ana García")
    await expect(page.locator("main")).to_contain_text("Text message")
    await page.click("button[value=send]")
    await expect(page.locator("#thread li")).to_have_count(1)

    await wait_until(lambda: _sent_to(fake_twilio, ANA))
    [sms] = [m for m in fake_twilio.sent if m.form["To"] == ANA]
    assert "Can Lucía join the field trip on Friday?" in sms.form["Body"]

    await text_from_ana(base, fake_twilio, "Sí, puede ir <b>gracias</b>", to=sms.form["From"])
    # The page was not reloaded: the reply arrives over the live stream, escaped.
    await expect(page.locator("#thread li")).to_have_count(2)
    await expect(page.locator("#thread li").last).to_contain_text("Sí, puede ir <b>gracias</b>")
    await expect(page.locator("#thread li").last).to_contain_text("Ana García")
    assert await page.locator("#thread li b").count() == 0
    assert await Message.filter(body="Sí, puede ir <b>gracias</b>").count() == 1


async def _sent_to(fake_twilio, phone: str) -> bool:
    return any(m.form["To"] == phone for m in fake_twilio.sent)


async def test_a_guardian_signs_in_switches_to_spanish_and_sees_spanish_pages(people, serve, new_page):
    await send(people, to=["g-john"], subject="Lunch menu", body="Pizza on Friday")
    await give_password("g-john")
    base = await serve(run_worker=False)
    page = await new_page()
    await sign_in(page, base, "john@family.example", PASSWORD)
    await expect(page.locator("h1")).to_have_text("Inbox")
    await page.click("nav.top >> text=Preferences")
    await page.select_option("#locale", "es")
    await page.click("#preferences button[type=submit]")
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await page.click("nav.top >> text=Bandeja de entrada")
    await expect(page.locator("h1")).to_have_text("Bandeja de entrada")
    await page.click("text=Lunch menu")
    await expect(page.locator("#thread")).to_contain_text("Pizza on Friday")
    await expect(page.locator("label[for=body]")).to_have_text("Su respuesta")


async def test_arabic_pages_are_right_to_left(people, serve, new_page):
    await give_password("g-john")
    from gateway.directory.models import User

    john = (await Membership.get(external_id="g-john")).user_id
    await User.filter(id=john).update(locale="ar")
    base = await serve(run_worker=False)
    page = await new_page()
    await sign_in(page, base, "john@family.example", PASSWORD)
    await expect(page.locator("html")).to_have_attribute("dir", "rtl")
    direction = await page.evaluate("getComputedStyle(document.querySelector('main')).direction")
    assert direction == "rtl"


async def test_a_guardian_cannot_open_another_familys_conversation(people, serve, new_page):
    [cid] = await send(people, to=["g-ana"], body="Private to Ana")
    await give_password("g-john")
    base = await serve(run_worker=False)
    page = await new_page()
    await sign_in(page, base, "john@family.example", PASSWORD)
    response = await page.goto(f"{base}/conversations/{cid}")
    assert response.status == 404
    await expect(page.locator("h1")).to_have_text("Page not found")
    assert "Private to Ana" not in await page.content()


async def test_replying_works_with_the_keyboard_alone(people, serve, new_page):
    [cid] = await send(people, to=["g-john"], body="Please confirm")
    await give_password("g-john")
    base = await serve(run_worker=False)
    page = await new_page()
    await sign_in(page, base, "john@family.example", PASSWORD)
    await page.goto(f"{base}/conversations/{cid}")
    await page.focus("#body")
    await page.keyboard.type("Confirmed, thanks")
    await page.keyboard.press("Tab")  # to the Send button
    await page.keyboard.press("Enter")
    await expect(page.locator("[role=status]")).to_contain_text("Your message was sent.")
    await expect(page.locator("#thread li").last).to_contain_text("Confirmed, thanks")


async def test_compose_and_reply_work_with_javascript_off(people, serve, browser):
    await give_password("t-rivera")
    base = await serve(run_worker=False)
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await sign_in(page, base, "rivera@school.example", PASSWORD)
    await page.goto(f"{base}/compose")
    await page.check("#to-section")
    await page.select_option("#section", "3A")
    await page.check("#kind-announcement")
    await page.fill("#body", "Picture day is Tuesday")
    await page.click("button[value=preview]")
    await page.click("button[value=send]")
    await expect(page.locator("#thread li")).to_have_count(1)
    await page.fill("#body", "Smile!")
    await page.click("#reply button[type=submit]")
    await expect(page.locator("#thread li")).to_have_count(2)
    assert await Message.filter(body="Smile!").count() == 1


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""


async def test_every_page_fits_a_phone_and_every_control_has_a_name(people, serve, browser):
    await Membership.filter(external_id="t-rivera").update(is_admin=True)
    [cid] = await send(people, to=["g-john"], body="A long line " * 40)
    base = await serve(run_worker=False)
    pages = {"t-rivera": ["/conversations", "/compose", f"/conversations/{cid}", "/triage", "/preferences",
                         "/directory/people", "/directory/invitations", "/directory/roster"],
             "g-john": ["/inbox", f"/conversations/{cid}", "/conversations/new", "/preferences", "/password"]}
    for who, paths in pages.items():
        user = await give_password(who)
        address = (await user.contact_points.all().order_by("id").first()).address
        context = await browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
        page = await context.new_page()
        await sign_in(page, base, address, PASSWORD)
        for path in paths:
            response = await page.goto(base + path)
            assert response.status == 200, path
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
            assert await page.evaluate(UNLABELLED) == [], path
        await context.close()
