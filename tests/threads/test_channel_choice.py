"""The outbound channel decision (DESIGN section 5), one rule at a time."""
from gateway.directory.models import ChannelPreference as Pref
from gateway.directory.models import ContactKind
from gateway.threads.channel_choice import Contact, Route, choose_routes

PHONE = Contact(ContactKind.PHONE, "+14155550142")
EMAIL = Contact(ContactKind.EMAIL, "ana@family.example")
OPTED_OUT_PHONE = Contact(ContactKind.PHONE, "+14155550142", problem="opted_out")
BOUNCING_EMAIL = Contact(ContactKind.EMAIL, "ana@family.example", problem="bouncing")


def channels(routes: list[Route]) -> list[tuple[str, str | None]]:
    return [(r.channel, r.address) for r in routes]


def test_conversation_follows_the_preference():
    assert channels(choose_routes("conversation", Pref.SMS, [PHONE, EMAIL])) == [("sms", PHONE.address)]
    assert channels(choose_routes("conversation", Pref.EMAIL, [PHONE, EMAIL])) == [("email", EMAIL.address)]


def test_both_sends_both():
    assert channels(choose_routes("announcement", Pref.BOTH, [PHONE, EMAIL])) == [
        ("email", EMAIL.address), ("sms", PHONE.address)]


def test_conversation_goes_back_over_the_channel_the_guardian_last_used():
    routes = choose_routes("conversation", Pref.EMAIL, [PHONE, EMAIL], last_channel="sms")
    assert channels(routes) == [("sms", PHONE.address)]


def test_announcement_ignores_last_channel():
    routes = choose_routes("announcement", Pref.EMAIL, [PHONE, EMAIL], last_channel="sms")
    assert channels(routes) == [("email", EMAIL.address)]


def test_newsletter_is_email_only_and_sms_gets_a_short_link():
    assert channels(choose_routes("newsletter", Pref.BOTH, [PHONE, EMAIL])) == [("email", EMAIL.address)]
    [route] = choose_routes("newsletter", Pref.SMS, [PHONE, EMAIL])
    assert (route.channel, route.short_link) == ("sms", True)


def test_invitation_prefers_email_then_sms():
    assert channels(choose_routes("invitation", Pref.SMS, [PHONE, EMAIL])) == [("email", EMAIL.address)]
    assert channels(choose_routes("invitation", Pref.EMAIL, [PHONE])) == [("sms", PHONE.address)]


def test_opted_out_phone_falls_back_to_email():
    [route] = choose_routes("conversation", Pref.SMS, [OPTED_OUT_PHONE, EMAIL])
    assert (route.channel, route.address, route.fallback) == ("email", EMAIL.address, True)


def test_bouncing_email_falls_back_to_sms():
    [route] = choose_routes("announcement", Pref.EMAIL, [PHONE, BOUNCING_EMAIL])
    assert (route.channel, route.fallback) == ("sms", True)


def test_both_with_one_unusable_sends_once():
    assert channels(choose_routes("announcement", Pref.BOTH, [OPTED_OUT_PHONE, EMAIL])) == [("email", EMAIL.address)]


def test_nothing_usable_is_suppressed_with_the_reason():
    [route] = choose_routes("conversation", Pref.SMS, [OPTED_OUT_PHONE, BOUNCING_EMAIL])
    assert route.suppressed and route.suppressed_reason == "opted_out" and route.address is None
    [route] = choose_routes("conversation", Pref.EMAIL, [])
    assert route.suppressed_reason == "no_email"


def test_a_school_without_numbers_cannot_text():
    [route] = choose_routes("conversation", Pref.SMS, [PHONE], sms_available=False)
    assert route.suppressed_reason == "no_sms_number"
    [route] = choose_routes("conversation", Pref.SMS, [PHONE, EMAIL], sms_available=False)
    assert route.channel == "email"


def test_the_first_usable_address_of_a_kind_is_used():
    second = Contact(ContactKind.EMAIL, "other@family.example")
    assert channels(choose_routes("conversation", Pref.EMAIL, [BOUNCING_EMAIL, second])) == [("email", second.address)]
