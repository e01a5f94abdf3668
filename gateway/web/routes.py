"""Every route of the gateway, declared in one place."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.invites import join
from gateway.web import (
    api,
    api_inbound,
    api_invites,
    openapi,
    pages,
    pages_auth,
    pages_compose,
    pages_directory,
    pages_family,
    pages_invitations,
    pages_lists,
    pages_roster,
    pages_threads,
    pages_triage,
    webhooks,
)

STATIC = Path(__file__).resolve().parent / "static"


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/metrics", pages.metrics)
    app.router.add_get("/dev/mailbox", pages.dev_mailbox)
    app.router.add_get("/m/{token}", pages.message_view)
    app.router.add_route("GET", "/unsubscribe/{token}", pages.unsubscribe)
    app.router.add_route("POST", "/unsubscribe/{token}", pages.unsubscribe)
    app.router.add_get("/", pages_auth.root)
    app.router.add_get("/login", pages_auth.login_page)
    app.router.add_post("/login", pages_auth.login)
    app.router.add_post("/login/link", pages_auth.request_link)  # before /login/{token}
    app.router.add_route("GET", "/login/{token}", pages_auth.login_link)
    app.router.add_route("POST", "/login/{token}", pages_auth.login_link)
    app.router.add_route("GET", "/join/{token}", join.join)
    app.router.add_route("POST", "/join/{token}", join.join)
    app.router.add_post("/logout", pages_auth.logout)
    app.router.add_get("/inbox", pages_lists.inbox)
    app.router.add_get("/conversations", pages_lists.conversations)
    app.router.add_get(r"/conversations/{id:\d+}", pages_threads.thread)
    app.router.add_post(r"/conversations/{id:\d+}/messages", pages_threads.reply)
    app.router.add_post(r"/conversations/{id:\d+}/state", pages_threads.change_state)
    app.router.add_get(r"/conversations/{id:\d+}/events", pages_threads.events)
    app.router.add_get("/compose", pages_compose.compose_page)
    app.router.add_post("/compose", pages_compose.compose)
    app.router.add_route("GET", "/preferences", pages_family.preferences)
    app.router.add_route("POST", "/preferences", pages_family.preferences)
    app.router.add_post(r"/preferences/contacts/{id:\d+}/retry", pages_family.retry_contact)
    app.router.add_get("/conversations/new", pages_family.new_conversation_page)
    app.router.add_post("/conversations/new", pages_family.new_conversation)
    app.router.add_get("/triage", pages_triage.triage)
    app.router.add_post(r"/triage/{id:\d+}/attach", pages_triage.attach)
    app.router.add_get("/directory", pages_directory.directory_home)
    app.router.add_get("/directory/people", pages_directory.people)
    app.router.add_get("/directory/people.csv", pages_directory.people_csv)
    app.router.add_post(r"/directory/people/{id:\d+}/login", pages_directory.student_login)
    app.router.add_post("/directory/sections/login", pages_directory.section_logins)
    app.router.add_get("/directory/invitations", pages_invitations.invitations_page)
    app.router.add_post("/directory/invitations", pages_invitations.invitations)
    app.router.add_get(r"/directory/invitations/{id:\d+}", pages_invitations.campaign_page)
    app.router.add_get("/directory/roster", pages_roster.roster_page)
    app.router.add_post("/directory/roster", pages_roster.upload)  # streamed: sessions.STREAMED_UPLOAD_PATHS
    app.router.add_get(r"/directory/roster/{id:\d+}", pages_roster.preview_page)
    app.router.add_post(r"/directory/roster/{id:\d+}/apply", pages_roster.apply)
    app.router.add_static("/static", STATIC)
    app.router.add_route("GET", "/password", pages_auth.password)
    app.router.add_route("POST", "/password", pages_auth.password)
    app.router.add_post("/webhooks/twilio/sms", webhooks.twilio_sms)
    app.router.add_post("/webhooks/twilio/status", webhooks.twilio_status)
    app.router.add_post("/webhooks/email", webhooks.inbound_email)

    api_app = web.Application(middlewares=[api.api_key_middleware])
    api_app.router.add_get("/openapi.json", openapi.openapi)
    api_app.router.add_get("/school", api.get_school)
    api_app.router.add_patch("/school", api.patch_school)
    api_app.router.add_put("/users", api.put_users)
    api_app.router.add_get("/users/{external_id}", api.get_user)
    api_app.router.add_post("/communications", api.post_communication)
    api_app.router.add_get("/conversations/{id}", api.get_conversation)
    api_app.router.add_post("/conversations/{id}/messages", api.post_message)
    api_app.router.add_get("/inbound", api_inbound.list_inbound)
    api_app.router.add_post("/inbound/{id}/attach", api_inbound.attach_inbound)
    api_app.router.add_post("/invitation-campaigns", api_invites.post_campaign)
    api_app.router.add_get("/invitation-campaigns", api_invites.list_campaigns)
    api_app.router.add_get("/invitation-campaigns/{id}", api_invites.get_campaign)
    app.add_subapp("/api/v1", api_app)
