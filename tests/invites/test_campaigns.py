"""Invitation campaigns end to end: planning, the outbox, the fake providers, and the join link."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

from gateway.channels.base import Bounce, DeliveryStatus
from gateway.channels.sms_segments import count_segments
from gateway.directory.models import AuditLog, ContactPoint, Membership, School, User
from gateway.directory.user_input import UserIn
from gateway.directory.users import upsert_users
from gateway.invites.campaign_rows import write_chunk
from gateway.invites.campaigns import (
    CampaignRunner,
    claim,
    create_campaign,
    decide,
    delivery_progress,
    run_campaign,
)
from gateway.invites.models import (
    CampaignState,
    Invitation,
    InvitationCampaign,
    InvitationState,
    SkipReason,
)
from gateway.invites.tokens import LoginToken, Purpose, check_token, consume_token
from gateway.settings import Settings
from gateway.threads.bounces import apply_bounce
from gateway.threads.models import Delivery

JOIN = re.compile(r"https://gateway\.test/join/([a-z2-7]{26})")
GUARDIANS = ["g-ana", "g-john", "g-wei"]


async def run(school: School, settings: Settings, audiences: list[str], **kw) -> InvitationCampaign:
    campaign = await create_campaign(school, audiences, dry_run=kw.pop("dry_run", False), actor="api-key:tests", **kw)
    done = await run_campaign(campaign.id, settings.secret_key)
    assert done is not None and done.state is CampaignState.DONE and done.error is None
    return done


async def uid(external_id: str) -> int:
    return (await Membership.get(external_id=external_id)).user_id


def counts(c: InvitationCampaign) -> dict[str, int]:
    names = ("targeted", "invited", "skipped_joined", "skipped_not_enabled", "skipped_no_contact",
             "skipped_cooldown", "skipped_cap")
    return {n: getattr(c, n) for n in names if getattr(c, n)}


async def join(token: str) -> None:
    """What the /join/<token> form does on success, as far as campaigns care."""
    check = await check_token(token, (Purpose.FIRST_LOGIN,))
    assert check.ok, check.problem
    assert await consume_token(check.token)
    await User.filter(id=check.token.user_id).update(joined_at=datetime.now(timezone.utc))


async def test_an_email_invitation_reaches_smtp_in_the_recipients_language_with_a_working_link(
        people, twilio_settings, dispatcher, fake_smtp, fake_twilio):
    campaign = await run(people, twilio_settings, ["guardians"])
    assert counts(campaign) == {"targeted": 3, "invited": 3}
    assert await dispatcher.drain() == 3
    # E-mail wherever it is usable, even for Ana, who prefers SMS for conversations (DESIGN 5).
    assert fake_twilio.sent == []
    by_rcpt = {r.rcpt_tos[0]: r.message for r in fake_smtp.received}
    assert set(by_rcpt) == {"ana@family.example", "john@family.example", "wei@family.example"}

    ana = by_rcpt["ana@family.example"]
    assert ana["Subject"] == "Cree su cuenta de Lincoln Elementary"
    assert ana["Auto-Submitted"] == "auto-generated"
    assert "Lincoln Elementary" in ana["From"]
    text = ana.get_body(("plain",)).get_content()
    html = ana.get_body(("html",)).get_content()
    assert "Hola, Ana García:" in text and "le invita a crear su cuenta" in text
    token = JOIN.search(text).group(1)
    assert f'href="https://gateway.test/join/{token}"' in html and 'lang="es"' in html

    check = await check_token(token, (Purpose.FIRST_LOGIN,))
    assert check.ok and check.token.user_id == await uid("g-ana")
    assert (await check_token(token, (Purpose.FIRST_LOGIN,))).ok  # checking never consumes it

    john = by_rcpt["john@family.example"]
    assert john["Subject"] == "Set up your Lincoln Elementary account"
    assert "The link works until" in john.get_body(("plain",)).get_content()

    invitations = await Invitation.filter(campaign_id=campaign.id).order_by("user_id")
    assert {i.state for i in invitations} == {InvitationState.INVITED} and {i.channel for i in invitations} == {"email"}
    assert {d.status for d in await Delivery.filter(id__in=[i.delivery_id for i in invitations])} == {DeliveryStatus.SENT}
    assert (await delivery_progress([campaign.id]))[campaign.id] == {"queued": 0, "sent": 3, "failed": 0}
    [audit] = await AuditLog.filter(action="invitations.run")
    assert audit.target == f"invitation_campaign:{campaign.id}" and audit.details["invited"] == 3
    assert audit.actor == "api-key:tests"


async def test_a_rerun_skips_who_joined_and_counts_right(people, twilio_settings, dispatcher, fake_smtp):
    first = await run(people, twilio_settings, ["staff", "guardians"])
    assert counts(first) == {"targeted": 5, "invited": 5}
    await dispatcher.drain()
    john_mail = next(r.message for r in fake_smtp.received if r.rcpt_tos == ("john@family.example",))
    await join(JOIN.search(john_mail.get_body(("plain",)).get_content()).group(1))

    second = await run(people, twilio_settings, ["staff", "guardians"], cooldown_days=0)
    assert counts(second) == {"targeted": 5, "invited": 4, "skipped_joined": 1}
    skipped = await Invitation.get(campaign_id=second.id, state=InvitationState.SKIPPED)
    assert (skipped.user_id, skipped.skip_reason, skipped.delivery_id) == (await uid("g-john"), SkipReason.JOINED, None)
    await dispatcher.drain()
    assert len(fake_smtp.received) == 9
    assert "john@family.example" not in [r.rcpt_tos[0] for r in fake_smtp.received[5:]]


async def test_cooldown_and_lifetime_cap_hold_across_campaigns(people, twilio_settings):
    assert counts(await run(people, twilio_settings, ["staff"])) == {"targeted": 2, "invited": 2}
    # A week has not passed: everyone is in their cooldown.
    assert counts(await run(people, twilio_settings, ["staff"])) == {"targeted": 2, "skipped_cooldown": 2}
    # Eight days later, one more invitation; after that the cap of 2 holds, whatever the cooldown.
    await Invitation.all().update(created_at=datetime.now(timezone.utc) - timedelta(days=8))
    assert counts(await run(people, twilio_settings, ["staff"], max_invitations=2)) == {"targeted": 2, "invited": 2}
    await Invitation.all().update(created_at=datetime.now(timezone.utc) - timedelta(days=30))
    assert counts(await run(people, twilio_settings, ["staff"], max_invitations=2)) == {"targeted": 2, "skipped_cap": 2}
    # The cap counts invitations, not skips: the default cap of 10 is far away.
    assert counts(await run(people, twilio_settings, ["staff"])) == {"targeted": 2, "invited": 2}
    assert await Invitation.filter(state=InvitationState.INVITED).count() == 6


async def test_an_sms_invitation_goes_through_twilio_in_one_segment(people, twilio_settings, dispatcher, fake_twilio):
    await upsert_users(people, [
        UserIn(external_id="g-phone", role="guardian", name="Pat", phone="+14155550177"),
        UserIn(external_id="g-telefono", role="guardian", name="Rosa", phone="+14155550178", locale="es"),
    ])
    campaign = await run(people, twilio_settings, ["guardians"])
    assert counts(campaign) == {"targeted": 5, "invited": 5}
    assert await Invitation.filter(channel="sms").count() == 2
    await dispatcher.drain()
    by_to = {m.form["To"]: m.form for m in fake_twilio.sent}
    assert set(by_to) == {"+14155550177", "+14155550178"}
    english, spanish = by_to["+14155550177"]["Body"], by_to["+14155550178"]["Body"]
    assert english.startswith("Lincoln Elementary invites you to set up your account: https://gateway.test/join/")
    assert english.endswith("Reply STOP to opt out.")
    assert spanish.startswith("Lincoln Elementary le invita a crear su cuenta: https://gateway.test/join/")
    for body in (english, spanish):
        assert count_segments(body).segments == 1 and count_segments(body).encoding == "GSM-7"
    assert by_to["+14155550177"]["From"] in people.sms_numbers
    check = await check_token(JOIN.search(spanish).group(1), (Purpose.FIRST_LOGIN,))
    assert check.ok and check.token.user_id == await uid("g-telefono")
    delivery = await Delivery.get(address="+14155550177")
    sent = next(m for m in fake_twilio.sent if m.form["To"] == "+14155550177")
    assert (delivery.status, delivery.provider_id) == (DeliveryStatus.SENT, sent.sid)


async def test_students_are_invited_only_where_their_login_is_enabled(people, twilio_settings):
    campaign = await run(people, twilio_settings, ["students"])
    assert counts(campaign) == {"targeted": 2, "skipped_not_enabled": 2}
    await upsert_users(people, [UserIn(external_id="s-tom", role="student", name="Tom", login_enabled=True,
                                       email="tom@students.example")])
    campaign = await run(people, twilio_settings, ["students"])
    assert counts(campaign) == {"targeted": 2, "invited": 1, "skipped_not_enabled": 1}
    assert (await Invitation.get(campaign_id=campaign.id, state=InvitationState.INVITED)).user_id == await uid("s-tom")


async def test_no_usable_contact_point_is_a_recorded_skip(people, twilio_settings):
    now = datetime.now(timezone.utc)
    await upsert_users(people, [
        UserIn(external_id="g-stopped", role="guardian", name="Sam", phone="+14155550180"),
        UserIn(external_id="g-bounced", role="guardian", name="Kim", email="kim@gone.example", phone="+14155550181"),
        UserIn(external_id="g-nothing", role="guardian", name="Lee"),
    ])
    await ContactPoint.filter(address="+14155550180").update(opted_out_at=now)
    await ContactPoint.filter(address="kim@gone.example").update(bouncing_at=now)
    campaign = await run(people, twilio_settings, ["guardians"])
    assert counts(campaign) == {"targeted": 6, "invited": 4, "skipped_no_contact": 2}
    kim = await Invitation.get(campaign_id=campaign.id, user_id=await uid("g-bounced"))
    assert (kim.state, kim.channel) == (InvitationState.INVITED, "sms")  # the e-mail bounces: SMS instead
    reasons = {i.user_id: i.skip_reason for i in await Invitation.filter(state=InvitationState.SKIPPED)}
    assert reasons == {await uid("g-stopped"): SkipReason.NO_CONTACT, await uid("g-nothing"): SkipReason.NO_CONTACT}


async def test_a_school_without_numbers_cannot_text_an_invitation(people, twilio_settings):
    await upsert_users(people, [UserIn(external_id="g-phone", role="guardian", name="Pat", phone="+14155550177")])
    people.sms_numbers = []
    await people.save()
    campaign = await run(people, twilio_settings, ["guardians"])
    assert counts(campaign) == {"targeted": 4, "invited": 3, "skipped_no_contact": 1}


async def test_people_added_later_are_reached_by_the_next_run(people, twilio_settings):
    assert counts(await run(people, twilio_settings, ["guardians"])) == {"targeted": 3, "invited": 3}
    await upsert_users(people, [UserIn(external_id="g-new", role="guardian", name="New", email="new@family.example")])
    second = await run(people, twilio_settings, ["guardians"])
    assert counts(second) == {"targeted": 4, "invited": 1, "skipped_cooldown": 3}
    invited = await Invitation.get(campaign_id=second.id, state=InvitationState.INVITED)
    assert invited.user_id == await uid("g-new")


async def test_a_dry_run_counts_and_writes_nothing(people, twilio_settings):
    campaign = await run(people, twilio_settings, ["staff", "guardians", "students"], dry_run=True)
    assert counts(campaign) == {"targeted": 7, "invited": 5, "skipped_not_enabled": 2}
    assert await Invitation.all().count() == 0
    assert await Delivery.all().count() == 0
    assert await LoginToken.all().count() == 0
    [audit] = await AuditLog.filter(action="invitations.dry_run")
    assert audit.details["invited"] == 5
    # ...and a real run afterwards is not held back by the dry run's "invitations".
    assert counts(await run(people, twilio_settings, ["staff", "guardians"])) == {"targeted": 5, "invited": 5}


async def test_sms_invitations_wait_for_the_end_of_quiet_hours(people, twilio_settings, dispatcher, fake_twilio):
    await upsert_users(people, [UserIn(external_id="g-phone", role="guardian", name="Pat", phone="+14155550177")])
    people.timezone, people.quiet_hours_start, people.quiet_hours_end = "UTC", 0, 24 * 60 - 1
    await people.save()
    await run(people, twilio_settings, ["guardians"])
    sms = await Delivery.get(channel="sms")
    assert sms.next_attempt_at > datetime.now(timezone.utc) + timedelta(hours=1)
    await dispatcher.drain()
    assert fake_twilio.sent == []  # e-mail went out; the text waits for the morning
    assert await Delivery.filter(channel="email", status=DeliveryStatus.SENT).count() == 3


async def test_a_campaign_whose_process_died_is_resumed_by_a_worker_without_duplicates(people, twilio_settings):
    await upsert_users(people, [UserIn(external_id=f"g-x{i}", role="guardian", name=f"X{i}",
                                       email=f"x{i}@family.example") for i in range(7)])
    campaign = await create_campaign(people, ["guardians"], dry_run=False, actor="api-key:tests")
    # A process claims it, writes the first chunk, and dies holding the lease.
    held = await claim(campaign.id, "dead-process")
    decisions = await decide(people, held, datetime.now(timezone.utc))
    await write_chunk(held, people, decisions[:4], twilio_settings.secret_key, people.sms_numbers, None,
                      datetime.now(timezone.utc))
    runner = CampaignRunner(twilio_settings.secret_key)
    assert await runner.sweep() == 0  # the lease is still live: nobody else touches it
    await InvitationCampaign.filter(id=campaign.id).update(lease_until=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert await runner.sweep() == 1
    done = await InvitationCampaign.get(id=campaign.id)
    assert done.state is CampaignState.DONE and counts(done) == {"targeted": 10, "invited": 10}
    assert await Invitation.filter(campaign_id=campaign.id).count() == 10
    assert await Delivery.all().count() == 10 and await LoginToken.all().count() == 10
    assert await runner.sweep() == 0  # finished campaigns are left alone
    assert await run_campaign(campaign.id, twilio_settings.secret_key) is None


async def test_a_bounced_email_invitation_falls_back_to_sms_with_the_same_link(
        people, twilio_settings, dispatcher, fake_smtp, fake_twilio):
    campaign = await run(people, twilio_settings, ["guardians"])
    fake_smtp.fail_next(550, "5.1.1 User unknown", stage="rcpt")
    await dispatcher.drain()
    await dispatcher.drain()
    failed = await Delivery.get(status=DeliveryStatus.FAILED)
    [sms] = fake_twilio.sent
    fallback = await Delivery.get(channel="sms")
    assert fallback.login_token_id == failed.login_token_id and fallback.status is DeliveryStatus.SENT
    invitation = await Invitation.get(login_token_id=failed.login_token_id)
    assert (invitation.delivery_id, invitation.channel) == (fallback.id, "sms")
    email_token = JOIN.search(next(
        r.message.get_body(("plain",)).get_content() for r in fake_smtp.received)).group(1)
    sms_token = JOIN.search(sms.form["Body"]).group(1)
    assert (await check_token(sms_token, (Purpose.FIRST_LOGIN,))).token.id == failed.login_token_id
    assert email_token != sms_token  # the other recipients' links are theirs
    assert (await delivery_progress([campaign.id]))[campaign.id] == {"queued": 0, "sent": 3, "failed": 0}


async def test_a_failed_invitation_is_counted_as_failed(people, twilio_settings, dispatcher, fake_twilio):
    await upsert_users(people, [UserIn(external_id="g-phone", role="guardian", name="Pat", phone="+14155550177")])
    campaign = await run(people, twilio_settings, ["guardians"])
    fake_twilio.fail_next(400, code=21211, message="Invalid 'To' Phone Number")
    await dispatcher.drain()
    assert (await delivery_progress([campaign.id]))[campaign.id] == {"queued": 0, "sent": 3, "failed": 1}


async def test_a_link_that_expired_or_was_used_while_queued_is_not_sent(people, twilio_settings, dispatcher, fake_smtp):
    await run(people, twilio_settings, ["staff"])
    rivera, chen = await uid("t-rivera"), await uid("t-chen")
    await LoginToken.filter(user_id=rivera).update(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    await User.filter(id=chen).update(joined_at=datetime.now(timezone.utc))
    await dispatcher.drain()
    assert fake_smtp.received == []
    reasons = sorted(d.error_reason for d in await Delivery.filter(status=DeliveryStatus.SUPPRESSED))
    assert reasons == ["the link was not sent: expired", "the link was not sent: joined"]


async def test_one_campaign_per_school_at_a_time_so_nobody_is_invited_twice(people, twilio_settings):
    first = await create_campaign(people, ["guardians"], dry_run=False, actor="api-key:tests")
    second = await create_campaign(people, ["guardians"], dry_run=False, actor="api-key:tests")
    assert await claim(first.id, "another-process") is not None  # being planned elsewhere
    runner = CampaignRunner(twilio_settings.secret_key, wait_seconds=0.01)
    task = runner.start(second.id)
    await asyncio.sleep(0.1)
    assert not task.done() and (await InvitationCampaign.get(id=second.id)).state is CampaignState.QUEUED
    # A dry run never waits: it writes no invitation.
    assert counts(await run(people, twilio_settings, ["guardians"], dry_run=True)) == {"targeted": 3, "invited": 3}
    await InvitationCampaign.filter(id=first.id).update(state=CampaignState.DONE, lease_until=None)
    done = await asyncio.wait_for(task, 5)
    assert done is not None and counts(done) == {"targeted": 3, "invited": 3}


async def test_a_bounce_report_for_an_invitation_moves_it_to_sms(people, twilio_settings, dispatcher, fake_twilio):
    campaign = await run(people, twilio_settings, ["guardians"])
    await dispatcher.drain()
    john = await Delivery.get(address="john@family.example")
    await apply_bounce(Bounce(recipients=("john@family.example",), action="failed", status="5.1.1",
                              original_message_id=john.provider_id))
    await dispatcher.drain()
    [sms] = fake_twilio.sent
    assert sms.form["To"] == "+14155550143"
    check = await check_token(JOIN.search(sms.form["Body"]).group(1), (Purpose.FIRST_LOGIN,))
    assert check.token.id == john.login_token_id
    invitation = await Invitation.get(login_token_id=john.login_token_id)
    assert invitation.channel == "sms" and invitation.campaign_id == campaign.id
    assert (await delivery_progress([campaign.id]))[campaign.id] == {"queued": 0, "sent": 3, "failed": 0}
